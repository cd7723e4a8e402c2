"""What loadkit reports: one result model for every output (JSON, JUnit, HTML, the webhook, the store).

`RunResult` (loadkit run) and `ScoreResult` (loadkit score) judge `Check`s; a `Comparison` (loadkit
compare, or a compare check's judgement) judges `ComparedMetric`s. Each carries `schema_version`.
Add fields, never rename them: stored results must keep loading (a result written before a field
existed gets its default, or a value derived from the old fields).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from loadkit.models.base import SCHEMA_VERSION, ResultModel
from loadkit.models.specs import (
    DEFAULT_MIN_SAMPLES,
    CheckKind,
    CompareMetricName,
    CompareSpec,
    Metric,
    Source,
    Threshold,
)
from loadkit.models.wire import Stats


class Verdict(enum.StrEnum):
    """A run's outcome: `pass` or `fail` when it was judged. Otherwise nothing was judged and no
    output shows a score: `interrupted` (stopped by a signal or from outside: what was collected is
    shown), `error` (it tested nothing: the fault was never injected, the experiment aborted, the
    requests left the target), `not-judged` (a webhook run that ended with too few samples) or
    `dry-run` (a chaos run with `--dry-run`: no fault was injected)."""

    PASS = "pass"
    FAIL = "fail"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    NOT_JUDGED = "not-judged"
    DRY_RUN = "dry-run"

    @property
    def judged(self) -> bool:
        """True for pass and fail: the only verdicts with a score worth showing."""
        return self in (Verdict.PASS, Verdict.FAIL)


class Classification(enum.StrEnum):
    """One compared metric's outcome, Kayenta's words: `high` fails (the canary is worse), `low` passes
    (it is better), `nodata` fails (too few samples to tell)."""

    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"

    @property
    def passed(self) -> bool:
        return self in (Classification.PASS, Classification.LOW)


class CompareVerdict(enum.StrEnum):
    """A comparison's outcome from its score: pass, marginal (between the two cut-offs) or fail; or
    `interrupted` (the load was stopped early: the metrics show what was collected, not judged)."""

    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    INTERRUPTED = "interrupted"


class ComparedMetric(ResultModel):
    """One metric of a comparison: classification pass/high/low/nodata and why."""

    name: CompareMetricName
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
    baseline_timeline: list[TimelinePoint] = Field(default_factory=list, description="With load: the baseline's "
                                                   "windows (t since started_at)")
    canary_timeline: list[TimelinePoint] = Field(default_factory=list)
    baseline_histogram: str | None = Field(default=None, description="With load: HdrHistogram (µs), base64")
    canary_histogram: str | None = None


class CheckStatus(enum.StrEnum):
    """A check's outcome. `skipped`: it could not be judged (it never ran, or too little load stood
    behind it); the reason says why. A skipped check never counts as passed."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Collected(ResultModel):
    """What a check showed on the data collected before its run stopped (the run was not judged)."""

    status: CheckStatus
    reason: str


# The gates of a chaos run (loadkit.chaos.models.ChaosCheck): how results told them apart before `kind`.
_GATES_BEFORE_KIND = frozenset({"steady-state", "method", "rollbacks"})


class Check(ResultModel):
    """One judged threshold or gate. `status` is the outcome; `passed` (kept for readers of older
    results) is True exactly when the status is `passed`. Give either; the other follows.

    `kind` says what was judged; `metric` names it as results always have: the built-in metric,
    `compare`, the custom check's own name or the gate's. Results written before `kind` existed
    get it from those old fields.

        >>> Check(name="x", metric="x", kind="custom", observed=None, min=None, max=None, passed=False,
        ...       reason="r").status
        <CheckStatus.FAILED: 'failed'>
    """

    name: str
    metric: str
    kind: CheckKind
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
    collected: Collected | None = Field(default=None, description="A check of a run that was not judged "
                                        "(interrupted) is skipped; this is what it showed on what was collected")

    @model_validator(mode="before")
    @classmethod
    def _kind_of_older_results(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") is None:
            return {**data, "kind": _kind_before_kind(data)}
        return data

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

    @property
    def is_compare(self) -> bool:
        return self.kind is CheckKind.COMPARE

    def restated(self, status: CheckStatus, reason: str) -> Check:
        """This check with another outcome and reason (`passed` follows the status)."""
        return self.model_copy(update={"status": status, "passed": status is CheckStatus.PASSED, "reason": reason})

    def unjudged(self, why: str) -> Check:
        """Skipped because the run was not judged (`why`); `collected` keeps what it showed."""
        shown = self.status.value + (f" ({self.reason})" if self.reason else "")
        return self.restated(CheckStatus.SKIPPED, f"not judged: {why}; so far {shown}") \
            .model_copy(update={"collected": Collected(status=self.status, reason=self.reason)})

    def rejudged(self) -> Check:
        """Undo `unjudged`: the run turned out to end as planned."""
        if self.collected is None:
            return self
        return self.restated(self.collected.status, self.collected.reason).model_copy(update={"collected": None})


def _kind_before_kind(data: dict[str, Any]) -> CheckKind:
    """A stored check from before `kind`: its kind as the renderers of the time read it (they took
    `metric: compare` for a comparison, whatever the check's name)."""
    metric = data.get("metric")
    if data.get("comparison") is not None or metric == "compare":
        return CheckKind.COMPARE
    if metric in {m.value for m in Metric}:
        return CheckKind.METRIC
    return CheckKind.GATE if metric in _GATES_BEFORE_KIND else CheckKind.CUSTOM


class EndpointStats(ResultModel):
    """One endpoint (Locust's method and name). Latencies come from the endpoint's own HdrHistogram
    buckets (upper edges, as the run's); None in results written before they were kept."""

    method: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


class ErrorStat(ResultModel):
    """A distinct failure message ('GET /api/cart: HTTP 503 ...') and how often it happened."""

    message: str
    count: int


class TimelinePoint(ResultModel):
    """One window of the load (about a second; past four hours of run, windows of 2 s, 4 s ... merged as
    docs/metrics.md says): `t` is its end in seconds since the run's start (a chaos run's: since
    `ChaosResult.started_at`); rates and percentiles are the window's own."""

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
    failures_by_kind: dict[str, int] = Field(default_factory=dict, description="The window's failures by "
                                             "class (5xx, 4xx, connection, timeout, ...); empty in older results")


class LostWorker(ResultModel):
    """A Locust worker that stopped sending load mid-run: from `at_s` on, the run had its share less."""

    node: str
    index: int | None = None
    at_s: float | None = Field(default=None, description="When its last window arrived (s into the run)")
    detected_s: float | None = Field(default=None, description="When the master noticed it was gone")
    requests: int = Field(default=0, description="Requests it sent before it was lost (counted in the result)")
    reason: str = ""
    users_moved: bool = Field(default=False, description="It left the run (disconnected or stopped): Locust "
                              "moved its users to the remaining workers")
    rejoined_s: float | None = Field(default=None, description="When it was heard again (s into the run); "
                                     "its load between at_s and this is missing")


class GeneratorHealth(ResultModel):
    processes: int = 1
    cpu_max_pct: float | None = None
    cpu_avg_pct: float | None = None
    loop_lag_max_ms: float | None = None
    saturated: bool = False
    reason: str = ""
    workers: int = Field(default=0, description="Locust workers over TCP that took part (0: not distributed)")
    workers_lost: list[LostWorker] = Field(default_factory=list, description="Workers lost mid-run: the "
                                           "result is judged on what arrived, and flagged")
    workers_unplanned: int = Field(default=0, description="Workers without this run's plan that took users "
                                   "mid-run (evicted; their load on the target is not counted)")
    dropped_requests: int = Field(default=0, description="Requests in windows that did not come from this run's "
                                  "planned workers (another run's, or a stranger's): never merged")
    load_short: str = Field(default="", description="Why the load that arrived is short of the plan (a lost "
                            "worker, uncounted load): such a run is never a pass")
    # Open model (a rate) only: iterations the schedule asked for, started, dropped, and the start lag.
    scheduled_iterations: int | None = None
    iterations: int | None = None
    dropped_iterations: int | None = None
    cut_off_iterations: int | None = Field(default=None, description="Started, still running when the run ended "
                                           "(each counted in the latencies at its age then, a lower bound)")
    unaccounted_iterations: int | None = Field(default=None, description="Scheduled but neither started nor "
                                               "dropped (a lost load generator process): no latency at all")
    start_lag_p99_ms: float | None = None
    start_lag_max_ms: float | None = None
    in_flight_cap_reached: bool | None = Field(default=None, description="Every in-flight slot was busy at some "
                                               "point: with the CPU fine, the target was slow (--max-in-flight)")


class EarlyStop(ResultModel):
    """Why a run stopped before its planned end (`--abort-on-fail`): a threshold's whole-run failure
    was certain `at_s` seconds in, even with every request still planned perfect. Such a run is
    judged FAIL on that check; the others are not judged (skipped) and it has no score (score 0,
    shown nowhere). `confidence` is 1: the stop rests on counts, not on an estimate."""

    at_s: float
    planned_s: float
    check: str
    reason: str
    confidence: float

    @property
    def summary(self) -> str:
        """'stopped at 7s of 60s (--abort-on-fail): error-rate: at least ...'"""
        return f"stopped at {_secs(self.at_s)}s of {_secs(self.planned_s)}s (abort on fail): {self.reason}"


def _secs(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


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
    reason: str = Field(default="", description="Why a run was not judged (verdict interrupted, error or "
                        "not-judged), or failed (its load short of the plan), when something other than the "
                        "checks says so")
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
    stages: list[StageInfo] = Field(default_factory=list, description="The profile's stages as run (empty in "
                                    "older results)")
    rate_stages: list[RateStageInfo] = Field(default_factory=list, description="An open-model run's arrival-rate "
                                             "stages (iterations per second); empty for a users run")
    stopped_early: EarlyStop | None = Field(default=None, description="Set when --abort-on-fail (or a "
                                            "threshold's abort_on_fail) stopped the run: when and why")

    @property
    def scored(self) -> bool:
        """Whether the score means anything: a judged run that went to its end. A run stopped early
        fails on its breached check; the others were not judged, so it has no score to show or chart."""
        return self.verdict.judged and self.stopped_early is None

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


class RateStageInfo(ResultModel):
    """An open-model stage: iterations per second ramping linearly from `start` to `end`."""

    duration_s: float
    start: float
    end: float


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
    rate: float | None = Field(default=None, description="An open-model profile's peak iterations per second")
    rate_stages: list[RateStageInfo] = Field(default_factory=list)


class ProfileList(ResultModel):
    schema_version: int = SCHEMA_VERSION
    profiles: list[ProfileInfo]


