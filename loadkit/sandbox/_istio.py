"""Istio's standard request metrics, recorded by the router as the destination sidecar would.

Flagger's built-in `request-success-rate` and `request-duration` checks query exactly these
names and labels, for example

    sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bruno",
        destination_workload=~"bruno-site",response_code!~"5.*"}[1m]))
    histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",
        destination_workload_namespace="bruno",destination_workload=~"bruno-site"}[1m])) by (le))

so those run unchanged against the sandbox. Only the labels those queries and dashboards use are
kept; the source side is "unknown", as Istio reports for traffic from outside the mesh.

`reporter="destination"` has one sample per try at a pod, with that try's code, as the pod's own
sidecar would count it (a try the router answered itself, e.g. a connect failure or a fault abort,
is counted there too, so Flagger's queries see it). When a version's route has retries or
timeouts, the router also reports `reporter="source"`: one sample per client request with the
final code, as the client's sidecar would; without them the two would be identical, so the
source side is left out and every count stays what it always was.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from loadkit.sandbox._spec import APP, Version

# Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_app",
    "destination_workload",
    "destination_workload_namespace",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)


class Reporter(enum.StrEnum):
    """Which sidecar reports a request: the client's (once per request) or the pod's (once per try)."""

    SOURCE = "source"
    DESTINATION = "destination"


# The flags the sandbox can set, in the order Envoy lists them in `%RESPONSE_FLAGS%`.
_FLAG_ORDER = ("UH", "UT", "UF", "UC", "DI", "FI", "DC", "URX")


def response_flags(flags: Iterable[str]) -> str:
    """Envoy's `response_flags` value: the set flags comma-joined in Envoy's order, or "-" for none.

    >>> response_flags(["FI", "DI"]), response_flags(["-"]), response_flags([])
    ('DI,FI', '-', '-')
    """
    present = {flag for flag in flags if flag != "-"}
    ordered = [flag for flag in _FLAG_ORDER if flag in present]
    return ",".join(ordered + sorted(present - set(_FLAG_ORDER))) or "-"


def destination_labels(
    version: Version,
    namespace: str,
    response_code: int,
    response_flags: str,
    reporter: Reporter = Reporter.DESTINATION,
) -> dict[str, str]:
    """The label set of one request; a pure function so the mapping is tested on its own."""
    return {
        "reporter": reporter.value,
        "source_workload": "unknown",
        "source_workload_namespace": "unknown",
        "source_app": "unknown",
        "destination_workload": version.workload,
        "destination_workload_namespace": namespace,
        "destination_app": APP,
        "destination_version": version.value,
        "destination_service": version.service_fqdn(namespace),
        "destination_service_name": version.service,
        "destination_service_namespace": namespace,
        "destination_canonical_service": APP,
        "destination_canonical_revision": version.value,
        "request_protocol": "http",
        "response_code": str(response_code),
        "response_flags": response_flags,
        "connection_security_policy": "none",
    }


class IstioMetrics:
    """`istio_requests_total` and `istio_request_duration_milliseconds` in their own registry."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "istio_requests", "Requests seen by the reporting proxy.", LABELS, registry=self.registry
        )
        self._duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration at the reporting proxy, in ms.",
            LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )

    def record(
        self,
        version: Version,
        response_code: int,
        response_flags: str,
        duration_ms: float,
        reporter: Reporter = Reporter.DESTINATION,
    ) -> None:
        labels = destination_labels(version, self.namespace, response_code, response_flags, reporter)
        self._requests.labels(**labels).inc()
        self._duration.labels(**labels).observe(duration_ms)
