"""A self-contained HTML report of one run: verdict, checks, stats, endpoints and a timeline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from loadkit.models.results import Check, CheckStatus, RunResult, TimelinePoint
from loadkit.report.text import threshold_text
from loadkit.units import fmt

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}.warn{color:#9a6700}
.skip{color:#9a6700;font-weight:bold}.interrupted{color:#9a6700;font-weight:bold}.error{color:#8250df;font-weight:bold}
svg{border:1px solid #ddd;background:#fafafa}
"""


def _row(cells: Sequence[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _polyline(points: Sequence[TimelinePoint], values: Sequence[float], color: str,
              width: int, height: int) -> str:
    if not points or not values or max(values) <= 0:
        return ""
    t_max = max(p.t for p in points) or 1.0
    v_max = max(values)
    coords = " ".join(
        f"{p.t / t_max * (width - 20) + 10:.1f},{height - 10 - v / v_max * (height - 20):.1f}"
        for p, v in zip(points, values, strict=True)
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'


def _timeline_svg(points: Sequence[TimelinePoint]) -> str:
    width, height = 720, 200
    rps = _polyline(points, [p.rps for p in points], "#0969da", width, height)
    p99 = _polyline(points, [p.p99_ms or 0.0 for p in points], "#cf222e", width, height)
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="timeline">{rps}{p99}</svg>'
            '<p><span style="color:#0969da">rps</span> and <span style="color:#cf222e">p99 (ms)</span> '
            "per second, each scaled to its own maximum</p>")


_STATUS_CELLS = {CheckStatus.PASSED: '<span class="pass">PASS</span>',
                 CheckStatus.FAILED: '<span class="fail">FAIL</span>',
                 CheckStatus.SKIPPED: '<span class="skip">SKIP</span>'}


def status_cell(check: Check) -> str:
    """PASS in green, FAIL in red, SKIP in amber: a check that was not judged is never green."""
    return _STATUS_CELLS[check.status]


def render_html(result: RunResult) -> str:
    s = result.stats
    verdict = f'<span class="{result.verdict.value}">{result.verdict.value.upper()}</span>'
    checks = "".join(
        _row([escape(c.name), escape(fmt(c.observed)) if c.observed is not None else "-",
              escape(threshold_text(c)),
              status_cell(c), escape(c.reason)])
        for c in result.checks
    )
    stats = "".join(_row([escape(k), escape(str(v))]) for k, v in s.model_dump().items()
                    if not isinstance(v, dict))
    codes = ", ".join(f"{escape(k)}: {v}" for k, v in s.status_codes.items()) or "-"
    endpoints = "".join(_row([escape(e.method), escape(e.name), str(e.requests), str(e.failures)])
                        for e in result.endpoints)
    warnings = "".join(f'<p class="warn">warning: {escape(w)}</p>' for w in result.warnings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadkit {escape(result.profile)}: {result.verdict.value}</title>
<style>{_STYLE}</style></head><body>
<h1>loadkit: {verdict} <small>score {fmt(result.score)}</small></h1>
<p>profile <b>{escape(result.profile)}</b> against <code>{escape(result.target)}</code>,
{escape(result.started_at.isoformat())} to {escape(result.ended_at.isoformat())}</p>
{warnings}
<h2>Checks</h2><table>{_row(["check", "observed", "threshold", "result", "reason"], "th")}{checks}</table>
<h2>Timeline</h2>{_timeline_svg(result.timeline)}
<h2>Stats</h2><table>{stats}</table><p>status codes: {codes}</p>
<h2>Endpoints</h2><table>{_row(["method", "name", "requests", "failures"], "th")}{endpoints}</table>
</body></html>
"""
