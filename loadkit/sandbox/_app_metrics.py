"""The metrics one pod of the sample app exports, as a real app instrumented with a client library would.

Each pod owns its registry (never the global one) so the supervisor can scrape and merge pods
without double counting. `path` is the route template (`/blog/{n}`), never the raw path: a load
test hitting `/blog/1` … `/blog/100` must not create a hundred series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from loadkit.sandbox._spec import PodIdentity

# Seconds; the default client buckets stop at 10 s and lack resolution below 5 ms.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AppMetrics:
    """Request and checkout-funnel metrics for one pod."""

    def __init__(self, identity: PodIdentity) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = identity.labels()
        base = list(self._labels)
        self._requests = Counter(
            "http_requests",
            "HTTP requests answered by the app, by route template and status.",
            [*base, "method", "path", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "http_request_duration_seconds",
            "Time the app took to answer, including injected latency.",
            [*base, "method", "path"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.visits = self._funnel("shop_visits", "Shop visits: GET / and GET /api/products.")
        self.cart_additions = self._funnel("shop_cart_additions", "Successful POST /api/cart calls.")
        self.checkouts = self._funnel("shop_checkouts", "Successful checkouts (orders placed).")
        # User satisfaction: ratings (1-5 stars) users give after a checkout; average = stars / ratings.
        self.ratings = self._funnel("shop_ratings", "Ratings users gave (POST /api/rating).")
        self.rating_stars = self._funnel("shop_rating_stars", "Sum of the stars of those ratings.")

    def _funnel(self, name: str, documentation: str) -> Counter:
        counter = Counter(name, documentation, list(self._labels), registry=self.registry)
        return counter.labels(**self._labels)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        self._requests.labels(**self._labels, method=method, path=path, status=str(status)).inc()
        self._duration.labels(**self._labels, method=method, path=path).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format 0.0.4."""
        return generate_latest(self.registry)
