"""The result of `loadkit chaos run`: the same family as RunResult (verdict, score, checks)."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from loadkit.models import SCHEMA_VERSION, Check, ResultModel, Stats, Threshold, Verdict


class JournalStatus(enum.StrEnum):
    """Chaos Toolkit's run status (its journal's `status`)."""

    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


class ChaosCheck(enum.StrEnum):
    """Checks of a chaos run that are not threshold metrics."""

    STEADY_STATE = "steady-state"
    METHOD = "method"
    ROLLBACKS = "rollbacks"


class PhaseLoad(ResultModel):
    """Load during one phase: before the fault, while it was on, after it was removed."""

    name: str
    start: datetime | None = None
    end: datetime | None = None
    stats: Stats


class FaultWindow(ResultModel):
    start: datetime
    end: datetime
    duration_s: float


class Rollbacks(ResultModel):
    planned: int
    run: int
    failed: int
    leftovers_removed: list[str] = Field(default_factory=list)


class ChaosResult(ResultModel):
    schema_version: int = SCHEMA_VERSION
    kind: str = "chaos"
    verdict: Verdict
    score: float
    experiment: str
    experiment_path: str
    target: str
    profile: str
    started_at: datetime
    ended_at: datetime
    journal_status: JournalStatus
    deviated: bool
    interrupted: bool
    dry_run: bool = False
    steady_state_before_met: bool | None = None
    steady_state_after_met: bool | None = None
    rollbacks: Rollbacks
    fault: FaultWindow | None = None
    phases: list[PhaseLoad]
    availability_pct: float | None = None
    recovery_time_s: float | None = None
    checks: list[Check]
    thresholds: list[Threshold] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    journal_path: str | None = None

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]
