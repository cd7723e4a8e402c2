"""The "bruno-site" sample app served by every sandbox pod.

Both versions run this same code; what differs is the pod's identity and its injected faults.
Faults follow `_faults.ErrorInjector`: a pod with error rate F answers exactly floor(i * F) of
its first i app requests with 503, and every app request waits `latency_ms` before it is answered.
The decision is taken when the request arrives, so concurrency cannot change the count.
`/healthz` and the internal `/_pod/...` endpoints are never delayed, failed or counted: probes and
scrapes must not disturb the numbers a test asserts on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from loadkit.sandbox import _dep_pages, _pages, _shop
from loadkit.sandbox._app_metrics import AppMetrics
from loadkit.sandbox._faults import ErrorInjector
from loadkit.sandbox._spec import PodIdentity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METRICS_PATH = "/_pod/metrics"
HEALTH_PATH = "/healthz"
_IDENTITY = web.AppKey("identity", PodIdentity)
_METRICS = web.AppKey("metrics", AppMetrics)
_ORDERS = web.AppKey("orders", Iterator[int])
_BODY_HEADERS = ("content-type", "content-length")


def create_site_app(
    identity: PodIdentity, *, error_rate: float = 0.0, latency_ms: int = 0, db_port: int | None = None,
    external_port: int | None = None,
) -> web.Application:
    """Build one pod's app. Example: `create_site_app(PodIdentity("bruno", Version.CANARY, 0))`."""
    metrics = AppMetrics(identity)
    app = web.Application(middlewares=[_fault_and_metrics_middleware(metrics, error_rate, latency_ms)])
    app[_IDENTITY] = identity
    app[_METRICS] = metrics
    app[_ORDERS] = itertools.count(1)
    app.on_response_prepare.append(_stamp_identity)
    app.add_routes(
        [
            web.get("/", _home),
            web.get("/about", _about),
            web.get("/blog", _blog_index),
            web.get("/blog/{n}", _blog_post),
            web.get("/static/{name}", _static),
            web.get("/api/products", _products),
            web.get("/api/products/{id}", _product),
            web.get("/api/roast/{id}", _roast),
            web.get("/api/cart", _cart),
            web.post("/api/cart", _add_to_cart),
            web.post("/api/checkout", _checkout),
            web.post("/api/rating", _rating),
            *_dep_pages.routes(app, db_port, external_port),
            web.get(HEALTH_PATH, _healthz),
            web.get(METRICS_PATH, _pod_metrics),
        ]
    )
    return app


def _is_internal(path: str) -> bool:
    return path == HEALTH_PATH or path.startswith("/_pod/")


def _fault_and_metrics_middleware(metrics: AppMetrics, error_rate: float, latency_ms: int) -> Middleware:
    injector = ErrorInjector(error_rate)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_internal(request.path):
            return await handler(request)
        started = time.perf_counter()
        fail = injector.should_fail()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if fail:
            response: web.StreamResponse = web.Response(status=503, text="injected failure\n")
        else:
            response = await _answer(request, handler)
        elapsed = time.perf_counter() - started
        metrics.observe(request.method, _route_template(request), response.status, elapsed)
        return response

    return middleware


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's 404/405 exceptions into responses so they are counted like any other."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return web.Response(status=exc.status, text=f"{exc.status}: {exc.reason}\n", headers=headers)


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def _stamp_identity(request: web.Request, response: web.StreamResponse) -> None:
    identity = request.app[_IDENTITY]
    response.headers["X-Served-By"] = identity.workload
    response.headers["X-Pod"] = identity.name


def _html(request: web.Request, render: Callable[..., str], *args: int) -> web.Response:
    identity = request.app[_IDENTITY]
    text = render(*args, workload=identity.workload, pod=identity.name)
    return web.Response(text=text, content_type="text/html")


def _json(data: object, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _home(request: web.Request) -> web.Response:
    request.app[_METRICS].visits.inc()
    return _html(request, _pages.home_page)


async def _about(request: web.Request) -> web.Response:
    return _html(request, _pages.about_page)


async def _blog_index(request: web.Request) -> web.Response:
    return _html(request, _pages.blog_index_page)


async def _blog_post(request: web.Request) -> web.Response:
    n = request.match_info["n"]
    if not (n.isdigit() and 1 <= int(n) <= _pages.BLOG_POSTS):
        return web.Response(status=404, text=f"no blog post {n!r}: posts are 1..{_pages.BLOG_POSTS}\n")
    return _html(request, _pages.blog_post_page, int(n))


async def _static(request: web.Request) -> web.Response:
    asset = _pages.STATIC_ASSETS.get(request.match_info["name"])
    if asset is None:
        return web.Response(status=404, text="no such asset\n")
    content_type, body = asset
    return web.Response(text=body, content_type=content_type, headers={"Cache-Control": "max-age=300"})


async def _products(request: web.Request) -> web.Response:
    request.app[_METRICS].visits.inc()
    return _json([p.to_json() for p in _shop.PRODUCTS])


async def _product(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    product = _shop.PRODUCTS_BY_ID.get(int(raw_id)) if raw_id.isdigit() else None
    if product is None:
        return _json({"error": f"unknown product id {raw_id!r}", "field": "id"}, status=404)
    return _json(product.to_json())


async def _roast(request: web.Request) -> web.Response:
    """CPU-bound: a fixed computation, timed by the pod itself in a `Server-Timing` header
    (`cpu` = CPU time the computation used, `app` = its wall time, both in ms): a CPU limit shows
    as `app` far above `cpu`, whatever the load client's own latency."""
    raw_id = request.match_info["id"]
    product = _shop.PRODUCTS_BY_ID.get(int(raw_id)) if raw_id.isdigit() else None
    if product is None:
        return _json({"error": f"unknown product id {raw_id!r}", "field": "id"}, status=404)
    cpu, wall = time.thread_time(), time.perf_counter()
    profile = _shop.roast_profile(product.id)
    cpu_ms, wall_ms = (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000
    response = _json({"id": product.id, **profile})
    response.headers["Server-Timing"] = f"cpu;dur={cpu_ms:.3f}, app;dur={wall_ms:.3f}"
    return response


def _request_cart(request: web.Request) -> _shop.Cart:
    return _shop.decode_cart(request.cookies.get(_shop.CART_COOKIE))


async def _cart(request: web.Request) -> web.Response:
    return _json(_shop.cart_view(_request_cart(request)))


async def _add_to_cart(request: web.Request) -> web.Response:
    try:
        payload = json.loads(await request.read() or b"null")
        product_id, quantity = _shop.parse_cart_addition(payload)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _json({"error": f"body is not valid JSON: {exc}", "field": "body"}, status=400)
    except _shop.CartInputError as exc:
        return _json(exc.to_json(), status=exc.status)
    cart = _shop.add_to_cart(_request_cart(request), product_id, quantity)
    request.app[_METRICS].cart_additions.inc()
    response = _json(_shop.cart_view(cart))
    response.set_cookie(_shop.CART_COOKIE, _shop.encode_cart(cart), path="/", httponly=True, samesite="Lax")
    return response


async def _checkout(request: web.Request) -> web.Response:
    cart = _request_cart(request)
    if not cart:
        return _json({"error": "cart is empty"}, status=400)
    identity = request.app[_IDENTITY]
    orders: Iterator[int] = request.app[_ORDERS]
    order_id = f"{identity.name}-{next(orders)}"
    request.app[_METRICS].checkouts.inc()
    response = _json({"order_id": order_id, "total": _shop.cart_total_cents(cart) / 100}, status=201)
    response.del_cookie(_shop.CART_COOKIE, path="/")
    return response


async def _rating(request: web.Request) -> web.Response:
    """A user rates their visit (1-5 stars): the plan's user-satisfaction signal."""
    try:
        stars = _shop.parse_rating(json.loads(await request.read() or b"null"))
    except ValueError as exc:
        return _json({"error": f"body is not valid JSON: {exc}", "field": "body"}, status=400)
    except _shop.CartInputError as exc:
        return _json(exc.to_json(), status=exc.status)
    metrics = request.app[_METRICS]
    metrics.ratings.inc()
    metrics.rating_stars.inc(stars)
    return _json({"stars": stars}, status=201)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _pod_metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
