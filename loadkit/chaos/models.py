"""The result of `loadkit chaos run`: the same family as RunResult (verdict, score, checks)."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from loadkit.models.base import SCHEMA_VERSION, ResultModel
from loadkit.models.results import Check, CheckStatus, TimelinePoint, Verdict
from loadkit.models.specs import Threshold
from loadkit.models.wire import Stats


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
    """From the start of the method's first action that succeeded until the fault was removed
    (`removed_at`: the rollbacks ended, or loadkit removed what they left), plus the time requests
    in flight need to finish (`end`)."""

    start: datetime
    end: datetime
    duration_s: float
    removed_at: datetime | None = None


class Rollbacks(ResultModel):
    planned: int
    run: int
    failed: int
    leftovers_removed: list[str] = Field(default_factory=list)
    leftovers_failed: list[str] = Field(default_factory=list, description="This run's faults loadkit could not "
                                        "remove (or killed pods it did not see back): still in place")


class ChaosResult(ResultModel):
    """A chaos run, judged. `verdict`: `pass` (every check passed and the journal completed),
    `fail`, `interrupted` (a signal stopped it; what was collected is shown) or `error` (it did not
    test what it claims: no fault was seen in place, the experiment aborted, the hypothesis could
    not measure, or loadkit stopped it early); `reason` says which.

    Times: `detect_time_s` counts from the fault's start, `recovery_time_s` from its removal.
    """

    schema_version: int = SCHEMA_VERSION
    kind: str = "chaos"
    verdict: Verdict
    score: float
    reason: str = ""
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
    steady_state_after_at: datetime | None = Field(
        default=None, description="When the steady state after was measured (after the rollbacks and the cool-down)")
    rollbacks: Rollbacks
    fault: FaultWindow | None = None
    phases: list[PhaseLoad]
    availability_pct: float | None = Field(default=None, description="Success rate over the whole fault window")
    availability_worst_pct: float | None = Field(
        default=None, description="Success rate of the fault's worst impact window (impact_window_s)")
    detect_time_s: float | None = Field(
        default=None, description="From the fault's start to the end of the first impact window in which a load "
        "threshold broke; None if none did")
    recovery_time_s: float | None = Field(
        default=None, description="From the fault's removal (the rollbacks ended, or loadkit removed what they "
        "left; else the method's end) to the start of the first recovery window over which every load threshold "
        "held; 0 if they never broke; None if no recovery was seen")
    impact_window_s: float | None = None
    recovery_window_s: float | None = None
    checks: list[Check]
    thresholds: list[Threshold] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    unguarded: list[str] = Field(default_factory=list, description="Activities --allow-unguarded let run outside "
                                 "loadkit's guards: nothing checked what they touched or left")
    faults_seen: list[str] = Field(default_factory=list, description="The faults loadkit saw in place after the "
                                   "method's actions: what \"injected\" means")
    timeline: list[TimelinePoint] = Field(default_factory=list, description="The load's windows, `t` in seconds "
                                          "since started_at (empty in older results)")
    journal_path: str | None = None
    journal_error: str | None = Field(default=None, description="Why the journal could not be written")

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.FAILED]

    @property
    def skipped_checks(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.SKIPPED]
