"""The FastAPI app: Flagger's hooks, the runs API, health, metrics and the OpenAPI document.

`create_app(settings, store, manager)` wires it; one dependency (`flagger_call`) reads, limits,
decodes, validates and authorises every Flagger payload, for every hook kind.
(No `from __future__ import annotations` here: FastAPI reads the dependency annotations at runtime.)
"""


import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loadkit.errors import (
    AuthError,
    BusyError,
    LoadkitError,
    NotFoundError,
    NotReadyError,
    PayloadError,
    SafetyError,
    TooLargeError,
)
from loadkit.webhook.gates import check_hook
from loadkit.webhook.hooks import Hooks
from loadkit.webhook.logs import log_event
from loadkit.webhook.metrics import WebhookMetrics
from loadkit.webhook.models import (
    DNS_LABEL,
    AnalysisDetail,
    AnalysisList,
    FlaggerPayload,
    Freeze,
    GateRequest,
    GateState,
    GateStatus,
    HookAnswer,
    HookKind,
    RunList,
    RunRecord,
)
from loadkit.webhook.policy import HookCall, resolve
from loadkit.webhook.runs import RunManager
from loadkit.webhook.settings import ServeSettings
from loadkit.webhook.store import Store, now
from loadkit.webhook.ui import UI, install_ui, ui_url
from loadkit.webhook.ui_charts import ChartViews

_HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "success for Flagger (for `rollback`: roll back now)"},
    202: {"description": "`rollout`: load started"},
    400: {"description": "bad payload: malformed JSON, a wrong field, an unknown metadata key, no checksum"},
    403: {"description": "a gate says wait / not allowed by policy (namespace, target)"},
    404: {"description": "`rollback`: no run in this analysis, so no rollback"},
    409: {"description": "`rollback`: no rollback signal; a run stopped before it could be judged"},
    412: {"description": "the load run failed its thresholds"},
    413: {"description": "body larger than --max-body"},
    424: {"description": "the load run could not be judged (could not run, too few samples): a failed check"},
    429: {"description": "too many runs at once; see Retry-After (at most 30 s)"},
    503: {"description": "transient: the run was cut off, retry"},
}


PRUNE_EVERY_S = 3600.0
log = logging.getLogger(__name__)


def create_app(settings: ServeSettings, store: Store, manager: RunManager, *, views: ChartViews) -> FastAPI:
    """`views` draws the charts and reports of /ui (loadkit/webhook/ui_charts.py: the seam; `loadkit
    serve` wires loadkit/report's)."""
    hooks = Hooks(manager, store, settings.config)
    metrics = WebhookMetrics(store, manager)
    ui = UI(settings, store, manager, hooks.gates, views)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.interrupt_unfinished("the server restarted during the run: not judged, never a pass")
        pruner = asyncio.create_task(_prune_forever(store, settings.retention_s))
        app.state.ready = True
        yield
        app.state.ready = False
        pruner.cancel()
        await asyncio.to_thread(manager.shutdown)
        ui.close()

    app = FastAPI(title="loadkit webhook", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Flagger webhooks that gate canary analysis on scored Locust load runs.")
    app.state.ready = False
    _install_error_handlers(app)

    app.add_middleware(_CountHookAnswers, metrics=metrics)

    async def flagger_call(request: Request) -> HookCall:
        kind = _hook_kind(request.path_params["kind"])
        payload = _decode(await _read_body(request, settings.max_body_bytes))
        return resolve(kind, payload, settings.config, settings.policy)

    def require_token(request: Request) -> None:
        if settings.token is None:
            raise AuthError("this endpoint needs a bearer token, and none is configured "
                            "(start loadkit serve with --token-file)", configured=False)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            raise AuthError("missing or wrong bearer token (send Authorization: Bearer <token>)")

    @app.post("/flagger/{kind}", responses=_HOOK_RESPONSES, summary="A Flagger webhook",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": FlaggerPayload.model_json_schema()}}}},
              description="kind: " + ", ".join(k.value for k in HookKind))
    async def flagger_hook(request: Request, call: Annotated[HookCall, Depends(flagger_call)]) -> Response:
        started = time.perf_counter()
        answer = await hooks.handle(call)
        answer = answer.model_copy(update={"ui": ui_url(settings.public_url, run=answer.run, analysis=answer.analysis,
                                                        canary=(call.namespace, call.name))})
        log_event("hook", kind=call.kind.value, namespace=call.namespace, name=call.name,
                  checksum=call.checksum or None, phase=call.payload.phase or None, analysis=answer.analysis,
                  status=answer.status, run=answer.run, ms=round((time.perf_counter() - started) * 1000, 1),
                  message=answer.message)
        return _answer(request, answer)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    async def readyz() -> Response:
        ready = bool(app.state.ready)
        return PlainTextResponse("ready" if ready else "shutting down", status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/runs", response_model=RunList)
    async def list_runs(namespace: str | None = None, name: str | None = None,
                        limit: int = Query(100, ge=1, le=1000)) -> RunList:
        return RunList(runs=[_with_live(r, manager) for r in store.list_runs(namespace, name, limit)])

    @app.get("/runs/{run_id}", response_model=RunRecord)
    async def get_run(run_id: str) -> RunRecord:
        return _with_live(_find(store, run_id), manager)

    @app.get("/runs/{run_id}/result", summary="The run's result: the model `loadkit run --output json` prints")
    async def get_result(run_id: str) -> Response:
        run = _find(store, run_id)
        if run.result is None:
            raise NotReadyError(f"run {run_id} has no result ({run.status.value}): {run.reason or 'running'}")
        return Response(run.result.model_dump_json(), media_type="application/json")

    @app.post("/runs/{run_id}/stop", dependencies=[Depends(require_token)])
    async def stop_run(run_id: str) -> dict[str, Any]:
        run = _find(store, run_id)
        stopped = manager.request_stop(run.namespace, run.name, run_id=run_id)
        return {"run": run_id, "stopping": bool(stopped)}

    @app.get("/analyses", response_model=AnalysisList)
    async def list_analyses(namespace: str | None = None, name: str | None = None,
                            limit: int = Query(100, ge=1, le=1000)) -> AnalysisList:
        return AnalysisList(analyses=store.list_analyses(namespace, name, limit))

    @app.get("/analyses/{analysis_id}", response_model=AnalysisDetail)
    async def get_analysis(analysis_id: str) -> AnalysisDetail:
        analysis = store.get_analysis(analysis_id)
        if analysis is None:
            raise NotFoundError(f"no analysis {analysis_id[:64]!r}")
        runs = [_with_live(r, manager) for r in store.runs_of(analysis.id)]
        return AnalysisDetail(analysis=analysis, runs=runs,
                              gates=store.gates(analysis.namespace, analysis.name, (analysis.id,)))

    @app.get("/gates/{namespace}/{name}", response_model=GateStatus)
    async def gate_status(namespace: str, name: str) -> GateStatus:
        return hooks.gates.status(*_canary_path(namespace, name))

    @app.post("/gates/{namespace}/{name}/{action}", dependencies=[Depends(require_token)],
              response_model=GateStatus, summary="approve | halt a gate, or open a manual rollback",
              description="action: approve, halt or rollback; body {hook?, reason?}")
    async def gate_decide(namespace: str, name: str, action: str, request: Request) -> GateStatus:
        canary = _canary_path(namespace, name)
        body = _gate_request(await _read_body(request, settings.max_body_bytes))
        if action == "rollback":
            return hooks.gates.open_rollback(*canary, body.reason)
        states = {"approve": GateState.APPROVED, "halt": GateState.HALTED}
        if action not in states:
            raise NotFoundError(f"unknown gate action {action[:32]!r}; valid: approve, halt, rollback")
        check_hook(body.hook)
        return hooks.gates.decide(*canary, states[action], body)

    @app.delete("/gates/{namespace}/{name}/rollback", dependencies=[Depends(require_token)],
                response_model=GateStatus, summary="close a manual rollback")
    async def gate_close_rollback(namespace: str, name: str) -> GateStatus:
        return hooks.gates.close_rollback(*_canary_path(namespace, name))

    @app.get("/events")
    async def list_events(namespace: str | None = None, name: str | None = None,
                          limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        return [e.model_dump(mode="json") for e in store.list_events(namespace, name, limit)]

    @app.get("/admin/freeze")
    async def list_freezes() -> list[Freeze]:
        return store.freezes()

    @app.put("/admin/freeze", dependencies=[Depends(require_token)], status_code=200)
    async def freeze(request: Request) -> Freeze:
        body = await _read_body(request, settings.max_body_bytes)
        try:
            item = Freeze.model_validate_json(body)
        except ValidationError as exc:
            raise PayloadError(_first_error(exc)) from None
        store.set_freeze(item)
        return item

    @app.delete("/admin/freeze", dependencies=[Depends(require_token)])
    async def unfreeze(namespace: str = "*", name: str = "*") -> dict[str, Any]:
        return {"namespace": namespace, "name": name, "removed": store.clear_freeze(namespace, name)}

    install_ui(app, ui)
    return app


_KINDS = frozenset(k.value for k in HookKind)


class _CountHookAnswers:
    """Plain ASGI middleware (Starlette's BaseHTTPMiddleware costs milliseconds a request):
    counts every answer under /flagger/, errors included, by hook kind and status; refuses paths
    with an encoded slash."""

    def __init__(self, app: ASGIApp, metrics: WebhookMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if b"%2f" in scope.get("raw_path", b"").lower():
            # A mesh policy on "/flagger/*" sees "/flagger%2Frollout" as another path, but it decodes
            # to a hook: refuse encoded slashes so the AuthorizationPolicy cannot be walked around.
            await PlainTextResponse("bad request: an encoded slash (%2F) in the path\n", status_code=400)(
                scope, receive, send)
            return
        if not path.startswith("/flagger/"):
            await self.app(scope, receive, send)
            return
        kind = path.removeprefix("/flagger/")
        kind = kind if kind in _KINDS else "unknown"

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.hook_answered(kind, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


async def _prune_forever(store: Store, retention_s: float) -> None:
    """Keep the store bounded: forget finished runs and events past the retention, hourly."""
    while True:
        await asyncio.to_thread(store.prune, now() - timedelta(seconds=retention_s))
        await asyncio.sleep(PRUNE_EVERY_S)


def _hook_kind(text: str) -> HookKind:
    try:
        return HookKind(text)
    except ValueError:
        valid = ", ".join(k.value for k in HookKind)
        raise NotFoundError(f"unknown hook kind {text[:64]!r}; valid: {valid} (POST /flagger/<kind>)") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"body of {declared} bytes is larger than the limit ({limit} bytes, --max-body)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLargeError(f"body is larger than the limit ({limit} bytes, --max-body)")
    return bytes(body)


def _decode(body: bytes) -> FlaggerPayload:
    try:
        data = json.loads(body)
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be Flagger's JSON object {name, namespace, phase, checksum, metadata}")
    try:
        return FlaggerPayload.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


def _canary_path(namespace: str, name: str) -> tuple[str, str]:
    for what, value in (("namespace", namespace), ("name", name)):
        if not re.fullmatch(DNS_LABEL, value):
            raise PayloadError(f"{what} {value[:64]!r} is not a Kubernetes name (a DNS label)")
    return namespace, name


def _gate_request(body: bytes) -> GateRequest:
    if not body.strip():
        return GateRequest()
    try:
        return GateRequest.model_validate_json(body)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from None


def _find(store: Store, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id[:64]!r}")
    return run


def _with_live(run: RunRecord, manager: RunManager) -> RunRecord:
    live = manager.live(run.id)
    return run.model_copy(update={"live": live}) if live is not None else run


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _answer(request: Request, answer: HookAnswer) -> Response:
    headers = {"X-Loadkit-Run": answer.run} if answer.run else {}
    if answer.analysis:
        headers["X-Loadkit-Analysis"] = answer.analysis
    if answer.ui:
        headers["X-Loadkit-UI"] = answer.ui
    if answer.retry_after_s is not None:
        headers["Retry-After"] = str(answer.retry_after_s)
    if _wants_json(request):
        return JSONResponse(answer.model_dump(mode="json"), status_code=answer.status, headers=headers)
    return PlainTextResponse(answer.message + "\n", status_code=answer.status, headers=headers)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = _answer(request, HookAnswer(status=status, message=message))
    response.headers.update(headers or {})
    return response


def _install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a 4xx/5xx with a one-line reason; the status per error class is here."""

    async def on_loadkit(request: Request, exc: LoadkitError) -> Response:
        status, headers = _status_for(exc)
        prefix = {400: "bad payload: ", 503: "temporary failure, retry: "}.get(status, "")
        message = prefix + str(exc).replace("\n", " ")
        if request.url.path.startswith("/flagger/"):
            log_event("hook", kind=request.url.path.removeprefix("/flagger/")[:64], status=status, message=message)
        return _error(request, status, message, headers)

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(request, 400, f"bad request: {fields}")

    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return _error(request, 500, f"internal error ({type(exc).__name__}); this is a loadkit bug, see its log")

    app.add_exception_handler(LoadkitError, on_loadkit)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_bug)


def _status_for(exc: LoadkitError) -> tuple[int, dict[str, str]]:
    if isinstance(exc, TooLargeError):
        return 413, {}
    if isinstance(exc, PayloadError):
        return 400, {}
    if isinstance(exc, SafetyError):
        return 403, {}
    if isinstance(exc, NotFoundError):
        return 404, {}
    if isinstance(exc, NotReadyError):
        return 409, {}
    if isinstance(exc, AuthError):
        return (401, {"WWW-Authenticate": "Bearer"}) if exc.configured else (403, {})
    if isinstance(exc, BusyError):
        return 429, {"Retry-After": str(exc.retry_after_s)}
    return 503, {}
