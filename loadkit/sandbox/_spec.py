"""Names and settings of the sandbox's two app versions, spelled the way Flagger spells them.

Flagger copies a Deployment `bruno-site` into `bruno-site-primary` and keeps the original name for
the canary; it routes through the services `bruno-site-primary` and `bruno-site-canary`. Using the
same names here means Flagger's built-in PromQL (and any query a user copied from their cluster)
runs unchanged against the sandbox's metrics.

Stdlib only: `loadkit.sandbox` re-exports from here and must stay cheap to import.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

APP = "bruno-site"
DEFAULT_NAMESPACE = "bruno"
CANARY_PREFIX = "/canary"
CANARY_HEADER = "x-canary"
CANARY_HEADER_VALUE = "insider"


class Version(enum.StrEnum):
    """The two app versions a Flagger canary analysis compares."""

    PRIMARY = "primary"
    CANARY = "canary"

    @property
    def workload(self) -> str:
        """Deployment name: Flagger renames the stable copy, the canary keeps the app's name."""
        return f"{APP}-primary" if self is Version.PRIMARY else APP

    @property
    def service(self) -> str:
        return f"{APP}-{self.value}"

    def service_fqdn(self, namespace: str) -> str:
        """Istio's `destination_service` label value."""
        return f"{self.service}.{namespace}.svc.cluster.local"

    def pod_name(self, index: int) -> str:
        return f"{self.workload}-{index}"


@dataclass(frozen=True)
class PodIdentity:
    """Who a pod is; every app metric and response header carries these names."""

    namespace: str
    version: Version
    index: int

    @property
    def name(self) -> str:
        return self.version.pod_name(self.index)

    @property
    def workload(self) -> str:
        return self.version.workload

    def labels(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "app": APP,
            "version": self.version.value,
            "workload": self.workload,
            "pod": self.name,
        }


class RetryOn(enum.StrEnum):
    """Envoy's retry conditions, the words of Istio's `retryOn` (which may also list status codes)."""

    FIVE_XX = "5xx"  # any 5xx answer, and any try that got no answer (connect failure, reset, per-try timeout)
    GATEWAY_ERROR = "gateway-error"  # 502, 503, 504, and any try that got no answer
    RESET = "reset"  # any try that got no answer: connect failure, dropped connection, per-try timeout
    CONNECT_FAILURE = "connect-failure"  # the pod refused the connection (or it timed out)
    RETRIABLE_4XX = "retriable-4xx"  # 409
    RETRIABLE_STATUS_CODES = "retriable-status-codes"  # the listed codes (503 in Istio's default)
    # Accepted so Istio's own strings paste in, but they never match here: the router speaks
    # HTTP/1.1 (no REFUSED_STREAM) and the app has no gRPC.
    REFUSED_STREAM = "refused-stream"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


# What Istio configures when a route's `retries:` gives no `retryOn` (pilot's retry.DefaultPolicy).
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ISTIO_DEFAULT_RETRIABLE_CODES = frozenset({503})
MAX_RETRIES = 10
MAX_ROUTE_TIMEOUT_S = 3_600.0


def parse_retry_on(text: str) -> tuple[tuple[RetryOn, ...], frozenset[int]]:
    """Split Istio's `retryOn` into conditions and status codes, as Istio does.

    A number is a status code to retry on and implies `retriable-status-codes`; repeats are kept
    once. `parse_retry_on("connect-failure,503")` gives `((CONNECT_FAILURE, RETRIABLE_STATUS_CODES),
    {503})`. Raises ValueError naming the valid words.
    """
    conditions: list[RetryOn] = []
    codes: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part.isdigit():
            if not 400 <= int(part) <= 599:
                raise ValueError(f"{part} is not a 4xx or 5xx status code")
            codes.add(int(part))
            part = RetryOn.RETRIABLE_STATUS_CODES.value
        try:
            condition = RetryOn(part)
        except ValueError:
            valid = ", ".join(c.value for c in RetryOn)
            raise ValueError(f"{part!r} is not a retry condition (use {valid}, or status codes like 503)") from None
        if condition not in conditions:
            conditions.append(condition)
    if not conditions:
        raise ValueError("no retry condition given")
    return tuple(conditions), frozenset(codes)


_DEFAULT_CONDITIONS, _ = parse_retry_on(ISTIO_DEFAULT_RETRY_ON)


@dataclass(frozen=True)
class RoutePolicy:
    """A VirtualService HTTP route's `retries:` and `timeout:` for one version. The default is off.

    Semantics are Envoy's: a failed try is retried `attempts` times at most, on another pod of the
    version when there is one; `per_try_timeout_s` bounds each try, `timeout_s` the whole request.
    Example, Istio's `retries: {attempts: 2, retryOn: "connect-failure,5xx", perTryTimeout: 1s}`:
    `RoutePolicy.from_istio(attempts=2, retry_on="connect-failure,5xx", per_try_timeout_s=1.0)`.
    """

    attempts: int = 0  # retries after the first try: Istio's `attempts`, Envoy's `num_retries`
    retry_on: tuple[RetryOn, ...] = _DEFAULT_CONDITIONS
    retriable_status_codes: frozenset[int] = ISTIO_DEFAULT_RETRIABLE_CODES
    per_try_timeout_s: float | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.attempts <= MAX_RETRIES:
            raise ValueError(f"attempts must be between 0 and {MAX_RETRIES}, got {self.attempts}")
        for name, value in (("per_try_timeout_s", self.per_try_timeout_s), ("timeout_s", self.timeout_s)):
            if value is not None and not 0 < value <= MAX_ROUTE_TIMEOUT_S:
                raise ValueError(f"{name} must be in (0, {MAX_ROUTE_TIMEOUT_S:g}] seconds, got {value}")

    @classmethod
    def from_istio(
        cls,
        attempts: int = 0,
        retry_on: str | None = None,
        per_try_timeout_s: float | None = None,
        timeout_s: float | None = None,
    ) -> RoutePolicy:
        """Like Istio: without `retry_on`, its default conditions with 503; with it, only its codes."""
        if retry_on is None:
            return cls(attempts, per_try_timeout_s=per_try_timeout_s, timeout_s=timeout_s)
        conditions, codes = parse_retry_on(retry_on)
        return cls(attempts, conditions, codes, per_try_timeout_s, timeout_s)

    @property
    def active(self) -> bool:
        """Whether a client request can differ from the tries the pods see (retries or timeouts)."""
        return bool(self.attempts or self.per_try_timeout_s or self.timeout_s)

    @property
    def retry_on_names(self) -> list[str]:
        return [condition.value for condition in self.retry_on]


NO_RETRIES = RoutePolicy()


@dataclass(frozen=True)
class VersionSpec:
    """How one version behaves: how many pods, the faults it injects into its own answers, and the
    router's retry and timeout policy for its requests."""

    version: Version
    pods: int = 2
    error_rate: float = 0.0
    latency_ms: int = 0
    route: RoutePolicy = NO_RETRIES


@dataclass(frozen=True)
class SandboxConfig:
    """Everything `loadkit sandbox up` needs; the CLI validates the values before building one.

    Example: `SandboxConfig(port=0, canary=VersionSpec(Version.CANARY, error_rate=0.1))`.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int | None = None
    namespace: str = DEFAULT_NAMESPACE
    canary_weight: int = 0
    primary: VersionSpec = field(default_factory=lambda: VersionSpec(Version.PRIMARY))
    canary: VersionSpec = field(default_factory=lambda: VersionSpec(Version.CANARY))
    dependencies: bool = False  # a PostgreSQL and an external HTTP service the app calls (`_deps`)

    @property
    def resolved_admin_port(self) -> int:
        """`--admin-port` defaults to the port after `--port`, or to any free port with `--port 0`."""
        if self.admin_port is not None:
            return self.admin_port
        return self.port + 1 if self.port else 0

    def spec(self, version: Version) -> VersionSpec:
        return self.primary if version is Version.PRIMARY else self.canary

    @property
    def versions(self) -> tuple[VersionSpec, VersionSpec]:
        return (self.primary, self.canary)
