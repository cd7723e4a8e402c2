"""The sandbox's wire format: the ready line of `sandbox up --output json`, `GET /sandbox` and the
chaos endpoints of the admin API.

The ready line and the status are a `SandboxInfo`. The ready line leaves out the live fields
(`alive`, `restarts`, `faults`), which only the status endpoint fills in. Request bodies
(`FaultRequest` with its optional `FaultOwner`, `KillRequest`) are strict: no extra keys, no
strings for numbers, so a typo is a 400 that names the field rather than a silently ignored setting.

Example ready line (one line, wrapped here):

    {"schema_version":1,"traffic_url":"http://127.0.0.1:8080","admin_url":"http://127.0.0.1:8081",
     "metrics_url":"http://127.0.0.1:8081/metrics","namespace":"bruno","canary_weight":0,
     "workloads":{"primary":{"name":"bruno-site-primary","error_rate":0.0,"latency_ms":0,
     "pods":[{"name":"bruno-site-primary-0","port":40001,"pid":1234}, ...],
     "retries":{"attempts":0,"retry_on":"connect-failure,...","retriable_status_codes":[503]}},
     "canary":{...}}}
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from loadkit.sandbox._faults import Dependency, FaultKind
from loadkit.sandbox._pods import KillSignal
from loadkit.sandbox._spec import RoutePolicy, Version

# A fault must go away on its own soon after the run that made it died: one hour at most.
MAX_FAULT_TTL_S = 3_600.0
MAX_RESTART_AFTER_S = 300.0
MAX_RUN_ID_LENGTH, MAX_HOST_LENGTH, MAX_COMMAND_LENGTH = 128, 255, 200
# Run ids go into query strings and logs: letters, digits and . _ : - only.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Unix time of 2100-01-01: a `started` beyond it is a unit mistake (milliseconds), not a time.
_LATEST_START = 4_102_444_800.0


class PodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    port: int | None
    pid: int | None
    alive: bool | None = None
    restarts: int | None = None


class RetriesInfo(BaseModel):
    """A version's retry policy, like a VirtualService route's `retries:`; attempts 0 means off."""

    model_config = ConfigDict(extra="forbid")

    attempts: int
    retry_on: str
    retriable_status_codes: list[int]
    per_try_timeout_s: float | None = None

    @classmethod
    def of(cls, policy: RoutePolicy) -> RetriesInfo:
        return cls(
            attempts=policy.attempts,
            retry_on=",".join(policy.retry_on_names),
            retriable_status_codes=sorted(policy.retriable_status_codes),
            per_try_timeout_s=policy.per_try_timeout_s,
        )


class WorkloadInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    error_rate: float
    latency_ms: int
    pods: list[PodInfo]
    retries: RetriesInfo | None = None
    timeout_s: float | None = None  # the route's `timeout:` (the whole request, retries included)


_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class FaultOwner(BaseModel):
    """Who adds a fault; every key optional. Example: `{"run": "chaos-1a2b3c4d", "pid": 4242}`.

    Stored with the fault and listed by `GET /faults`, so a later run (or a human) can tell whose
    fault it is after its run was killed, and `DELETE /faults?run=<run>` removes only that run's.
    """

    model_config = _STRICT

    run: str | None = Field(default=None, min_length=1, max_length=MAX_RUN_ID_LENGTH)
    pid: int | None = Field(default=None, ge=1, le=2**31 - 1)
    host: str | None = Field(default=None, min_length=1, max_length=MAX_HOST_LENGTH)
    started: float | None = Field(default=None, ge=0, le=_LATEST_START)
    command: str | None = Field(default=None, min_length=1, max_length=MAX_COMMAND_LENGTH)

    @field_validator("run")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not RUN_ID.fullmatch(value):
            raise PydanticCustomError("run_id", "use letters, digits and . _ : - only, starting with a letter or digit")
        return value

    @field_validator("host", "command")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise PydanticCustomError("control_character", "must not contain control characters (line breaks, tabs)")
        return value


class FaultInfo(BaseModel):
    """An active router fault, as `GET /faults` lists it; `owner` is null for faults added without one."""

    model_config = ConfigDict(extra="forbid")

    id: str
    version: Version
    kind: FaultKind
    delay_ms: int | None
    http_status: int | None
    percentage: float
    created_at: datetime
    expires_at: datetime
    owner: FaultOwner | None = None
    dependency: Dependency | None = None
    cpu_pct: float | None = None
    memory_mb: int | None = None
    mechanism: str | None = None
    detail: str | None = None


class SandboxInfo(BaseModel):
    """Where a running sandbox listens and what it runs."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    traffic_url: str
    admin_url: str
    metrics_url: str
    namespace: str
    canary_weight: int
    workloads: dict[Version, WorkloadInfo]
    faults: list[FaultInfo] | None = None

    def ready_line(self) -> str:
        """The single JSON line `sandbox up --output json` prints."""
        return self.model_dump_json(exclude_none=True)

    def status(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class FaultRequest(BaseModel):
    """Body of `POST /faults`. Example: `{"version": "canary", "kind": "abort", "http_status": 503}`."""

    model_config = _STRICT

    version: Version
    kind: FaultKind
    delay_ms: int | None = Field(default=None, gt=0, validate_default=True)
    http_status: int | None = Field(default=None, ge=400, le=599, validate_default=True)
    percentage: float = Field(default=100.0, gt=0, le=100)
    ttl_s: float = Field(default=600.0, gt=0)
    owner: FaultOwner | None = None
    dependency: Dependency | None = Field(default=None, validate_default=True)
    cpu_pct: float | None = Field(default=None, gt=0, le=100, validate_default=True)
    memory_mb: int | None = Field(default=None, ge=16, le=65_536, validate_default=True)
    mechanism: Literal["auto", "cgroup", "busy"] | None = Field(default=None, validate_default=True)

    @field_validator("ttl_s")
    @classmethod
    def _expires_soon(cls, value: float) -> float:
        if value > MAX_FAULT_TTL_S:
            raise PydanticCustomError(
                "ttl_too_long",
                "must be at most {limit} s (1 hour), got {value}: a fault must expire on its own "
                "soon after its run dies; add it again to keep it longer",
                {"limit": f"{MAX_FAULT_TTL_S:g}", "value": f"{value:g}"},
            )
        return value

    @field_validator("delay_ms", "http_status", "dependency", "cpu_pct", "memory_mb", "mechanism")
    @classmethod
    def _belongs_to_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")  # absent when `kind` itself was invalid: that error suffices
        required, allowed = _FIELD_KINDS[str(info.field_name)]
        if kind in required and value is None:
            raise PydanticCustomError("fault_kind", "required for kind {kind}", {"kind": kind.value})
        if kind is not None and kind not in allowed and value is not None:
            names = ", ".join(k.value for k in allowed)
            raise PydanticCustomError("fault_kind", "only allowed for kind {kind}", {"kind": names})
        return value


_DEPENDENCY_KINDS = {FaultKind.DEPENDENCY_SLOW, FaultKind.DEPENDENCY_FAILING, FaultKind.DEPENDENCY_UNREACHABLE}
# field -> (the kinds that require it, the kinds that allow it)
_FIELD_KINDS: dict[str, tuple[set[FaultKind], set[FaultKind]]] = {
    "delay_ms": ({FaultKind.DELAY, FaultKind.DEPENDENCY_SLOW}, {FaultKind.DELAY, FaultKind.DEPENDENCY_SLOW}),
    "http_status": ({FaultKind.ABORT}, {FaultKind.ABORT}),
    "dependency": (_DEPENDENCY_KINDS, _DEPENDENCY_KINDS | {FaultKind.LOSS, FaultKind.PARTITION}),
    "cpu_pct": ({FaultKind.CPU}, {FaultKind.CPU}),
    "memory_mb": ({FaultKind.MEMORY}, {FaultKind.MEMORY}),
    "mechanism": (set(), {FaultKind.CPU}),
}


class KillRequest(BaseModel):
    """Body of `POST /pods/kill`. Example: `{"version": "canary", "count": 1}`."""

    model_config = _STRICT

    version: Version
    count: int = Field(ge=1)
    restart_after_s: float = Field(default=2.0, ge=0, le=MAX_RESTART_AFTER_S)
    signal: KillSignal = KillSignal.SIGKILL
    # Kubernetes takes a moment to drop a dead pod from the Service's endpoints (kube-proxy / Envoy
    # EDS); until then requests still go to it and fail. 0 makes the router forget it at once.
    endpoint_lag_s: float = Field(default=1.0, ge=0, le=30)


class KillResult(BaseModel):
    """Answer of `POST /pods/kill`: the pods that got the signal, in pod order."""

    model_config = ConfigDict(extra="forbid")

    killed: list[str]
    restart_after_s: float
    signal: KillSignal


class PodState(BaseModel):
    """One pod as `GET /pods` lists it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: Version
    port: int | None
    pid: int | None
    alive: bool
    restarts: int
