"""What users write: thresholds (Flagger's shape), compare settings, and the metrics they name.

    >>> Threshold(name="request-duration", thresholdRange=ThresholdRange(max=500)).metric
    <Metric.REQUEST_DURATION: 'request-duration'>
    >>> Threshold(name="p99-api", query="vector(1)", thresholdRange=ThresholdRange(max=1)).kind
    <CheckKind.CUSTOM: 'custom'>
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict, model_validator

from loadkit.models.base import StrictModel
from loadkit.units import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]


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


class CompareMetricName(enum.StrEnum):
    """The metrics a canary-vs-baseline comparison judges."""

    LATENCY = "latency"
    ERROR_RATE = "error-rate"


class CheckKind(enum.StrEnum):
    """What a check judges. Displays and readers go by this, never by a check's name (a custom
    check may be called anything, `compare` included)."""

    METRIC = "metric"  # a built-in metric (request-success-rate ...): loadkit's requests or Prometheus (`source`)
    CUSTOM = "custom"  # a custom Prometheus query, Flagger MetricTemplate style
    COMPARE = "compare"  # canary vs baseline: the check's `comparison` decides it
    GATE = "gate"  # a step of a chaos run that passes or fails without a metric (steady state, method, rollbacks)


def _critical_by_default() -> list[CompareMetricName]:
    return [CompareMetricName.ERROR_RATE]


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


_STOPPABLE = frozenset({
    Metric.REQUEST_SUCCESS_RATE, Metric.ERROR_RATE, Metric.REQUEST_DURATION, Metric.LATENCY_P50,
    Metric.LATENCY_P95, Metric.LATENCY_P99,
})


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
    """A check. Three kinds (its `kind`), all with `name`, `weight` and optional `min_samples`:

    - a built-in metric: `{name: request-success-rate, thresholdRange: {min: 99}}`, measured by
      loadkit's own requests (`source: client`, the default) or by Flagger's Istio query
      (`source: prometheus`); give any other name plus `metric:` to check a metric twice;
    - a custom Prometheus metric, Flagger MetricTemplate style: `{name, query, thresholdRange}`, the
      query a template with {{ namespace }}, {{ target }}, {{ interval }}, {{ variables.x }};
    - a comparison with the primary: `{name, compare: {baseline: primary, max_degradation_pct: 5}}`.

    `abort_on_fail: true` (k6's abortOnFail) stops `loadkit run` as soon as this check's whole-run
    failure is certain (loadkit/scoring/_failfast.py), not before `delay_abort_eval` seconds into the
    run (k6's delayAbortEval, e.g. `10s`; default 10 s); `--abort-on-fail` turns it on for every check
    that can be certain early: client-side request-success-rate, error-rate and latency checks.
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
    abort_on_fail: Annotated[bool, Strict()] = False  # "yes" or 1 is not true (a YAML `true` is)
    delay_abort_eval: Duration | None = Field(default=None, ge=0)

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
        if (self.abort_on_fail or self.delay_abort_eval is not None) and not self.is_client_range:
            raise ValueError("abort_on_fail and delay_abort_eval need a client-side check (Prometheus and compare "
                             "checks are judged after the run): drop them here")
        if (self.abort_on_fail or self.delay_abort_eval is not None) and not self.can_stop_a_run:
            raise ValueError(f"abort_on_fail and delay_abort_eval need a check whose failure can be certain before "
                             f"the run ends (request-success-rate, error-rate, a latency percentile, a maximum on "
                             f"latency-max), not {self._range_text()}: drop them here")
        return self

    def _range_text(self) -> str:
        r = self.thresholdRange
        side = "a minimum" if r is not None and r.max is None else "a range"
        return f"{side} on {self.metric.value}" if self.metric is not None else "this check"

    @property
    def can_stop_a_run(self) -> bool:
        """Whether `loadkit run --abort-on-fail` can ever stop a run on this check (scoring/_failfast.py):
        a client-side success rate, error rate or latency percentile, or a maximum on latency-max."""
        if not self.is_client_range or self.metric is None or self.thresholdRange is None:
            return False
        if self.metric is Metric.LATENCY_MAX:
            return self.thresholdRange.max is not None
        return self.metric in _STOPPABLE

    @property
    def kind(self) -> CheckKind:
        """Which of the three kinds of check this is (never a gate: gates are not thresholds)."""
        if self.compare is not None:
            return CheckKind.COMPARE
        return CheckKind.CUSTOM if self.query is not None else CheckKind.METRIC

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
