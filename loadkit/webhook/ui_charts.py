"""The charts of a run on /ui: the one seam between the UI and whatever draws them.

`render_run_charts(timeline, thresholds)` returns an HTML fragment. Today it draws inline SVG
(no script, so it can be swapped into the live page with `innerHTML`): time axis in seconds, value
axes with units, a legend, and the latency thresholds as dashed lines. Each series shares its chart's
scale, so a 10 ms blip stays small next to a 700 ms limit. The HTML report's charts (loadkit/report)
can take its place by wiring another function with the same signature into `create_app(charts=...)`.

    render_run_charts(result.timeline, result.thresholds)  # -> '<figure class="chart">...'
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadkit.models.results import TimelinePoint
from loadkit.models.specs import Metric, Threshold

ChartRenderer = Callable[[Sequence[TimelinePoint], Sequence[Threshold]], str]

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 40
# The metrics whose thresholdRange.max is a latency in ms, and the series it bounds.
_LATENCY_LIMITS = {Metric.REQUEST_DURATION: "p99", Metric.LATENCY_P99: "p99", Metric.LATENCY_P95: "p95",
                   Metric.LATENCY_P50: "p50", Metric.LATENCY_MAX: "max"}


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]
    colour: str


@dataclass(frozen=True)
class Line:
    label: str
    value: float


def render_run_charts(timeline: Sequence[TimelinePoint], thresholds: Sequence[Threshold]) -> str:
    """Throughput and errors, latency percentiles with their limits, users: one SVG chart each."""
    if not timeline:
        return '<p class="muted">No samples yet: the charts appear with the first second of load.</p>'
    t = [p.t for p in timeline]
    latency_lines = [Line(f"{th.name} max ({_LATENCY_LIMITS[th.metric]})", th.thresholdRange.max)
                     for th in thresholds if th.metric in _LATENCY_LIMITS and th.thresholdRange is not None
                     and th.thresholdRange.max is not None]
    charts = [
        chart("Throughput", "req/s", t, [
            Series("requests/s", [p.rps for p in timeline], "#1f77b4"),
            Series("failures/s", [_per_s(p) for p in timeline], "#d62728")]),
        chart("Latency", "ms", t, [
            Series("p50", [p.p50_ms for p in timeline], "#2ca02c"),
            Series("p95", [p.p95_ms for p in timeline], "#ff7f0e"),
            Series("p99", [p.p99_ms for p in timeline], "#9467bd")], latency_lines),
        chart("Users", "users", t, [Series("users", [float(p.users) for p in timeline], "#555555")]),
    ]
    return "\n".join(charts)


def _per_s(point: TimelinePoint) -> float:
    """Failures per second in the point's window (rps x failure share)."""
    return point.rps * point.failures / point.requests if point.requests else 0.0


def chart(title: str, unit: str, t: Sequence[float], series: Sequence[Series], lines: Sequence[Line] = ()) -> str:
    """One time-axis line chart as an SVG figure."""
    values = [v for s in series for v in s.values if v is not None] + [ln.value for ln in lines]
    top = nice_ceiling(max(values, default=0.0))
    t0, t1 = min(t), max(t)
    span = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + (value - t0) / span * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - value / top * plot_h

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for tick in ticks(0.0, top):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)} {_e(unit)}</text>')
    for tick in ticks(t0, t1):
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                     f'class="axis"/><text x="{x(tick):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                     f'{_fmt(tick)} s</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">time since start (s)</text>')
    for s in series:
        parts.append(_path(s, t, x, y))
    for ln in lines:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(ln.value):.1f}" y2="{y(ln.value):.1f}" '
                     f'class="threshold"><title>{_e(ln.label)}: {_fmt(ln.value)} {_e(unit)}</title></line>')
    legend = "".join(f'<span><i style="background:{s.colour}"></i>{_e(s.label)}</span>' for s in series)
    legend += "".join(f'<span><i class="dashed"></i>{_e(ln.label)} {_fmt(ln.value)} {_e(unit)}</span>'
                      for ln in lines)
    return (f'<figure class="chart" data-chart="{_e(title)}"><figcaption>{_e(title)} ({_e(unit)})</figcaption>'
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(title)} in {_e(unit)} over time">'
            f'{"".join(parts)}</svg><div class="legend">{legend}</div></figure>')


def _path(series: Series, t: Sequence[float], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    """A polyline per run of known values: a gap (no sample, e.g. no p99 in an empty window) stays a gap."""
    runs: list[list[str]] = [[]]
    for when, value in zip(t, series.values, strict=True):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(f"{x(when):.1f},{y(value):.1f}")
    return "".join(f'<polyline points="{" ".join(r)}" fill="none" stroke="{series.colour}" stroke-width="1.5"/>'
                   for r in runs if r)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above `value` (1 for nothing), the top of an axis."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value:
            return step * base
    return 10 * base


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values from low to high."""
    if high <= low:
        return [low]
    step = nice_ceiling((high - low) / count)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def render_score_trend(points: Sequence[tuple[str, float]], title: str) -> str:
    """Scores (0-100) of one series in order, oldest first; `points` are (label, score), labels dated."""
    if not points:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points) - 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(points) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h - max(0.0, min(100.0, value)) / 100 * plot_h

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for tick in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for i in sorted({0, len(points) - 1}):
        anchor = "end" if i and i == len(points) - 1 else "start" if len(points) > 1 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{TOP + plot_h + 16}" text-anchor="{anchor}">{_e(points[i][0])}</text>')
    line = " ".join(f"{x(i):.1f},{y(score):.1f}" for i, (_, score) in enumerate(points))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(score):.1f}" r="3" fill="#1f77b4"><title>{_e(label)}: '
                 f'{score:.1f}</title></circle>' for i, (label, score) in enumerate(points))
    return (f'<figure class="chart" data-chart="{_e(title)}"><figcaption>{_e(title)}: score (0-100) per run'
            f'</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="score trend of {_e(title)}">'
            f'{"".join(parts)}</svg></figure>')
