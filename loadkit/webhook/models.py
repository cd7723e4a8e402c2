"""The webhook's wire types: Flagger's payload, hook kinds, runs, events, freezes.

Flagger sends `{"name","namespace","phase","checksum","metadata"?}` with string metadata only
(fluxcd/flagger pkg/apis/flagger/v1beta1 CanaryWebhookPayload). Unknown top-level fields are
ignored so a newer Flagger does not break the hooks; unknown metadata keys are refused.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

# Kubernetes names as Flagger uses them (a Service `<name>-canary` in `<namespace>`): DNS labels.
from loadkit.config import DNS_LABEL, HookKind
from loadkit.models.base import SCHEMA_VERSION
from loadkit.models.results import RunResult, Verdict
from loadkit.models.wire import Snapshot


class MetadataKey(enum.StrEnum):
    PROFILE = "profile"
    TARGET = "target"
    DURATION = "duration"  # 30s, 5m, ... or `analysis`: load until the analysis ends
    USERS = "users"
    SPAWN_RATE = "spawn_rate"
    RATE = "rate"  # open model: iterations per second (instead of users)
    HEADERS = "headers"
    THRESHOLDS = "thresholds"
    SERVICE = "service"  # Flagger's service.name, when it is not the Canary's name
    WORKLOAD = "workload"  # Flagger's targetRef.name, when it is not the Canary's name
    GATE = "gate"  # confirm-* hooks: load | manual | both
    ROLLBACK_ON = "rollback_on"  # rollback hook: manual | decisive-breach


# The hooks Flagger calls during an analysis (Progressing / WaitingPromotion): they open one.
ANALYSIS_HOOKS = frozenset({"pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback"})
GATE_HOOKS = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion")


class GateMode(enum.StrEnum):
    """What a confirm-* hook waits for (metadata `gate`)."""

    LOAD = "load"  # the analysis's load runs: within thresholds / passed
    MANUAL = "manual"  # an approval through the authenticated API (`loadkit gate approve`)
    BOTH = "both"


class GateState(enum.StrEnum):
    APPROVED = "approved"  # confirm-* gates
    HALTED = "halted"  # confirm-* gates: wait, whatever the load says
    OPEN = "open"  # the manual rollback: the rollback hook answers 200


class AnalysisStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class AnalysisOutcome(enum.StrEnum):
    """How an analysis ended, as far as loadkit saw it."""

    SUCCEEDED = "succeeded"  # post-rollout, phase Succeeded (promoted)
    FAILED = "failed"  # post-rollout, phase Failed (rolled back)
    SUPERSEDED = "superseded"  # a different checksum arrived for the same canary (new revision)
    ENDED = "ended"  # Flagger asked to confirm a new rollout, so this one was over (no post-rollout seen)


# Keys Flagger itself adds to the metadata of `event` hooks.
EVENT_KEYS = frozenset({"eventMessage", "eventType", "timestamp"})


class FlaggerPayload(BaseModel):
    """Flagger's CanaryWebhookPayload, exactly; strings only (Flagger sends nothing else)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: StrictStr = Field(pattern=DNS_LABEL, max_length=63)
    namespace: StrictStr = Field(pattern=DNS_LABEL, max_length=63)
    phase: StrictStr = Field(default="", max_length=64)  # empty while a new canary initialises
    checksum: StrictStr = Field(default="", max_length=128, pattern=r"^[A-Za-z0-9._-]*$")
    metadata: dict[StrictStr, StrictStr] | None = None


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # ran to its end (a continuous run: to the end of its analysis); judged
    STOPPED = "stopped"  # ended early (post-rollout, or stopped by hand): not judged
    SUPERSEDED = "superseded"  # a new revision replaced its analysis: not judged
    INTERRUPTED = "interrupted"  # the server stopped or restarted mid-run: not judged
    ERROR = "error"  # the target or Locust failed: not judged


class LiveVerdict(enum.StrEnum):
    COLLECTING = "collecting"  # fewer than min_samples requests so far
    PASS = "pass"
    FAIL = "fail"
    NOT_JUDGED = "not-judged"  # its requests left the target (refused): the load says nothing about the canary


class LiveState(BaseModel):
    """The latest snapshot of a running run and its verdict so far."""

    model_config = ConfigDict(extra="forbid")

    verdict: LiveVerdict
    failing: list[str] = Field(default_factory=list)
    reason: str = ""
    decisive: str = ""  # a breach certain at the rollback confidence, once one was seen (it stays)
    snapshot: Snapshot | None = None


class RunRecord(BaseModel):
    """One load run started by a hook, as stored and as `GET /runs/{id}` returns it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    analysis: str = ""  # the Flagger analysis it belongs to ("" for runs stored before analyses existed)
    namespace: str
    name: str
    checksum: str
    profile: str
    hook: HookKind
    thresholds: str
    target: str
    plan_key: str = ""  # hash of the whole resolved plan: runs are deduplicated on it within an analysis
    continuous: bool = False  # `duration: analysis`: loads until its analysis ends
    status: RunStatus
    verdict: Verdict | None = None  # only for judged runs: completed with enough samples
    score: float | None = None
    reason: str = ""  # why it passed or failed, or "not judged: ..."
    decisive: str = ""  # a breach that was statistically certain (a rollback signal where enabled)
    created_at: datetime
    finished_at: datetime | None = None
    live: LiveState | None = None
    result: RunResult | None = None
    url: str = ""

    @property
    def finished(self) -> bool:
        return self.status is not RunStatus.RUNNING

    @property
    def judged(self) -> bool:
        """Finished, ran to its end and had enough samples: its verdict counts."""
        return self.status is RunStatus.COMPLETED and self.verdict is not None


class RunList(BaseModel):
    schema_version: int = SCHEMA_VERSION
    runs: list[RunRecord]


class AnalysisRecord(BaseModel):
    """One Flagger analysis of a canary: from the first hook of a revision to post-rollout or the next revision.

    Runs, verdicts and gates belong to one analysis; a closed analysis is history, never an answer.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    namespace: str
    name: str
    checksum: str
    status: AnalysisStatus
    opened_at: datetime
    opened_by: str  # the hook kind that opened it
    closed_at: datetime | None = None
    outcome: AnalysisOutcome | None = None
    reason: str = ""


class GateRecord(BaseModel):
    """A manual decision: an approval or a halt of a confirm-* hook, or an open manual rollback."""

    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str
    analysis: str  # "" = the next rollout (confirm-rollout happens before its analysis opens)
    hook: str  # a GATE_HOOKS kind, or "rollback"
    state: GateState
    reason: str = ""
    updated_at: datetime


class GateRequest(BaseModel):
    """Body of POST /gates/{namespace}/{name}/{action}: which hook (default: every gate of the moment) and why."""

    model_config = ConfigDict(extra="forbid")

    hook: str | None = Field(default=None, pattern="^(confirm-rollout|confirm-traffic-increase|confirm-promotion)$")
    reason: str = Field(default="", max_length=500)


class GateStatus(BaseModel):
    """GET /gates/{namespace}/{name}: the open analysis (if any), its gates and the next rollout's."""

    schema_version: int = SCHEMA_VERSION
    namespace: str
    name: str
    analysis: AnalysisRecord | None = None
    gates: list[GateRecord] = Field(default_factory=list)
    message: str = ""


class AnalysisDetail(BaseModel):
    schema_version: int = SCHEMA_VERSION
    analysis: AnalysisRecord
    runs: list[RunRecord]
    gates: list[GateRecord]


class AnalysisList(BaseModel):
    schema_version: int = SCHEMA_VERSION
    analyses: list[AnalysisRecord]


class EventRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str
    phase: str
    checksum: str
    event_type: str
    message: str
    timestamp: str
    received_at: datetime
    analysis: str = ""  # the open analysis of the same checksum, if any


class Freeze(BaseModel):
    """A rollout freeze: confirm-rollout answers 403 while one matches the canary."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="*", pattern=r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
    name: str = Field(default="*", pattern=r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
    reason: str = Field(min_length=1, max_length=500)


class HookAnswer(BaseModel):
    """What a hook answers: Flagger reads only the status; people read the rest."""

    model_config = ConfigDict(extra="forbid")

    status: int
    message: str
    run: str | None = None
    analysis: str | None = None
    verdict: Verdict | None = None
    retry_after_s: int | None = None
    ui: str | None = None  # the page of the run (else analysis, else canary) on /ui, under --public-url
    details: dict[str, Any] = Field(default_factory=dict)
