"""The bodies of the /ui pages, from the store's records. Pure: records in, escaped HTML out."""

from __future__ import annotations

from collections.abc import Sequence

from loadkit.store import HistoryEntry, HistoryKind, judged
from loadkit.webhook._ui_html import (
    DASH,
    MUTED_DASH_HTML,
    badge,
    csrf_field,
    e,
    facts,
    href,
    link,
    number,
    table,
    when,
)
from loadkit.webhook.models import (
    GATE_HOOKS,
    AnalysisRecord,
    EventRecord,
    GateRecord,
    GateStatus,
    RunRecord,
    RunStatus,
)

# Draws the run's charts (loadkit's uPlot charts, the report's) once from the page's data; while it
# runs, polls its JSON every POLL_MS for the points after the last one drawn and appends them to the
# same charts (setData: nothing is rebuilt; the whole series again only when a new one appears), and
# reloads once when it ends (the result's charts, the checks and the report link show).
RUN_SCRIPT = """
(function(){
  const box = document.getElementById('live'), root = document.getElementById('charts');
  let whole = true;  // ask for every point (no chart yet, or a chart's series changed)
  function show(specs, complete, max){
    if (!specs.some(s => s.x.length)) return;  // no load window (yet, or since the last poll)
    const empty = document.getElementById('charts-empty');
    if (empty) empty.remove();
    if (!root.dataset.charts) loadkitCharts.mount(root, specs);
    else if (complete) loadkitCharts.update(root, specs);
    else if (!loadkitCharts.append(root, specs, max)) whole = true;
  }
  function lastX(){
    const u = loadkitCharts.charts.find(c => root.contains(c.root)), x = u && u.data[0];
    return x && x.length ? x[x.length - 1] : null;
  }
  show(JSON.parse(document.getElementById('charts-data').textContent), true);
  whole = !root.dataset.charts;
  if (box.dataset.finished === 'true') return;
  let updates = 0;
  async function tick(){
    try {
      const after = whole ? null : lastX();
      const r = await fetch(box.dataset.live + (after === null ? '' : '?after=' + after), {cache: 'no-store'});
      if (r.ok) {
        const d = await r.json();
        for (const [k, v] of Object.entries(d.fields)) {
          document.querySelectorAll('[data-field="' + k + '"]').forEach(el => { el.textContent = v; });
        }
        if (d.finished) { window.location.reload(); return; }
        whole = false;
        show(d.charts, d.complete, d.max_points);
        updates += 1;
        box.dataset.updates = String(updates);
        box.dataset.points = String(d.points);
      }
    } catch (err) { box.dataset.lastError = String(err); }
    setTimeout(tick, POLL_MS);
  }
  setTimeout(tick, POLL_MS);
})();
"""

TREND_SCRIPT = """
(function(){
  const specs = JSON.parse(document.getElementById('trend-data').textContent);
  if (specs.length) loadkitCharts.mount(document.getElementById('trends'), specs);
})();
"""


def _status(run: RunRecord) -> str:
    return badge(run.status.value)


def _verdict(run: RunRecord) -> str:
    if run.verdict is not None:
        return badge(run.verdict.value)
    if run.status is RunStatus.RUNNING and run.live is not None:
        return badge(run.live.verdict.value) + ' <span class="muted">so far</span>'
    return badge("not-judged" if run.finished else None)


def run_rows(runs: Sequence[RunRecord], with_canary: bool = True) -> list[list[str]]:
    rows = []
    for r in runs:
        row = [link(r.id, "runs", r.id)]
        if with_canary:
            row.append(link(f"{r.namespace}/{r.name}", "canaries", r.namespace, r.name))
        row += [link(r.analysis, "analyses", r.analysis) if r.analysis else DASH, e(r.hook.value), e(r.profile),
                _status(r), _verdict(r), number(r.score), f"<code>{e(r.checksum)}</code>", when(r.created_at)]
        rows.append(row)
    return rows


RUN_HEADERS = ["run", "canary", "analysis", "hook", "profile", "status", "verdict", "score", "checksum", "started"]


def analysis_rows(analyses: Sequence[AnalysisRecord], runs: Sequence[RunRecord]) -> list[list[str]]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.analysis] = counts.get(r.analysis, 0) + 1
    return [[link(a.id, "analyses", a.id), link(f"{a.namespace}/{a.name}", "canaries", a.namespace, a.name),
             f"<code>{e(a.checksum)}</code>", badge(a.status.value), badge(a.outcome.value if a.outcome else None),
             str(counts.get(a.id, 0)), when(a.opened_at), when(a.closed_at), e(a.reason)] for a in analyses]


ANALYSIS_HEADERS = ["analysis", "canary", "checksum", "status", "outcome", "runs", "opened", "closed", "reason"]


def overview(analyses: Sequence[AnalysisRecord], runs: Sequence[RunRecord]) -> str:
    latest: dict[tuple[str, str], AnalysisRecord] = {}
    for a in analyses:
        latest.setdefault((a.namespace, a.name), a)
    last_run: dict[str, RunRecord] = {}  # by analysis: a row shows its own analysis' run, never a revision before
    for r in runs:
        last_run.setdefault(r.analysis, r)
    canaries = []
    for (namespace, name), a in sorted(latest.items()):
        last = last_run.get(a.id)
        canaries.append([link(f"{namespace}/{name}", "canaries", namespace, name), link(a.id, "analyses", a.id),
                         f"<code>{e(a.checksum)}</code>", badge(a.status.value),
                         badge(a.outcome.value if a.outcome else None),
                         link(last.id, "runs", last.id) if last else DASH,
                         _verdict(last) if last else DASH, number(last.score) if last else DASH])
    return ("<h1>Canaries and runs</h1><h2>Canaries (latest analysis each)</h2>"
            + table(["canary", "analysis", "checksum", "status", "outcome", "latest run", "verdict", "score"],
                    canaries, "No canary yet: canaries appear when Flagger calls a hook.", frozenset({7}), "canaries")
            + "<h2>Recent runs</h2>"
            + table(RUN_HEADERS, run_rows(runs), "No run yet.", frozenset({7}), "runs"))


def _gate_forms(namespace: str, name: str, gates: GateStatus, csrf: str) -> str:
    def form(action: str, label: str, hook: str = "") -> str:
        return (f'<form class="inline" method="post" action="{href("gates", namespace, name, action)}">'
                f'{csrf_field(csrf)}<input type="hidden" name="hook" value="{e(hook)}">'
                f'<input name="reason" placeholder="reason" maxlength="500" aria-label="reason">'
                f'<button type="submit" data-action="{e(action)}" data-hook="{e(hook)}">{e(label)}</button></form>')

    buttons = [form("approve", "approve all gates"), form("halt", "halt all gates")]
    buttons += [form("approve", f"approve {h}", h) for h in GATE_HOOKS]
    rollback_open = any(g.hook == "rollback" for g in gates.gates)
    buttons.append(form("close-rollback", "close manual rollback") if rollback_open
                   else form("rollback", "open manual rollback"))
    return '<div class="actions">' + "".join(buttons) + "</div>"


def _gate_rows(gates: Sequence[GateRecord]) -> list[list[str]]:
    return [[e(g.hook), badge(g.state.value), e(g.analysis or "next rollout"), e(g.reason), when(g.updated_at)]
            for g in gates]


def canary(namespace: str, name: str, analyses: Sequence[AnalysisRecord], runs: Sequence[RunRecord],
           gates: GateStatus, events: Sequence[EventRecord], *, csrf: str | None) -> str:
    """`csrf`: the admin's session token for the action forms; None: read-only, no form."""
    events_rows = [[when(ev.received_at), e(ev.phase), e(ev.event_type), e(ev.message),
                    f"<code>{e(ev.checksum)}</code>"] for ev in events]
    return (f"<h1>Canary {e(namespace)}/{e(name)}</h1><h2>Gates</h2>"
            + (f'<p class="muted">{e(gates.message)}</p>' if gates.message else "")
            + table(["hook", "state", "analysis", "reason", "updated"], _gate_rows(gates.gates),
                    "No manual gate set: the load decides.", name="gates")
            + (_gate_forms(namespace, name, gates, csrf) if csrf is not None else "")
            + "<h2>Analyses</h2>" + table(ANALYSIS_HEADERS, analysis_rows(analyses, runs), "No analysis.",
                                          frozenset({5}), "analyses")
            + "<h2>Runs</h2>" + table(RUN_HEADERS, run_rows(runs), "No run.", frozenset({7}), "runs")
            + "<h2>Flagger events</h2>" + table(["received", "phase", "type", "message", "checksum"], events_rows,
                                                "No event hook received.", name="events"))


def analysis(found: AnalysisRecord, runs: Sequence[RunRecord], gates: Sequence[GateRecord]) -> str:
    return (f"<h1>Analysis {e(found.id)}</h1>"
            + facts([("canary", link(f"{found.namespace}/{found.name}", "canaries", found.namespace, found.name)),
                     ("checksum", f"<code>{e(found.checksum)}</code>"), ("status", badge(found.status.value)),
                     ("outcome", badge(found.outcome.value if found.outcome else None)),
                     ("opened", f"{when(found.opened_at)} by {e(found.opened_by)}"), ("closed", when(found.closed_at)),
                     ("reason", e(found.reason) or DASH)])
            + "<h2>Runs</h2>" + table(RUN_HEADERS, run_rows(runs), "No run in this analysis.", frozenset({7}), "runs")
            + "<h2>Gates</h2>" + table(["hook", "state", "analysis", "reason", "updated"], _gate_rows(gates),
                                       "No manual gate.", name="gates"))


def live_fields(run: RunRecord) -> dict[str, str]:
    """The figures of the run page that change while it runs (by data-field name)."""
    snap = run.live.snapshot if run.live else None
    cumulative = snap.cumulative if snap else (run.result.stats if run.result else None)

    def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
        return DASH if value is None else f"{value:.{digits}f}{(' ' + unit) if unit else ''}"

    verdict = run.verdict.value if run.verdict else (run.live.verdict.value + " so far" if run.live and not
                                                     run.finished else "not judged" if run.finished else DASH)
    reason = run.live.reason if run.live and not run.finished else run.reason
    return {
        "status": run.status.value, "verdict": verdict, "score": fmt(run.score), "reason": reason or DASH,
        "elapsed": fmt(snap.elapsed_s if snap else (cumulative.duration_s if cumulative else None), 0, "s"),
        "users": str(snap.users) if snap else DASH,
        "requests": str(cumulative.requests) if cumulative else DASH,
        "rps": fmt(snap.window.rps if snap else (cumulative.rps if cumulative else None), 1, "req/s"),
        "p99": fmt(snap.window.p99_ms if snap else (cumulative.p99_ms if cumulative else None), 0, "ms"),
        "errors": fmt(cumulative.error_rate_pct if cumulative else None, 2, "%"),
    }


def run(r: RunRecord, charts_data: str, *, csrf: str | None) -> str:
    """The run page; `charts_data` is its charts' JSON element (RUN_SCRIPT draws them); `csrf` as for
    `canary`."""
    f = live_fields(r)

    def field(name: str) -> str:
        return f'<span data-field="{name}">{e(f[name])}</span>'

    stop = ""
    if csrf is not None and not r.finished:
        stop = (f'<form class="inline actions" method="post" action="{href("runs", r.id, "stop")}">'
                f'{csrf_field(csrf)}<button type="submit" data-action="stop">stop this run</button></form>')
    checks = ""
    if r.result is not None:
        rows = [[e(c.name), e(c.metric), badge(c.status.value), e("" if c.observed is None else f"{c.observed:g}"),
                 e(c.unit), e("" if c.min is None else f"{c.min:g}"), e("" if c.max is None else f"{c.max:g}"),
                 e(c.reason), f"<code>{e(c.query)}</code>" if c.query else ""] for c in r.result.checks]
        checks = "<h2>Checks</h2>" + table(["check", "metric", "status", "observed", "unit", "min", "max", "reason",
                                            "PromQL"], rows, "No check.", name="checks")
    finished = "true" if r.finished else "false"
    empty = "No load data: the run ended without a result." if r.finished else \
        "No samples yet: the charts appear with the first second of load."
    return (f'<h1>Run {e(r.id)}</h1><div id="live" data-live="{href("runs", r.id, "live.json")}" data-updates="0" '
            f'data-finished="{finished}">'
            + facts([("canary", link(f"{r.namespace}/{r.name}", "canaries", r.namespace, r.name)),
                     ("analysis", link(r.analysis, "analyses", r.analysis) if r.analysis else DASH),
                     ("hook / profile", f"{e(r.hook.value)} / {e(r.profile)}"),
                     ("target", f"<code>{e(r.target)}</code>"),
                     ("checksum", f"<code>{e(r.checksum)}</code>"), ("thresholds", e(r.thresholds)),
                     ("status", field("status")), ("verdict", field("verdict")), ("score", field("score")),
                     ("reason", field("reason")), ("started", when(r.created_at)), ("finished", when(r.finished_at))])
            + stop + "<h2>Now</h2>"
            + facts([("elapsed", field("elapsed")), ("users", field("users")), ("requests", field("requests")),
                     ("throughput (last second)", field("rps")), ("p99 (last second)", field("p99")),
                     ("error rate (whole run)", field("errors"))])
            + '</div>' + _report_link(r) + '<h2>Charts</h2><div class="lk-charts" id="charts">'
            + f'<p class="muted" id="charts-empty">{e(empty)}</p></div>{charts_data}' + checks
            + f'<p class="muted">JSON: <a href="/runs/{e(r.id)}">/runs/{e(r.id)}</a></p>')


def _report_link(r: RunRecord) -> str:
    if r.result is not None:
        return (f'<p><a href="{href("runs", r.id, "report.html")}" data-link="report">HTML report</a> '
                '<span class="muted">(self-contained, the page <code>loadkit run --report-dir</code> writes for this '
                'result: save it, print it)</span></p>')
    if r.finished:
        return '<p class="muted" data-link="no-report">No HTML report: the run ended without a load result.</p>'
    return '<p class="muted" data-link="report-later">The HTML report appears here when the run ends.</p>'


def trend_series(entries: Sequence[HistoryEntry]) -> list[tuple[str, list[tuple[float, float]]]]:
    """The score trends of loadkit/store's series (a game day's plan; a profile or experiment against one
    target), judged results only, oldest first; game days first, then chaos runs, then load runs."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for h in reversed(entries):  # oldest first
        if h.score is not None and judged(h.verdict, h.score):
            name = h.name if h.kind is HistoryKind.GAMEDAY or not h.target else f"{h.name} on {h.target}"
            series.setdefault((h.kind.value, name), []).append((h.started_at.timestamp(), h.score))
    order = [k.value for k in (HistoryKind.GAMEDAY, HistoryKind.CHAOS, HistoryKind.RUN)]
    return [(f"{kind} {name}", points) for (kind, name), points in
            sorted(series.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))]


def history(entries: Sequence[HistoryEntry], chosen: HistoryKind | None, trends_data: str) -> str:
    """The history page; `trends_data` is the trend charts' JSON element (TREND_SCRIPT draws them)."""
    tabs = " · ".join([f'<a href="{href("history")}">all</a>']
                      + [f'<a href="{href("history", kind=k.value)}">{e(k.value)}</a>' for k in HistoryKind])
    rows = [[e(h.kind.value), e(h.name), e(h.target), e(f"{h.namespace}/{h.canary}" if h.canary else ""),
             when(h.started_at), badge(h.verdict), number(h.score), _trend(h.trend), f"<code>{e(h.id)}</code>"]
            for h in entries]
    title = f"History: {chosen.value}" if chosen else "History"
    any_judged = any(judged(h.verdict, h.score) for h in entries)
    return (f"<h1>{e(title)}</h1><p>{tabs}</p><h2>Score trend (game days, chaos runs, load runs)</h2>"
            + ('<div class="lk-charts" id="trends"></div>' if any_judged else
               '<p class="muted" data-empty="trend">No judged result yet.</p><div id="trends"></div>')
            + trends_data + "<h2>Entries</h2>"
            + table(["kind", "name", "target", "canary", "started", "verdict", "score", "trend", "id"], rows,
                    "No history yet: `loadkit run`, `chaos run` and `gameday run` add rows.", frozenset({6, 7}),
                    "history"))


def _trend(value: float | None) -> str:
    if value is None:
        return MUTED_DASH_HTML
    return e(f"{value:+.1f}")


def login(configured: bool, error: str = "") -> str:
    if not configured:
        return ("<h1>Sign in</h1><p>This server has no admin token (start <code>loadkit serve</code> with "
                "<code>--token-file</code>), so the UI is read-only.</p>")
    return ("<h1>Sign in</h1>" + (f'<p class="banner fail">{e(error)}</p>' if error else "")
            + '<form method="post" action="/ui/login"><label>admin token <input type="password" name="token" '
              'autocomplete="current-password" required></label> <button type="submit">sign in</button></form>'
            + '<p class="muted">The token is the one of --token-file. The session is a cookie for /ui, 12 h.</p>')


def not_found(message: str) -> str:
    return f'<h1>Not found</h1><p data-error="404">{e(message)}</p><p><a href="/ui">back to the overview</a></p>'
