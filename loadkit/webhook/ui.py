"""/ui: the web pages of `loadkit serve`, server-rendered from the store (docs/ui.md).

Read-only for everyone: canaries and their analyses, runs with verdict, score and checksum, a run
page that follows a running run (the HTML report's uPlot charts, fed by `/ui/runs/{id}/live.json`
every 2 s), a finished run's HTML report (`/ui/runs/{id}/report.html`), and the history of runs,
chaos runs and game days with the score trend. The charts' assets are served from /ui/assets/ (no
CDN). Actions (approve, halt, open a rollback, stop a
run) need the admin token: `POST /ui/login` with it starts a session (webhook/sessions.py: a random,
signed, revocable id that expires after 12 h; HttpOnly, SameSite=Strict). An action of a session
must come from this server's own page: its `Origin` (never `null`, never missing) is this host, and
its form carries the session's CSRF token. Without a session no button is shown and the action
routes answer 401 (403 when the server has no token).
"""

from __future__ import annotations

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
from loadkit.webhook.sessions import SESSION_TTL_S, Session, Sessions
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
        self.sessions = Sessions(settings.token)

    @property
    def history(self) -> History:
        if self._history is None:  # the same file; its own connection (the CLI writes history rows)
            self._history = History(self.store.path)
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()

    # -- auth ---------------------------------------------------------------------------------------

    def _bearer(self, request: Request) -> bool:
        token = self.settings.token
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return token is not None and scheme.lower() == "bearer" and \
            hmac.compare_digest(given.strip().encode(), token.encode())

    def session(self, request: Request) -> Session | None:
        """The live session of the request's cookie (None: none, forged, expired or signed out)."""
        return self.sessions.get(request.cookies.get(COOKIE, ""))

    def is_admin(self, request: Request) -> bool:
        """Signed in (a live session) or sending the token as `Authorization: Bearer`."""
        return self._bearer(request) or self.session(request) is not None

    def csrf(self, request: Request) -> str | None:
        """What the page's forms carry as `csrf`: the session's token; "" for a Bearer caller (it needs
        none: a browser never sends that header by itself); None when not an admin (no form)."""
        session = self.session(request)
        if session is not None:
            return session.csrf
        return "" if self._bearer(request) else None

    def require_admin(self, request: Request, form: dict[str, str]) -> None:
        """An action: by Bearer token, or by a session from this server's own page (same Origin, the
        session's CSRF token in the form). A cookie alone never acts: a browser sends it anywhere."""
        if self.settings.token is None:
            raise AuthError("actions from the UI need the admin token, and none is configured "
                            "(start loadkit serve with --token-file)", configured=False)
        if self._bearer(request):
            return
        session = self.session(request)
        if session is None:
            raise AuthError("sign in with the admin token first (/ui/login), or send Authorization: Bearer <token>")
        same_origin(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            raise AuthError("the form's CSRF token is missing or not this session's: reload the page and try again")

    # -- rendering ----------------------------------------------------------------------------------

    def html(self, request: Request, title: str, body: str, status: int = 200, script: str = "") -> HTMLResponse:
        """A /ui page; one with a `script` loads the charts' assets before it."""
        nonce = secrets.token_urlsafe(16)
        text = page(title, body, nonce=nonce, csrf=self.csrf(request),
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
                                                                    csrf=ui.csrf(request)))

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
        body = pages.run(run, json_script("charts-data", specs), csrf=ui.csrf(request))
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


def same_origin(request: Request) -> None:
    """Refuse a browser request that did not come from this server's pages: `Origin` must be present,
    not `null` (a redirect or a sandboxed frame sends that) and this host; `Sec-Fetch-Site`, when the
    browser sends it, must be `same-origin`."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise AuthError(f"cross-origin action refused (Sec-Fetch-Site {fetch_site[:40]!r}): use this server's page")
    origin = request.headers.get("origin")
    if not origin or origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise AuthError(f"cross-origin action refused (Origin {(origin or 'missing')[:100]!r}): "
                        "send it from this server's page, or with Authorization: Bearer <token>")


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
        if request.headers.get("origin") is not None or request.headers.get("sec-fetch-site") is not None:
            same_origin(request)  # a browser's sign-in comes from this server's form
        if not hmac.compare_digest(form.get("token", "").strip().encode(), token.encode()):
            return ui.html(request, "sign in", pages.login(True, "wrong token"), status=401)
        response = RedirectResponse("/ui", status_code=303)
        secure = (ui.settings.public_url or "").startswith("https://")
        cookie, _ = ui.sessions.start()
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=secure, path="/ui",
                            max_age=SESSION_TTL_S)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        ui.sessions.end(request.cookies.get(COOKIE, ""))  # revoked here: the cookie no longer signs in anywhere
        response = RedirectResponse("/ui", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response


def _install_actions(router: APIRouter, ui: UI) -> None:
    @router.post("/gates/{namespace}/{name}/{action}")
    async def gate_action(request: Request, namespace: str, name: str, action: str) -> Response:
        form = await _form(request)
        ui.require_admin(request, form)
        for what, value in (("namespace", namespace), ("name", name)):
            if not _is_dns_label(value):
                raise PayloadError(f"{what} {value[:64]!r} is not a Kubernetes name (a DNS label)")
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
        ui.require_admin(request, await _form(request))
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
