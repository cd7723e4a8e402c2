"""The admin API's chaos endpoints: router faults and pod kills, for Chaos Toolkit actions.

    GET    /faults[?version=V][&run=R]   200 {"faults": [FaultInfo, ...]}  oldest first
    POST   /faults                       FaultRequest -> 201 FaultInfo
    DELETE /faults[?version=V][&run=R]   200 {"removed": n}  every fault, or those of version V / run R
    DELETE /faults/{id}                  200 {"removed": 1}; 404 for an unknown id
    GET    /pods                    200 {"pods": [PodState, ...]}  primary pods first, in pod order
    POST   /pods/kill               KillRequest -> 200 KillResult

Bad input is a 400 `{"error": "field: what is wrong", "field": "field", "fields": ["field", ...]}`
(`body` when the body is not a JSON object at all), never a 500; an unknown fault id is a 404.

Every fault removes itself `ttl_s` (at most an hour) after it was added: a chaos experiment that
dies before its rollback must not leave the canary broken for long. The timers run on the event
loop's monotonic clock; `created_at`/`expires_at` are wall-clock UTC for humans. A fault may name
its `owner` (the run, pid, host, start time and command that added it), so that a run killed with
`kill -9` leaves faults anyone can attribute, and a later run's rollback `DELETE /faults?run=<its
id>` removes only its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from loadkit.sandbox._faults import FaultOwner, FaultTable, RouterFault
from loadkit.sandbox._hostfaults import HostFaults, Unavailable
from loadkit.sandbox._pods import Log, ReplicaSet
from loadkit.sandbox._spec import Version
from loadkit.sandbox.models import (
    MAX_RUN_ID_LENGTH,
    RUN_ID,
    FaultInfo,
    FaultRequest,
    KillRequest,
    KillResult,
    PodState,
)

RequestModel = TypeVar("RequestModel", bound=pydantic.BaseModel)


def fault_infos(faults: Iterable[RouterFault]) -> list[FaultInfo]:
    return [FaultInfo.model_validate(fault, from_attributes=True) for fault in faults]


class ChaosApi:
    """Fault and pod-kill endpoints. Example: `app.add_routes(chaos.routes())`."""

    def __init__(
        self,
        *,
        faults: FaultTable,
        replica_sets: dict[Version, ReplicaSet],
        log: Log,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: HostFaults | None = None,
    ) -> None:
        self._host = host
        self._faults = faults
        self._replica_sets = replica_sets
        self._log = log
        self._clock = clock
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/faults", self.list_faults),
            web.post("/faults", self.add_fault),
            web.delete("/faults", self.clear_faults),
            web.delete("/faults/{id}", self.remove_fault),
            web.get("/pods", self.pods),
            web.post("/pods/kill", self.kill_pods),
        ]

    async def close(self, app: web.Application | None = None) -> None:
        """Cancel the expiry timers (an `on_cleanup` hook); the faults die with the router anyway."""
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        if self._host is not None:  # nft tables and cgroups outlive the router: remove them now
            self._host.undo_all()

    # -- faults ----------------------------------------------------------------------------------

    async def list_faults(self, request: web.Request) -> web.Response:
        version, run = _filters(request)
        infos = fault_infos(self._faults.select(version, run))
        return _json({"faults": [info.model_dump(mode="json") for info in infos]})

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await _parse(request, FaultRequest)
        now = self._clock()
        fault = RouterFault(
            id=uuid.uuid4().hex[:12],
            version=body.version,
            kind=body.kind,
            percentage=body.percentage,
            created_at=now,
            expires_at=now + timedelta(seconds=body.ttl_s),
            delay_ms=body.delay_ms,
            http_status=body.http_status,
            owner=FaultOwner(**body.owner.model_dump()) if body.owner else None,
            dependency=body.dependency,
            cpu_pct=body.cpu_pct,
            memory_mb=body.memory_mb,
            mechanism=body.mechanism,
        )
        if not fault.kind.at_router:
            try:
                if self._host is None:
                    raise Unavailable("this sandbox makes router faults only")
                self._host.apply(fault)
            except (Unavailable, OSError) as exc:
                self._log(f"fault {fault.kind.value} refused: {exc}")
                return _json({"error": f"kind: {exc}", "field": "kind", "fields": ["kind"]}, status=422)
        self._faults.add(fault)
        loop = asyncio.get_running_loop()
        self._expiry[fault.id] = loop.call_later(body.ttl_s, self._expire, fault.id, body.ttl_s)
        self._log(f"fault {fault.id} added: {fault.describe()}, for at most {body.ttl_s:g} s")
        return _json(fault_infos([fault])[0].model_dump(mode="json"), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        version, run = _filters(request)
        removed = self._faults.clear(version, run)
        self._forget(removed)
        return _json({"removed": len(removed)})

    async def remove_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["id"]
        fault = self._faults.remove(fault_id)
        if fault is None:
            known = ", ".join(f.id for f in self._faults) or "none"
            message = f"no fault with id {fault_id!r} (active: {known})"
            return _json({"error": message, "field": "id"}, status=404)
        self._forget([fault])
        return _json({"removed": 1})

    def _expire(self, fault_id: str, ttl_s: float) -> None:
        self._expiry.pop(fault_id, None)
        fault = self._faults.remove(fault_id)
        if fault is not None:
            self._undo(fault)
            self._log(f"fault {fault.id} expired after {ttl_s:g} s and was removed: {fault.describe()}")

    def _forget(self, faults: list[RouterFault]) -> None:
        for fault in faults:
            timer = self._expiry.pop(fault.id, None)
            if timer is not None:
                timer.cancel()
            self._undo(fault)
            self._log(f"fault {fault.id} removed: {fault.describe()}")

    def _undo(self, fault: RouterFault) -> None:
        if self._host is not None:
            try:
                self._host.undo(fault)
            except OSError as exc:  # the reaper (and `loadkit chaos cleanup`) removes it after its expiry
                self._log(f"fault {fault.id}: could not remove {fault.detail}: {exc}")

    # -- pods ------------------------------------------------------------------------------------

    async def pods(self, request: web.Request) -> web.Response:
        states = [
            PodState(
                name=pod.name,
                version=version,
                port=pod.port,
                pid=pod.pid,
                alive=pod.alive,
                restarts=pod.restarts,
            ).model_dump(mode="json")
            for version, rs in self._replica_sets.items()
            for pod in rs.pods
        ]
        return _json({"pods": states})

    async def kill_pods(self, request: web.Request) -> web.Response:
        body = await _parse(request, KillRequest)
        killed = self._replica_sets[body.version].kill(body.count, body.signal, body.restart_after_s,
                                                       body.endpoint_lag_s)
        names = [pod.name for pod in killed]
        short = len(killed) < body.count
        alive_note = f" (asked for {body.count}, only {len(killed)} alive)" if short else ""
        self._log(
            f"killing {body.version.value} pods {', '.join(names) or '(none)'} with {body.signal.value}"
            f"{alive_note}; replacements in {body.restart_after_s:g} s"
        )
        result = KillResult(killed=names, restart_after_s=body.restart_after_s, signal=body.signal)
        return _json(result.model_dump(mode="json"))


async def _parse(request: web.Request, model: type[RequestModel]) -> RequestModel:
    """Validate the JSON body, or raise a 400 naming every bad field."""
    try:
        return model.model_validate_json(await request.read())
    except pydantic.ValidationError as exc:
        problems = [(_field(error["loc"]), error["msg"]) for error in exc.errors()]
        raise _bad_request(problems) from None


def _field(loc: tuple[int | str, ...]) -> str:
    """`("percentage",)` -> "percentage"; the empty location (not an object, not JSON) -> "body"."""
    return ".".join(str(part) for part in loc) or "body"


def _filters(request: web.Request) -> tuple[Version | None, str | None]:
    """`?version=canary&run=chaos-1a2b`: both optional; anything else is a 400 naming it."""
    unknown = sorted(set(request.query) - {"version", "run"})
    if unknown:
        message = "unknown query parameter (only version and run are allowed)"
        raise _bad_request([(name, message) for name in unknown])
    return _version(request.query.get("version")), _run(request.query.get("run"))


def _version(value: str | None) -> Version | None:
    if value is None:
        return None
    try:
        return Version(value)
    except ValueError:
        valid = ", ".join(v.value for v in Version)
        raise _bad_request([("version", f"{value!r} is not one of {valid}")]) from None


def _run(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_RUN_ID_LENGTH or not RUN_ID.fullmatch(value):
        message = f"{value[:40]!r} is not a run id (1..{MAX_RUN_ID_LENGTH} letters, digits and . _ : -)"
        raise _bad_request([("run", message)])
    return value


def _bad_request(problems: list[tuple[str, str]]) -> web.HTTPBadRequest:
    body = {
        "error": "; ".join(f"{field}: {message}" for field, message in problems),
        "field": problems[0][0],  # the shape of the shop's 400s: the first offender
        "fields": [field for field, _ in problems],
    }
    return web.HTTPBadRequest(body=json.dumps(body).encode(), content_type="application/json")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: Chaos Toolkit's http provider only parses that.
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")
