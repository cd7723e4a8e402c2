"""/ui: the web pages of `loadkit serve`, server-rendered from the store (docs/ui.md).

Read-only for everyone: canaries and their analyses, runs with verdict, score and checksum, a run
page that follows a running run (it polls `/ui/runs/{id}/live.json` every 2 s), and the history of
runs, chaos runs and game days with the score trend. Actions (approve, halt, open a rollback, stop a
run) need the admin token: `POST /ui/login` with it sets a session cookie (an HMAC of the token,
SameSite=Strict, HttpOnly); without it no button is shown and the action routes answer 401 (403
when the server has no token).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from loadkit.errors import AuthError, NotFoundError, PayloadError
from loadkit.models.results import TimelinePoint
from loadkit.models.specs import Threshold
from loadkit.store import History, HistoryKind, HistoryQuery
from loadkit.webhook import _ui_pages as pages
from loadkit.webhook._ui_html import csp, page
from loadkit.webhook.gates import Gates, check_hook
from loadkit.webhook.models import DNS_LABEL, GateRequest, GateState, RunRecord
from loadkit.webhook.runs import RunManager
from loadkit.webhook.settings import ServeSettings
from loadkit.webhook.store import Store
from loadkit.webhook.ui_charts import ChartRenderer, render_run_charts

COOKIE = "loadkit_ui"
POLL_MS = 2000
MAX_FORM = 4096


def ui_url(base: str | None, *, run: str | None = None, analysis: str | None = None,
           canary: tuple[str, str] | None = None) -> str:
    """Where a hook answer's reader lands: the run, else the analysis, else the canary, else /ui."""
    root = (base or "").rstrip("/") + "/ui"
    if run:
        return f"{root}/runs/{run}"
    if analysis:
        return f"{root}/analyses/{analysis}"
    if canary:
        return f"{root}/canaries/{canary[0]}/{canary[1]}"
    return root


class UI:
    """The routes of /ui, over the webhook's store, run manager and gates."""

    def __init__(self, settings: ServeSettings, store: Store, manager: RunManager, gates: Gates,
                 charts: ChartRenderer = render_run_charts) -> None:
        self.settings, self.store, self.manager, self.gates, self.charts = settings, store, manager, gates, charts
        self._history: History | None = None

    @property
    def history(self) -> History:
        if self._history is None:  # the same file; its own connection (the CLI writes history rows)
            self._history = History(self.store.path)
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()

    # -- auth ---------------------------------------------------------------------------------------

    def _session(self) -> str | None:
        token = self.settings.token
        return hmac.new(token.encode(), b"loadkit-ui-session", hashlib.sha256).hexdigest() if token else None

    def is_admin(self, request: Request) -> bool:
        """Signed in (the session cookie) or sending the token as `Authorization: Bearer`."""
        token, session = self.settings.token, self._session()
        if token is None or session is None:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session.encode())

    def require_admin(self, request: Request) -> None:
        if self.settings.token is None:
            raise AuthError("actions from the UI need the admin token, and none is configured "
                            "(start loadkit serve with --token-file)", configured=False)
        if not self.is_admin(request):
            raise AuthError("sign in with the admin token first (/ui/login), or send Authorization: Bearer <token>")
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise AuthError(f"cross-origin action refused (Origin {origin[:100]!r})")

    # -- rendering ----------------------------------------------------------------------------------

    def html(self, request: Request, title: str, body: str, status: int = 200, script: str = "") -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        text = page(title, body, nonce=nonce, admin=self.is_admin(request),
                    token_configured=self.settings.token is not None, script=script)
        return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": csp(nonce),
                                                               "Cache-Control": "no-store",
                                                               "X-Content-Type-Options": "nosniff"})

    def not_found(self, request: Request, message: str) -> HTMLResponse:
        return self.html(request, "not found", pages.not_found(message), status=404)

    def run_charts(self, run: RunRecord) -> str:
        """The one place a run's charts are drawn: the live timeline while it runs, else its result's."""
        timeline, thresholds = self.run_series(run)
        return self.charts(timeline, thresholds)

    def run_series(self, run: RunRecord) -> tuple[list[TimelinePoint], list[Threshold]]:
        progress = self.manager.progress(run.id)
        if progress is not None:
            return progress
        if run.result is not None:
            return list(run.result.timeline), list(run.result.thresholds)
        return [], []

    def with_live(self, run: RunRecord) -> RunRecord:
        live = self.manager.live(run.id)
        return run.model_copy(update={"live": live}) if live is not None else run


def install_ui(app: Any, ui: UI) -> None:
    """Add the /ui routes to the FastAPI app."""
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        analyses = ui.store.list_analyses(None, None, 500)
        runs = [ui.with_live(r) for r in ui.store.list_runs(None, None, 100)]
        return ui.html(request, "canaries and runs", pages.overview(analyses, runs))

    @router.get("/canaries/{namespace}/{name}", response_class=HTMLResponse)
    async def canary(request: Request, namespace: str, name: str) -> Response:
        analyses = ui.store.list_analyses(namespace, name, 200)
        runs = [ui.with_live(r) for r in ui.store.list_runs(namespace, name, 200)]
        if not analyses and not runs:
            return ui.not_found(request, f"no canary {namespace[:64]}/{name[:64]}: loadkit has no analysis or run "
                                         "of it (it appears once Flagger calls a hook)")
        gates = ui.gates.status(namespace, name)
        events = ui.store.list_events(namespace, name, 50)
        return ui.html(request, f"{namespace}/{name}", pages.canary(namespace, name, analyses, runs, gates, events,
                                                                    admin=ui.is_admin(request)))

    @router.get("/analyses/{analysis_id}", response_class=HTMLResponse)
    async def analysis(request: Request, analysis_id: str) -> Response:
        found = ui.store.get_analysis(analysis_id)
        if found is None:
            return ui.not_found(request, f"no analysis {analysis_id[:64]!r}")
        runs = [ui.with_live(r) for r in ui.store.runs_of(found.id)]
        gates = ui.store.gates(found.namespace, found.name, (found.id,))
        return ui.html(request, f"analysis {found.id}", pages.analysis(found, runs, gates))

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> Response:
        run = ui.store.get_run(run_id)
        if run is None:
            return ui.not_found(request, f"no run {run_id[:64]!r}")
        run = ui.with_live(run)
        body = pages.run(run, ui.run_charts(run), admin=ui.is_admin(request))
        script = pages.LIVE_SCRIPT.replace("POLL_MS", str(POLL_MS)) if not run.finished else ""
        return ui.html(request, f"run {run.id}", body, script=script)

    @router.get("/runs/{run_id}/live.json")
    async def run_live(run_id: str) -> Response:
        run = ui.store.get_run(run_id)
        if run is None:
            return JSONResponse({"error": f"no run {run_id[:64]!r}"}, status_code=404)
        run = ui.with_live(run)
        timeline, _ = ui.run_series(run)
        return JSONResponse({"run": run.id, "status": run.status.value, "finished": run.finished,
                             "points": len(timeline), "fields": pages.live_fields(run),
                             "charts_html": ui.run_charts(run)}, headers={"Cache-Control": "no-store"})

    @router.get("/history", response_class=HTMLResponse)
    async def history(request: Request, kind: str | None = None) -> Response:
        chosen = None
        if kind:
            try:
                chosen = HistoryKind(kind)
            except ValueError:
                valid = ", ".join(k.value for k in HistoryKind)
                return ui.not_found(request, f"no history kind {kind[:32]!r}; valid: {valid}")
        entries = ui.history.entries(HistoryQuery(kind=chosen, limit=500))
        return ui.html(request, "history", pages.history(entries, chosen))

    _install_auth_routes(router, ui)
    _install_actions(router, ui)
    app.include_router(router)


def _install_auth_routes(router: APIRouter, ui: UI) -> None:
    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return ui.html(request, "sign in", pages.login(ui.settings.token is not None))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        token = ui.settings.token
        if token is None:
            raise AuthError("no admin token is configured (start loadkit serve with --token-file)", configured=False)
        if not hmac.compare_digest(form.get("token", "").strip().encode(), token.encode()):
            return ui.html(request, "sign in", pages.login(True, "wrong token"), status=401)
        response = RedirectResponse("/ui", status_code=303)
        secure = (ui.settings.public_url or "").startswith("https://")
        response.set_cookie(COOKIE, ui._session() or "", httponly=True, samesite="strict", secure=secure,
                            path="/ui", max_age=12 * 3600)
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/ui", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response


def _install_actions(router: APIRouter, ui: UI) -> None:
    @router.post("/gates/{namespace}/{name}/{action}")
    async def gate_action(request: Request, namespace: str, name: str, action: str) -> Response:
        ui.require_admin(request)
        for what, value in (("namespace", namespace), ("name", name)):
            if not _is_dns_label(value):
                raise PayloadError(f"{what} {value[:64]!r} is not a Kubernetes name (a DNS label)")
        form = await _form(request)
        try:
            body = GateRequest(hook=form.get("hook") or None, reason=form.get("reason", ""))
        except ValidationError as exc:
            raise PayloadError("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in exc.errors())) from None
        handlers: dict[str, Callable[[], object]] = {
            "approve": lambda: ui.gates.decide(namespace, name, GateState.APPROVED, body),
            "halt": lambda: ui.gates.decide(namespace, name, GateState.HALTED, body),
            "rollback": lambda: ui.gates.open_rollback(namespace, name, body.reason),
            "close-rollback": lambda: ui.gates.close_rollback(namespace, name),
        }
        if action not in handlers:
            raise NotFoundError(f"unknown gate action {action[:32]!r}; valid: {', '.join(handlers)}")
        check_hook(body.hook)
        handlers[action]()
        return RedirectResponse(f"/ui/canaries/{namespace}/{name}", status_code=303)

    @router.post("/runs/{run_id}/stop")
    async def stop(request: Request, run_id: str) -> Response:
        ui.require_admin(request)
        run = ui.store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id[:64]!r}")
        ui.manager.request_stop(run.namespace, run.name, run_id=run.id)
        return RedirectResponse(f"/ui/runs/{run.id}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, first value per field, bounded."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise PayloadError(f"form larger than {MAX_FORM} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"bad form: {exc}") from None
    return {k: v[0] for k, v in fields.items()}


def _is_dns_label(value: str) -> bool:
    return re.fullmatch(DNS_LABEL, value) is not None
