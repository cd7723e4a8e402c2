"""The HTML report: one self-contained page per result (run, comparison, chaos run, game day).

The page shell, the verdict banner and the tables every kind shares live here; the charts are
report/charts.py (uPlot, inlined); chaos.py and gameday.py add their own sections. No CDN, no
external font: the page opens on an air-gapped laptop and prints (print CSS, charts resized).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from loadkit.models.results import Check, CheckStatus, CompareVerdict, Comparison, ErrorStat, RunResult, Verdict
from loadkit.models.specs import Source
from loadkit.models.wire import Stats
from loadkit.report.charts import chart_specs, render_charts
from loadkit.report.text import threshold_text
from loadkit.units import fmt, with_unit

_STYLE = """
:root{--pass:#1a7f37;--fail:#cf222e;--warn:#9a6700;--error:#8250df;--line:#d0d7de}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;
max-width:1120px;padding:0 1em;color:#1f2328}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}
td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
.pass{color:var(--pass);font-weight:bold}.fail,.halted{color:var(--fail);font-weight:bold}
.skip,.interrupted,.marginal{color:var(--warn);font-weight:bold}.error{color:var(--error);font-weight:bold}
.warn{color:var(--warn)}.ok{color:var(--pass)}
.banner{border:2px solid;border-radius:6px;padding:.6em 1em;margin:1em 0}
.banner b{font-size:1.4em;margin-right:.6em}.banner.pass{background:#dafbe1}
.banner.fail,.banner.halted{background:#ffebe9}
.banner.interrupted,.banner.marginal{background:#fff8c5}.banner.error{background:#fbefff}
.dry-run{color:#0969da;font-weight:bold}.banner.dry-run{background:#ddf4ff}
.facts{color:#57606a}.lk-chart{margin:.6em 0 1.2em;break-inside:avoid}
.lk-chart .u-title{font-size:14px;font-weight:600}
.gantt{position:relative;height:auto;border:1px solid var(--line);margin:.5em 0 1em}
.gantt div.row{position:relative;height:22px;border-bottom:1px solid #eee}
.gantt span.bar{position:absolute;top:3px;height:16px;border-radius:3px;font-size:11px;color:#fff;
padding:0 4px;overflow:hidden;white-space:nowrap}
@media print{body{margin:0;max-width:none;font-size:11px}.banner{border-width:1px}
h2{break-after:avoid}table,.lk-chart,.banner{break-inside:avoid}.u-legend{font-size:10px}}
"""

VERDICT_CLASS = {"pass": "pass", "fail": "fail", "marginal": "marginal", "interrupted": "interrupted",
                 "error": "error", "halted": "halted", "not-judged": "interrupted", "dry-run": "dry-run"}
# Only a judged verdict has a score worth showing: an interrupted, errored, not judged or dry run's
# score is what the checks read on what was collected, and next to the verdict it would read as one.
SCORED_VERDICTS = frozenset({"pass", "fail", "marginal"})


def row(cells: Sequence[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def num(value: float | int | None, unit: str = "") -> str:
    """A number as the report shows it everywhere (units.fmt: at most 2 decimals), escaped."""
    if value is None:
        return "-"
    return escape(with_unit(value, unit) if unit else fmt(value))


def table(headers: Sequence[str], rows: Sequence[str]) -> str:
    return f"<table>{row(headers, 'th')}{''.join(rows)}</table>" if rows else "<p>none</p>"


def page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def banner(verdict: str, reason: str, score: float | None, what: str) -> str:
    """The verdict in its colour, and the score only when the verdict was judged (SCORED_VERDICTS)."""
    kind = VERDICT_CLASS.get(verdict, "error")
    shown = f" score {fmt(score)}" if score is not None and verdict in SCORED_VERDICTS else ""
    label = verdict.replace("-", " ").upper()
    return (f'<div class="banner {kind}" data-verdict="{escape(verdict)}"><b class="{kind}">{escape(label)}'
            f"</b>{escape(what)}{escape(shown)}<br>{escape(reason)}</div>")


_STATUS_CELLS = {CheckStatus.PASSED: '<span class="pass">PASS</span>',
                 CheckStatus.FAILED: '<span class="fail">FAIL</span>',
                 CheckStatus.SKIPPED: '<span class="skip">SKIP</span>'}


def status_cell(check: Check) -> str:
    """PASS in green, FAIL in red, SKIP in amber: a check that was not judged is never green."""
    return _STATUS_CELLS[check.status]


def checks_section(checks: Sequence[Check]) -> str:
    """The checks, and the Prometheus ones again with their PromQL."""
    rows = [row([escape(c.name), escape(with_unit(c.observed, c.unit)), escape(threshold_text(c)), status_cell(c),
                 str(c.samples), escape(c.reason)]) for c in checks]
    prom = [c for c in checks if c.source is Source.PROMETHEUS or c.query]
    prom_rows = [row([escape(c.name), f"<code>{escape(c.query or '-')}</code>", escape(with_unit(c.observed, c.unit)),
                      escape(threshold_text(c)), status_cell(c)]) for c in prom]
    text = "<h2>Checks</h2>" + table(["check", "observed", "threshold", "result", "samples", "reason"], rows)
    if prom:
        text += "<h2>Prometheus checks</h2>" + table(["check", "PromQL", "value", "threshold", "result"], prom_rows)
    return text


def stats_rows(label: str, s: Stats) -> str:
    return row([escape(label), num(s.requests), num(s.failures), num(s.rps), num(s.p50_ms, "ms"),
                num(s.p95_ms, "ms"), num(s.p99_ms, "ms"), num(s.max_ms, "ms"), num(s.success_rate_pct, "%"),
                num(s.error_rate_pct, "%"), escape(", ".join(f"{k}: {v}" for k, v in s.status_codes.items()) or "-")])


STATS_HEADERS = ["", "requests", "failures", "req/s", "p50", "p95", "p99", "max", "success", "errors",
                 "status codes"]


def errors_by_endpoint(errors: Sequence[ErrorStat]) -> str:
    """Failures grouped by the endpoint's name (Locust's `name`, so /item/1 and /item/2 are one row)."""
    groups: dict[str, list[ErrorStat]] = {}
    for e in errors:
        endpoint, sep, _ = e.message.partition(": ")
        groups.setdefault(endpoint if sep else "-", []).append(e)
    rows = []
    for endpoint, items in sorted(groups.items(), key=lambda g: -sum(e.count for e in g[1])):
        detail = "<br>".join(f"{e.count}x {escape(e.message.partition(': ')[2] or e.message)}" for e in items)
        rows.append(row([escape(endpoint), str(sum(e.count for e in items)), detail]))
    return "<h2>Errors by endpoint</h2>" + table(["endpoint", "count", "messages"], rows)


def warnings_html(warnings: Sequence[str]) -> str:
    return "".join(f'<p class="warn">warning: {escape(w)}</p>' for w in warnings)


def run_reason(result: RunResult) -> str:
    if result.reason:
        return result.reason
    if result.verdict is Verdict.INTERRUPTED:
        return "interrupted: the checks show what was collected, not judged"
    if not result.verdict.judged:
        return f"{result.verdict.value}: not judged (the checks show what was collected)"
    failed = [c for c in result.checks if c.status is CheckStatus.FAILED]
    if result.stopped_early is not None:
        others = [c for c in failed if c.name != result.stopped_early.check]
        return result.stopped_early.summary + "".join(f"; {c.name}: {c.reason}" for c in others)
    skipped = [c for c in result.checks if c.status is CheckStatus.SKIPPED]
    if failed:
        return f"{len(failed)} of {len(result.checks)} checks failed: " + "; ".join(
            f"{c.name}: {c.reason}" for c in failed)
    if skipped:
        return f"{len(skipped)} check(s) could not be judged: " + "; ".join(f"{c.name}: {c.reason}" for c in skipped)
    return f"all {len(result.checks)} checks passed"


def render_html(result: RunResult) -> str:
    """The report of `loadkit run` (and of a webhook run)."""
    endpoints = [row([escape(e.method), escape(e.name), str(e.requests), str(e.failures),
                      escape(with_unit(100.0 * e.failures / e.requests if e.requests else None, "%")),
                      num(e.p50_ms, "ms"), num(e.p95_ms, "ms"), num(e.p99_ms, "ms"), num(e.max_ms, "ms")])
                 for e in result.endpoints]
    body = f"""<h1>loadkit run: {escape(result.profile)}</h1>
<p class="facts">against <code>{escape(result.target)}</code> · {escape(result.locustfile)} ·
{escape(result.started_at.isoformat(timespec="seconds"))} to {escape(result.ended_at.isoformat(timespec="seconds"))}</p>
{banner(result.verdict.value, run_reason(result), result.score if result.stopped_early is None else None, "")}
{warnings_html(result.warnings)}
{checks_section(result.checks)}
<h2>Load over time</h2>{render_charts(result)}
<h2>Totals</h2>{table(STATS_HEADERS, [stats_rows("all", result.stats)])}
<h2>Endpoints</h2>{table(["method", "name", "requests", "failures", "failed", "p50", "p95", "p99", "max"], endpoints)}
{errors_by_endpoint(result.errors)}
<h2>Load generator</h2>{generator_html(result)}
"""
    return page(f"loadkit {result.profile}: {result.verdict.value}", body)


def generator_html(result: RunResult) -> str:
    g = result.generator
    # not "pass": green in the report is reserved for judged checks and verdicts
    state = '<span class="fail">saturated</span>: ' + escape(g.reason) if g.saturated else \
        '<span class="ok">healthy</span>'
    if g.workers_lost:
        state += f'; <span class="fail">{len(g.workers_lost)} of {g.workers} workers lost</span>: ' + escape(
            ", ".join(f"worker {w.index if w.index is not None else w.node} at {fmt(w.at_s or 0)}s"
                      for w in g.workers_lost))
    headers, cells = ["processes", "CPU max", "CPU avg", "event-loop lag max"], [
        str(g.processes), escape(with_unit(g.cpu_max_pct, "%")), escape(with_unit(g.cpu_avg_pct, "%")),
        escape(with_unit(g.loop_lag_max_ms, "ms"))]
    if g.workers:
        headers, cells = [*headers, "workers"], [*cells, str(g.workers)]
    health = table(headers, [row(cells)])
    if g.dropped_iterations is not None:  # an open-model run: was the schedule kept?
        health += table(["scheduled iterations", "started", "dropped", "cut off", "unaccounted", "start lag p99",
                         "start lag max"], [
            row([str(g.scheduled_iterations), str(g.iterations), str(g.dropped_iterations),
                 str(g.cut_off_iterations or 0), str(g.unaccounted_iterations or 0),
                 escape(with_unit(g.start_lag_p99_ms, "ms")), escape(with_unit(g.start_lag_max_ms, "ms"))])])
    return f"<p>{state}</p>" + health


_NO_SERIES = ("<p>This comparison read Prometheus: its result holds the judged samples' summary, not a series "
              "per window, so there is nothing to draw; the queries are below.</p>")


def render_comparison_html(c: Comparison) -> str:
    """The report of `loadkit compare`: canary and primary overlaid, each metric's judgement."""
    judged = c.verdict is not CompareVerdict.INTERRUPTED  # else each metric shows what it read so far, in amber
    metrics = [row([escape(m.name.value), f'<span class="{"pass" if m.passed else "fail"}">'
                    f"{escape(m.classification.value.upper())}</span>" if judged else
                    f'<span class="skip">SKIP</span> (so far {escape(m.classification.value)})',
                    "yes" if m.critical else "no",
                    escape(with_unit(m.baseline, m.unit)), escape(with_unit(m.canary, m.unit)),
                    escape(with_unit(m.effect_pct, "%")), escape(f"{m.p_value:.2g}" if m.p_value is not None else "-"),
                    f"{m.baseline_samples} / {m.canary_samples}", escape(m.reason)]) for m in c.metrics]
    sides = [stats_rows(label, s) for label, s in (("primary", c.baseline_stats), ("canary", c.canary_stats)) if s]
    queries = [row([escape(k), f"<code>{escape(v)}</code>"]) for k, v in c.queries.items()]
    body = f"""<h1>loadkit compare</h1>
<p class="facts">canary <code>{escape(c.canary)}</code> vs primary <code>{escape(c.baseline)}</code> ·
source {escape(c.source.value)} · max degradation {fmt(c.settings.max_degradation_pct)}% ·
max error increase {fmt(c.settings.max_error_increase_pct)} points · confidence {fmt(c.settings.confidence)}</p>
{banner(c.verdict.value, c.reason, c.score, "")}
{warnings_html(c.warnings)}
<h2>Metrics</h2>{table(["metric", "result", "critical", "primary", "canary", "effect", "p-value",
                        "samples (primary / canary)", "reason"], metrics)}
<h2>Canary vs primary</h2>{render_charts(c) if chart_specs(c) else _NO_SERIES}
<h2>Totals</h2>{table(STATS_HEADERS, sides)}
{"<h2>Prometheus queries</h2>" + table(["series", "PromQL"], queries) if queries else ""}
"""
    return page(f"loadkit compare: {c.verdict.value}", body)
