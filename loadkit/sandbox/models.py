"""The sandbox's wire format: the ready line of `sandbox up --output json` and `GET /sandbox`.

Both are a `SandboxInfo`. The ready line leaves out the live fields (`alive`, `restarts`), which
only the status endpoint fills in.

Example ready line (one line, wrapped here):

    {"schema_version":1,"traffic_url":"http://127.0.0.1:8080","admin_url":"http://127.0.0.1:8081",
     "metrics_url":"http://127.0.0.1:8081/metrics","namespace":"bruno","canary_weight":0,
     "workloads":{"primary":{"name":"bruno-site-primary","error_rate":0.0,"latency_ms":0,
     "pods":[{"name":"bruno-site-primary-0","port":40001,"pid":1234}, ...]},"canary":{...}}}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from loadkit.sandbox._spec import Version


class PodInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    port: int | None
    pid: int | None
    alive: bool | None = None
    restarts: int | None = None


class WorkloadInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    error_rate: float
    latency_ms: int
    pods: list[PodInfo]


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

    def ready_line(self) -> str:
        """The single JSON line `sandbox up --output json` prints."""
        return self.model_dump_json(exclude_none=True)

    def status(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
