"""/ui: the web pages of `loadkit serve`, server-rendered from the store (docs/ui.md).

Read-only for everyone: canaries and their analyses, runs with verdict, score and checksum, a run
page that follows a running run (the HTML report's uPlot charts, fed by `/ui/runs/{id}/live.json`
every 2 s), a finished run's HTML report (`/ui/runs/{id}/report.html`), and the history of runs,
chaos runs and game days with the score trend. The charts' assets are served from /ui/assets/ (no
CDN). Actions (approve, halt, open a rollback, stop a
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
from loadkit.store import History, HistoryKind, HistoryQuery
from loadkit.webhook import _ui_pages as pages
from loadkit.webhook._ui_html import csp, json_script, page
from loadkit.webhook.gates import Gates, check_hook
from loadkit.webhook.models import DNS_LABEL, GateRequest, GateState, RunRecord
from loadkit.webhook.runs import MAX_LIVE_POINTS, RunManager
from loadkit.webhook.settings import ServeSettings
from loadkit.webhook.store import Store
from loadkit.webhook.ui_charts import ChartViews, Spec

COOKIE = "loadkit_ui"
POLL_MS = 2000
MAX_FORM = 4096
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The report is a document of its own, sandboxed: its inline scripts draw the charts, and they can reach
# nothing (no request, no cookie, no /ui action: the sandbox gives the page an opaque origin).
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
              "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


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
                 views: ChartViews) -> None:
        self.settings, self.store, self.manager, self.gates, self.views = settings, store, manager, gates, views
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
        """A /ui page; one with a `script` loads the charts' assets before it."""
        nonce = secrets.token_urlsafe(16)
        text = page(title, body, nonce=nonce, admin=self.is_admin(request),
                    token_configured=self.settings.token is not None, script=script,
                    assets=self.views.assets if script else ())
        return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": csp(nonce),
                                                               "Cache-Control": "no-store",
                                                               "X-Content-Type-Options": "nosniff"})

    def not_found(self, request: Request, message: str) -> HTMLResponse:
        return self.html(request, "not found", pages.not_found(message), status=404)

    def run_specs(self, run: RunRecord, after: float | None = None) -> tuple[list[Spec], int, bool]:
        """The one place a run's charts come from: the live timeline while it runs (the charts its result
        will have; `after`: only its points after that time), else its result's (the report's). With the
        number of load windows the run has, and whether the specs are whole (not only the newer points)."""
        progress = self.manager.progress(run.id)
        if progress is not None:
            specs = self.views.live_specs(progress.started_at, progress.timeline, progress.thresholds, run.profile,
                                          after=after, stages=progress.stages)
            return specs, len(progress.timeline), after is None
        if run.result is not None:
            return self.views.result_specs(run.result), len(run.result.timeline), True
        return [], 0, True

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
        specs, _, _ = ui.run_specs(run)
        body = pages.run(run, json_script("charts-data", specs), admin=ui.is_admin(request))
        return ui.html(request, f"run {run.id}", body, script=pages.RUN_SCRIPT.replace("POLL_MS", str(POLL_MS)))

    @router.get("/runs/{run_id}/report.html", response_class=HTMLResponse)
    async def run_report(request: Request, run_id: str) -> Response:
        run = ui.store.get_run(run_id)
        if run is None:
            return ui.not_found(request, f"no run {run_id[:64]!r}")
        if not run.finished:  # a report of half a run would read as a result: the live page follows it
            return RedirectResponse(f"/ui/runs/{run.id}", status_code=303)
        if run.result is None:
            return ui.not_found(request, f"run {run.id} ended {run.status.value} without a load result, so it has "
                                         f"no report: {run.reason or 'no reason recorded'}")
        return HTMLResponse(ui.views.report_html(run.result), headers={"Content-Security-Policy": REPORT_CSP,
                                                                       "Cache-Control": "no-store",
                                                                       "X-Content-Type-Options": "nosniff"})

    @router.get("/assets/{name}")
    async def chart_asset(name: str) -> Response:
        kind = ASSET_TYPES.get(name[name.rfind("."):]) if "." in name else None
        if name not in ui.views.assets or kind is None:
            return JSONResponse({"error": f"no asset {name[:64]!r}; valid: {', '.join(ui.views.assets)}"},
                                status_code=404)
        return Response(ui.views.asset(name), media_type=kind,
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/runs/{run_id}/live.json")
    async def run_live(run_id: str, after: float | None = None) -> Response:
        """The figures and charts of a run; `?after=<a chart's last x>`: only the newer points while it
        runs (`complete: false`; the page appends them, at most `max_points`)."""
        run = ui.store.get_run(run_id)
        if run is None:
            return JSONResponse({"error": f"no run {run_id[:64]!r}"}, status_code=404)
        run = ui.with_live(run)
        specs, points, complete = ui.run_specs(run, after)
        return JSONResponse({"run": run.id, "status": run.status.value, "finished": run.finished,
                             "points": points, "fields": pages.live_fields(run), "charts": specs,
                             "complete": complete, "max_points": MAX_LIVE_POINTS},
                            headers={"Cache-Control": "no-store"})

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
        trends = json_script("trend-data", ui.views.trend_specs(pages.trend_series(entries)))
        return ui.html(request, "history", pages.history(entries, chosen, trends), script=pages.TREND_SCRIPT)

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
