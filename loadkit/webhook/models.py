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

from loadkit.models import SCHEMA_VERSION, RunResult, Snapshot, Verdict

# Kubernetes names as Flagger uses them: a Service `<name>-canary` in `<namespace>`, so both must be
# DNS labels. This also keeps the default target `<name>-canary.<namespace>` inside the cluster.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class HookKind(enum.StrEnum):
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    ROLLBACK = "rollback"
    POST_ROLLOUT = "post-rollout"
    EVENT = "event"


class MetadataKey(enum.StrEnum):
    PROFILE = "profile"
    TARGET = "target"
    DURATION = "duration"
    USERS = "users"
    SPAWN_RATE = "spawn_rate"
    HEADERS = "headers"
    THRESHOLDS = "thresholds"


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
    COMPLETED = "completed"  # ran to the end of its profile; has a verdict
    STOPPED = "stopped"  # ended early by post-rollout; scored, has a verdict
    INTERRUPTED = "interrupted"  # the server stopped or restarted mid-run; never a pass
    ERROR = "error"  # the target or Locust failed; never a pass


class LiveVerdict(enum.StrEnum):
    COLLECTING = "collecting"  # fewer than min_samples requests so far
    PASS = "pass"
    FAIL = "fail"


class LiveState(BaseModel):
    """The latest snapshot of a running run and its verdict so far."""

    model_config = ConfigDict(extra="forbid")

    verdict: LiveVerdict
    failing: list[str] = Field(default_factory=list)
    reason: str = ""
    snapshot: Snapshot | None = None


class RunRecord(BaseModel):
    """One load run started by a hook, as stored and as `GET /runs/{id}` returns it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    namespace: str
    name: str
    checksum: str
    profile: str
    hook: HookKind
    thresholds: str
    target: str
    status: RunStatus
    verdict: Verdict | None = None  # once scored; never set for interrupted runs
    score: float | None = None
    reason: str = ""
    created_at: datetime
    finished_at: datetime | None = None
    live: LiveState | None = None
    result: RunResult | None = None
    url: str = ""

    @property
    def finished(self) -> bool:
        return self.status is not RunStatus.RUNNING


class RunList(BaseModel):
    schema_version: int = SCHEMA_VERSION
    runs: list[RunRecord]


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
    verdict: Verdict | None = None
    details: dict[str, Any] = Field(default_factory=dict)
