"""The result of `loadkit gameday run`: one model for stdout, JSON, JUnit, the report directory,
notifications and the history store. Each scenario carries its `chaos run` result whole."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from loadkit.chaos.models import ChaosResult
from loadkit.gameday.plan import Category, Expect, LoadStop
from loadkit.models.base import SCHEMA_VERSION, ResultModel
from loadkit.models.results import Check, CheckStatus, TimelinePoint


class GameDayVerdict(enum.StrEnum):
    """`pass`: every scenario met its expectation; `fail`: one or more did not (the game day still
    ran them all); `halted`: a stop condition fired, the current scenario was rolled back and the
    rest skipped (not a pass: the system broke a limit the team set); `interrupted`: a signal
    stopped it; `error`: it could not test what it claims (the load failed, a scenario injected
    nothing); `dry-run`: a dry run that ran to its end (no fault was injected: not judged, score 0,
    never stored in the history)."""

    PASS = "pass"
    FAIL = "fail"
    HALTED = "halted"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    DRY_RUN = "dry-run"


class ScenarioStatus(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # it tested nothing (no fault seen in place, the experiment aborted): scored 0
    HALTED = "halted"  # a stop condition stopped it: rolled back, scored 0
    INTERRUPTED = "interrupted"  # a signal stopped it: rolled back, scored 0
    SKIPPED = "skipped"  # never started (halted, interrupted or out of time before it): scored 0


class StopKind(enum.StrEnum):
    LOAD = "load"
    PROMETHEUS = "prometheus"
    HTTP = "http"
    WALL_CLOCK = "wall-clock"


class StopFiring(ResultModel):
    """A stop condition that fired: which, when, during which scenario, and why."""

    kind: StopKind
    condition: str
    at: datetime
    reason: str
    scenario: str | None = None


class ScenarioResult(ResultModel):
    """One scenario: its expectation, the checks that count for it (`checks`), its score (% of
    them passed; 0 when it did not run to its end) and the `chaos run` result behind them."""

    name: str
    experiment_path: str
    expect: Expect
    category: Category
    weight: int
    status: ScenarioStatus
    score: float
    reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    checks: list[Check] = Field(default_factory=list)
    chaos: ChaosResult | None = None

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if c.status is not CheckStatus.PASSED]


class GameDayResult(ResultModel):
    """A game day, judged. `score` is Σ wᵢ·sᵢ / Σ wᵢ over every scenario of the plan (skipped ones
    count 0); `categories` the same per category."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "gameday"
    plan: str
    plan_path: str
    verdict: GameDayVerdict
    score: float
    categories: dict[str, float]
    reason: str = ""
    target: str
    profile: str
    dry_run: bool = False
    started_at: datetime
    ended_at: datetime
    scenarios: list[ScenarioResult]
    stops: list[StopFiring] = Field(default_factory=list)
    # the plan's load stop conditions (the limits the report draws; the HTTP and Prometheus ones stay in
    # the plan: a health URL may carry a credential), and the whole load from the baseline on: `t` in
    # seconds since `started_at`, one point per window, so the report's time axis starts at the game day
    load_stops: list[LoadStop] = Field(default_factory=list)
    timeline: list[TimelinePoint] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def failing(self) -> list[ScenarioResult]:
        return [s for s in self.scenarios if s.status is not ScenarioStatus.PASSED]
