"""Typed boundaries: thresholds in, results out.

One result model (`RunResult`) feeds `--output json`, JUnit, the HTML report and, later, the
webhook and the store. It carries `schema_version`; add fields, never rename them.

    >>> Threshold(name="request-duration", thresholdRange=ThresholdRange(max=500)).metric
    <Metric.REQUEST_DURATION: 'request-duration'>
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from loadkit.units import parse_duration

SCHEMA_VERSION = 1

Duration = Annotated[float, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    """Input models: unknown keys are errors that name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verdict(enum.StrEnum):
    """A run's outcome. `loadkit run`, `score` and the webhook give pass or fail; a chaos run may also
    be `interrupted` (stopped by a signal: what was collected is shown, not judged) or `error` (it
    tested nothing: the fault was never injected, or the experiment itself aborted)."""

    PASS = "pass"
    FAIL = "fail"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class Metric(enum.StrEnum):
    """Client-side metrics a threshold can name. Flagger's built-ins keep Flagger's names."""

    REQUEST_SUCCESS_RATE = "request-success-rate"
    REQUEST_DURATION = "request-duration"
    ERROR_RATE = "error-rate"
    LATENCY_P50 = "latency-p50"
    LATENCY_P95 = "latency-p95"
    LATENCY_P99 = "latency-p99"
    LATENCY_MAX = "latency-max"
    RPS = "rps"
    AVAILABILITY = "availability"  # chaos: success rate while the fault was on
    RECOVERY_TIME = "recovery-time"  # chaos: seconds until the thresholds held again


class Source(enum.StrEnum):
    """Where a check's number comes from: loadkit's own requests, or Prometheus (every request)."""

    CLIENT = "client"
    PROMETHEUS = "prometheus"


# Metrics with a built-in Prometheus query (Flagger's Istio queries and siblings of them).
PROMETHEUS_METRICS = frozenset({
    Metric.REQUEST_SUCCESS_RATE, Metric.REQUEST_DURATION, Metric.ERROR_RATE, Metric.LATENCY_P50,
    Metric.LATENCY_P95, Metric.LATENCY_P99, Metric.RPS,
})

CompareMetricName = Literal["latency", "error-rate"]
Classification = Literal["pass", "high", "low", "nodata"]
CompareVerdict = Literal["pass", "marginal", "fail"]


def _critical_by_default() -> list[CompareMetricName]:
    return ["error-rate"]


class CompareSpec(StrictModel):
    """A canary-vs-baseline check (Kayenta-style), e.g. `compare: {baseline: primary, max_degradation_pct: 5}`.

    baseline: `primary` (the Flagger primary of the target: `--baseline URL` for load, workload
    `<target>-primary` in Prometheus), a URL (load) or a workload name (Prometheus).
    source: `client` runs the same profile against both at once and compares per-request samples;
    `prometheus` compares both workloads' series over the same window.
    """

    baseline: str = Field(default="primary", min_length=1)
    source: Source | None = None  # default: client in run, the webhook and chaos; prometheus in score
    max_degradation_pct: float = Field(default=5.0, ge=0)
    max_error_increase_pct: float = Field(default=1.0, ge=0)
    confidence: float = Field(default=0.98, gt=0.5, lt=1)
    min_samples: int | None = Field(default=None, ge=3)
    critical: list[CompareMetricName] = Field(default_factory=_critical_by_default)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    interval: Duration | None = Field(default=None, gt=0)  # Prometheus: the window (default: the run's)
    step: Duration | None = Field(default=None, gt=0)  # Prometheus: one latency point per step (default window/60)

    @model_validator(mode="after")
    def _scores(self) -> CompareSpec:
        if self.marginal_score > self.pass_score:
            raise ValueError(f"marginal_score ({self.marginal_score:g}) is above pass_score ({self.pass_score:g})")
        if self.step is not None and self.interval is not None and self.step >= self.interval:
            raise ValueError(f"step ({self.step:g}s) must be shorter than interval ({self.interval:g}s): "
                             "the window holds one latency point per step")
        return self

    @property
    def needed_samples(self) -> int:
        """Per side: requests (client) or series points (Prometheus)."""
        if self.min_samples is not None:
            return self.min_samples
        return COMPARE_MIN_POINTS if self.source is Source.PROMETHEUS else COMPARE_MIN_REQUESTS


COMPARE_MIN_REQUESTS = 50  # Spinnaker: "at least 50 pieces of data per metric"
COMPARE_MIN_POINTS = 20


class ThresholdRange(StrictModel):
    """Flagger's shape: both bounds inclusive; at least one is required."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both (e.g. thresholdRange: {min: 99})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Threshold(StrictModel):
    """A check. Three kinds, all with `name`, `weight` and optional `min_samples`:

    - a built-in metric: `{name: request-success-rate, thresholdRange: {min: 99}}`, measured by
      loadkit's own requests (`source: client`, the default) or by Flagger's Istio query
      (`source: prometheus`); give any other name plus `metric:` to check a metric twice;
    - a custom Prometheus metric, Flagger MetricTemplate style: `{name, query, thresholdRange}`, the
      query a template with {{ namespace }}, {{ target }}, {{ interval }}, {{ variables.x }};
    - a comparison with the primary: `{name, compare: {baseline: primary, max_degradation_pct: 5}}`.
    """

    name: str = Field(min_length=1)
    metric: Metric | None = None
    source: Source | None = None
    query: str | None = Field(default=None, min_length=1)
    interval: Duration | None = Field(default=None, gt=0)
    templateVariables: dict[str, str] = Field(default_factory=dict)  # Flagger's spelling
    thresholdRange: ThresholdRange | None = None  # Flagger's spelling, on purpose
    compare: CompareSpec | None = None
    weight: float = Field(default=1.0, gt=0)
    min_samples: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _metric_from_name(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("query") is not None or data.get("compare") is not None:
            return data
        if data.get("metric") is None and isinstance(data.get("name"), str):
            if data["name"] not in {m.value for m in Metric}:
                known = ", ".join(m.value for m in Metric)
                raise ValueError(
                    f"unknown metric {data['name']!r}: name one of {known}, add 'metric:' with one of them, "
                    "or give a Prometheus 'query:'"
                )
            data = {**data, "metric": data["name"]}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Threshold:
        if (self.thresholdRange is None) == (self.compare is None):
            raise ValueError("give either thresholdRange (e.g. {min: 99}) or compare (e.g. {baseline: primary})")
        if self.compare is not None and (self.query or self.metric or self.source or self.interval):
            raise ValueError("a compare check takes its settings inside compare: drop query/metric/source/interval")
        if self.query is not None:
            if self.metric is not None:
                raise ValueError("a custom query is its own metric: drop 'metric:'")
            if self.source is Source.CLIENT:
                raise ValueError("a query is read from Prometheus: drop 'source: client'")
        elif self.templateVariables:
            raise ValueError("templateVariables need a custom 'query:'")
        if self.resolved_source is Source.PROMETHEUS and self.query is None and self.metric is not None \
                and self.metric not in PROMETHEUS_METRICS:
            known = ", ".join(sorted(m.value for m in PROMETHEUS_METRICS))
            raise ValueError(f"{self.metric.value} has no built-in Prometheus query: use one of {known}, "
                             "or give your own 'query:'")
        if self.interval is not None and self.resolved_source is Source.CLIENT and self.compare is None:
            raise ValueError("interval applies to Prometheus checks: add 'source: prometheus' or drop it")
        if self.min_samples is not None and (self.compare is not None or self.resolved_source is Source.PROMETHEUS):
            raise ValueError("min_samples counts loadkit's own requests: drop it here (a comparison takes "
                             "compare: {min_samples: N})")
        return self

    @property
    def resolved_source(self) -> Source:
        if self.compare is not None:
            return self.compare.source or Source.CLIENT
        if self.query is not None:
            return Source.PROMETHEUS
        return self.source or Source.CLIENT

    @property
    def is_client_range(self) -> bool:
        """Judged from loadkit's own stats alone (live progress can show these during a run)."""
        return self.compare is None and self.resolved_source is Source.CLIENT

    @property
    def resolved_metric(self) -> Metric:
        assert self.metric is not None, "custom and compare checks have no built-in metric"
        return self.metric


def default_chaos_thresholds() -> list[Threshold]:
    """The plan's resilience goals: zero downtime, recovery in under two minutes."""
    return [
        Threshold(name="availability", thresholdRange=ThresholdRange(min=100)),
        Threshold(name="recovery-time", thresholdRange=ThresholdRange(max=120)),
    ]


def default_thresholds() -> list[Threshold]:
    """The plan's core metrics: success rate >= 99 %, p99 <= 500 ms, error rate <= 1 %."""
    return [
        Threshold(name="request-success-rate", thresholdRange=ThresholdRange(min=99)),
        Threshold(name="request-duration", thresholdRange=ThresholdRange(max=500)),
        Threshold(name="error-rate", thresholdRange=ThresholdRange(max=1)),
    ]


DEFAULT_MIN_SAMPLES = 100


class Stats(ResultModel):
    """Client-side numbers for a run (or a window of it).

    status_codes counts each HTTP status ("0" = no answer: connection error or timeout);
    status_classes groups them: 2xx, 3xx, 4xx, 5xx and no_response.
    success_rate_pct follows Flagger: 5xx answers and connection errors are failures.
    error_rate_pct counts every request Locust marks failed (4xx, 5xx, connection, catch_response
    failures) plus every exception a task raised (`exceptions`, e.g. a failed assert), over requests.
    Latency percentiles come from an HdrHistogram (3 significant digits) and are reported as the
    upper edge of their bucket, so a reported p99 <= 500 ms really is <= 500 ms.
    """

    requests: int = 0
    failures: int = 0
    exceptions: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    success_rate_pct: float | None = None
    error_rate_pct: float | None = None
    status_codes: dict[str, int] = Field(default_factory=dict)
    status_classes: dict[str, int] = Field(default_factory=dict)
    failures_by_kind: dict[str, int] = Field(default_factory=dict)
    duration_s: float = 0.0


class ComparedMetric(ResultModel):
    """One metric of a comparison: classification pass/high/low/nodata and why."""

    name: str
    classification: Classification
    passed: bool
    critical: bool
    baseline: float | None = None
    canary: float | None = None
    unit: str = ""
    effect_pct: float | None = None
    p_value: float | None = None
    baseline_samples: int = 0
    canary_samples: int = 0
    reason: str


class Comparison(ResultModel):
    """Canary vs baseline: per-metric judgements, a score (share passing) and pass/marginal/fail."""

    schema_version: int = SCHEMA_VERSION
    verdict: CompareVerdict
    score: float
    reason: str
    source: Source
    baseline: str
    canary: str
    metrics: list[ComparedMetric]
    settings: CompareSpec
    started_at: datetime | None = None
    ended_at: datetime | None = None
    baseline_stats: Stats | None = None
    canary_stats: Stats | None = None
    queries: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class CheckStatus(enum.StrEnum):
    """A check's outcome. `skipped`: it could not be judged (it never ran, or too little load stood
    behind it); the reason says why. A skipped check never counts as passed."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Check(ResultModel):
    """One judged threshold or gate. `status` is the outcome; `passed` (kept for readers of older
    results) is True exactly when the status is `passed`. Give either; the other follows.

        >>> Check(name="x", metric="x", observed=None, min=None, max=None, passed=False, reason="r").status
        <CheckStatus.FAILED: 'failed'>
    """

    name: str
    metric: str
    observed: float | None
    min: float | None
    max: float | None
    passed: bool = False
    reason: str
    status: CheckStatus = CheckStatus.FAILED
    unit: str = ""
    weight: float = 1.0
    samples: int = 0
    source: Source = Source.CLIENT
    query: str | None = Field(default=None, description="The PromQL that was run (Prometheus checks)")
    comparison: Comparison | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_or_passed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        has_status, has_passed = data.get("status") is not None, data.get("passed") is not None
        if not has_status and not has_passed:
            raise ValueError("give status (passed, failed or skipped) or passed (true/false)")
        if not has_status:
            return {**data, "status": CheckStatus.PASSED if data["passed"] is True else CheckStatus.FAILED}
        if not has_passed:
            return {**data, "passed": str(data["status"]) == CheckStatus.PASSED.value}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Check:
        if self.passed != (self.status is CheckStatus.PASSED):
            if self.status is CheckStatus.SKIPPED:
                raise ValueError("a skipped check cannot have passed: drop passed, or give status passed")
            raise ValueError(f"passed={self.passed} contradicts status {self.status.value}")
        return self

    @property
    def skipped(self) -> bool:
        return self.status is CheckStatus.SKIPPED

    def restated(self, status: CheckStatus, reason: str) -> Check:
        """This check with another outcome and reason (`passed` follows the status)."""
        return self.model_copy(update={"status": status, "passed": status is CheckStatus.PASSED, "reason": reason})


class EndpointStats(ResultModel):
    method: str
    name: str
    requests: int
    failures: int


class ErrorStat(ResultModel):
    """A distinct failure message ('GET /api/cart: HTTP 503 ...') and how often it happened."""

    message: str
    count: int


class TimelinePoint(ResultModel):
    t: float
    users: int
    requests: int
    failures: int
    rps: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate_pct: float | None = None
    cpu_pct: float | None = None


class GeneratorHealth(ResultModel):
    processes: int = 1
    cpu_max_pct: float | None = None
    cpu_avg_pct: float | None = None
    loop_lag_max_ms: float | None = None
    saturated: bool = False
    reason: str = ""


class RunResult(ResultModel):
    schema_version: int = SCHEMA_VERSION
    verdict: Verdict
    score: float
    target: str
    profile: str
    locustfile: str
    started_at: datetime
    ended_at: datetime
    interrupted: bool = False
    stats: Stats
    checks: list[Check]
    thresholds: list[Threshold] = Field(default_factory=list)
    min_samples: int = DEFAULT_MIN_SAMPLES
    generator: GeneratorHealth = Field(default_factory=GeneratorHealth)
    endpoints: list[EndpointStats] = Field(default_factory=list)
    errors: list[ErrorStat] = Field(default_factory=list)
    timeline: list[TimelinePoint] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    histogram: str | None = Field(default=None, description="HdrHistogram (µs) of all latencies, base64")

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


class ScoreResult(ResultModel):
    """`loadkit score`: a canary scored from Prometheus alone. Same verdict/score/checks as RunResult."""

    schema_version: int = SCHEMA_VERSION
    verdict: Verdict
    score: float
    target: str  # namespace/workload
    prometheus: str
    namespace: str
    canary: str
    interval_s: float
    evaluated_at: datetime
    checks: list[Check]
    thresholds: list[Threshold] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


class StageInfo(ResultModel):
    duration_s: float
    users: int
    spawn_rate: float


class ProfileInfo(ResultModel):
    """A traffic profile as `loadkit profiles --output json` shows it."""

    name: str
    description: str
    shape: str
    users: int
    spawn_rate: float
    duration_s: float
    locustfile: str
    headers: dict[str, str]
    source: str
    stages: list[StageInfo]


class ProfileList(ResultModel):
    schema_version: int = SCHEMA_VERSION
    profiles: list[ProfileInfo]


class Snapshot(ResultModel):
    """One line of the Locust plugin's stream: the last window and everything so far."""

    elapsed_s: float
    users: int
    cpu_pct: float
    lag_ms: float
    window: Stats
    window_histogram: str = ""  # the window's latencies (HdrHistogram, µs, base64): windows merge exactly
    cumulative: Stats
