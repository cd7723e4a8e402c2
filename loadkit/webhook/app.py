"""The FastAPI app: Flagger's hooks, the runs API, health, metrics and the OpenAPI document.

`create_app(settings, store, manager)` wires it; one dependency (`flagger_call`) reads, limits,
decodes, validates and authorises every Flagger payload, for every hook kind.
(No `from __future__ import annotations` here: FastAPI reads the dependency annotations at runtime.)
"""


import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError

from loadkit.errors import LoadkitError, PayloadError, SafetyError
from loadkit.webhook.hooks import Hooks
from loadkit.webhook.metrics import WebhookMetrics
from loadkit.webhook.models import FlaggerPayload, Freeze, HookAnswer, HookKind, RunList, RunRecord
from loadkit.webhook.policy import HookCall, resolve
from loadkit.webhook.runs import Busy, RunManager
from loadkit.webhook.settings import ServeSettings
from loadkit.webhook.store import Store

_HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "success for Flagger (for `rollback`: roll back now)"},
    202: {"description": "`rollout`: load started"},
    400: {"description": "bad payload: malformed JSON, a wrong field, an unknown metadata key"},
    403: {"description": "a gate says wait / not allowed by policy (namespace, target)"},
    404: {"description": "`rollback`: no run, so no rollback"},
    409: {"description": "`rollback`: the run has not failed, so no rollback"},
    412: {"description": "the load run failed its thresholds"},
    413: {"description": "body larger than --max-body"},
    429: {"description": "too many runs at once; see Retry-After"},
    503: {"description": "transient: the run could not be judged, retry"},
}


class HttpError(LoadkitError):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def create_app(settings: ServeSettings, store: Store, manager: RunManager) -> FastAPI:
    hooks = Hooks(manager, store, settings.config)
    metrics = WebhookMetrics(store, manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.interrupt_unfinished("the server restarted during the run")
        app.state.ready = True
        yield
        app.state.ready = False
        manager.shutdown()

    app = FastAPI(title="loadkit webhook", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Flagger webhooks that gate canary analysis on scored Locust load runs.")
    app.state.ready = False
    _install_error_handlers(app)

    async def flagger_call(request: Request) -> HookCall:
        kind = _hook_kind(request.path_params["kind"])
        payload = _decode(await _read_body(request, settings.max_body_bytes))
        return resolve(kind, payload, settings.config, settings.policy)

    def require_token(request: Request) -> None:
        if settings.token is None:
            raise HttpError(403, "this endpoint needs a bearer token, and none is configured "
                            "(start loadkit serve with --token-file)")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HttpError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    @app.post("/flagger/{kind}", responses=_HOOK_RESPONSES, summary="A Flagger webhook",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": FlaggerPayload.model_json_schema()}}}},
              description="kind: " + ", ".join(k.value for k in HookKind))
    async def flagger_hook(request: Request, call: Annotated[HookCall, Depends(flagger_call)]) -> Response:
        answer = await hooks.handle(call)
        metrics.hook_answered(call.kind.value, answer.status)
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
            raise HttpError(409, f"run {run_id} has no result ({run.status.value}): {run.reason or 'running'}")
        return Response(run.result.model_dump_json(), media_type="application/json")

    @app.post("/runs/{run_id}/stop", dependencies=[Depends(require_token)])
    async def stop_run(run_id: str) -> dict[str, Any]:
        run = _find(store, run_id)
        stopped = manager.request_stop(run.namespace, run.name, run_id=run_id)
        return {"run": run_id, "stopping": bool(stopped)}

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

    return app


def _hook_kind(text: str) -> HookKind:
    try:
        return HookKind(text)
    except ValueError:
        valid = ", ".join(k.value for k in HookKind)
        raise HttpError(404, f"unknown hook kind {text!r}; valid: {valid} (POST /flagger/<kind>)") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes is larger than the limit ({limit} bytes, --max-body)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"body is larger than the limit ({limit} bytes, --max-body)")
    return bytes(body)


def _decode(body: bytes) -> FlaggerPayload:
    try:
        data = json.loads(body)
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


def _find(store: Store, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run is None:
        raise HttpError(404, f"no run {run_id!r}")
    return run


def _with_live(run: RunRecord, manager: RunManager) -> RunRecord:
    live = manager.live(run.id)
    return run.model_copy(update={"live": live}) if live is not None else run


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _answer(request: Request, answer: HookAnswer) -> Response:
    headers = {"X-Loadkit-Run": answer.run} if answer.run else {}
    if _wants_json(request):
        return JSONResponse(answer.model_dump(mode="json"), status_code=answer.status, headers=headers)
    return PlainTextResponse(answer.message + "\n", status_code=answer.status, headers=headers)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = _answer(request, HookAnswer(status=status, message=message))
    response.headers.update(headers or {})
    return response


def _install_error_handlers(app: FastAPI) -> None:
    handlers: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {}

    async def on_http(request: Request, exc: HttpError) -> Response:
        return _error(request, exc.status, exc.message, exc.headers)

    async def on_payload(request: Request, exc: PayloadError) -> Response:
        return _error(request, 400, f"bad payload: {exc.message}")

    async def on_safety(request: Request, exc: SafetyError) -> Response:
        return _error(request, 403, f"refused: {exc}".replace("\n", " "))

    async def on_busy(request: Request, exc: Busy) -> Response:
        return _error(request, 429, exc.message, {"Retry-After": str(exc.retry_after_s)})

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(request, 400, f"bad request: {fields}")

    async def on_loadkit(request: Request, exc: LoadkitError) -> Response:
        return _error(request, 503, f"temporary failure, retry: {exc.message}")

    handlers.update({HttpError: on_http, PayloadError: on_payload, SafetyError: on_safety, Busy: on_busy,
                     RequestValidationError: on_validation, LoadkitError: on_loadkit})
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
