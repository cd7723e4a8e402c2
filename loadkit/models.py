"""Typed boundaries: thresholds in, results out.

One result model (`RunResult`) feeds `--output json`, JUnit, the HTML report and, later, the
webhook and the store. It carries `schema_version`; add fields, never rename them.

    >>> Threshold(name="request-duration", thresholdRange=ThresholdRange(max=500)).metric
    <Metric.REQUEST_DURATION: 'request-duration'>
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    """Input models: unknown keys are errors that name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"


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
    """A check: `{name, thresholdRange: {min, max}}`, optionally `metric`, `weight`, `min_samples`.

    `name` selects a built-in metric (request-success-rate, request-duration, error-rate, ...);
    give any other name plus `metric:` to check the same metric twice under different names.
    """

    name: str = Field(min_length=1)
    metric: Metric | None = None
    thresholdRange: ThresholdRange  # Flagger's spelling, on purpose
    weight: float = Field(default=1.0, gt=0)
    min_samples: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _metric_from_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("metric") is None and isinstance(data.get("name"), str):
            if data["name"] not in {m.value for m in Metric}:
                known = ", ".join(m.value for m in Metric)
                raise ValueError(
                    f"unknown metric {data['name']!r}: name one of {known}, or add 'metric:' with one of them"
                )
            data = {**data, "metric": data["name"]}
        return data

    @property
    def resolved_metric(self) -> Metric:
        assert self.metric is not None  # set by _metric_from_name
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


class Check(ResultModel):
    name: str
    metric: str
    observed: float | None
    min: float | None
    max: float | None
    passed: bool
    reason: str
    unit: str = ""
    weight: float = 1.0
    samples: int = 0


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
