"""The report's charts: uPlot specs from the one result model, and the HTML that draws them.

`render_charts(result)` is the one entry point (the HTML report and `loadkit serve`'s /ui both embed
it): a self-contained fragment with uPlot, loadkit's plugin (assets/charts.js) and the data.
`chart_specs(result)` is the data alone (JSON-safe), for a page that already has the assets and
updates the charts itself.

Times are Unix seconds (UTC), so the fault windows, stages and stop conditions of the model land on
the same axis as the load's windows. Numbers are rounded as everywhere in the report (`rounded`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Any

from loadkit.chaos.models import ChaosResult
from loadkit.errors import DriverError
from loadkit.gameday.models import GameDayResult
from loadkit.gameday.plan import LoadStop
from loadkit.models.results import Comparison, RunResult, StageInfo, TimelinePoint
from loadkit.models.specs import Metric, Source, Threshold
from loadkit.report.percentiles import percentile_curve
from loadkit.store import HistoryEntry, HistoryKind, judged
from loadkit.units import fmt

AnyResult = RunResult | Comparison | ChaosResult | GameDayResult
Spec = dict[str, Any]

DIGITS = 3  # every float in the charts' data and the report's JSON-facing numbers
MAX_POINTS = 2000  # per time series of a report's chart (about 33 min at one window a second); min/max above
LATENCY = {Metric.LATENCY_P50: "p50", Metric.LATENCY_P95: "p95", Metric.LATENCY_P99: "p99",
           Metric.REQUEST_DURATION: "p99", Metric.LATENCY_MAX: "max"}
COLORS = {"p50": "#1a7f37", "p95": "#bf8700", "p99": "#cf222e", "rps": "#0969da", "users": "#0969da",
          "canary": "#cf222e", "primary": "#0969da"}
KIND_COLORS = ["#cf222e", "#8250df", "#bc4c00", "#9a6700", "#57606a", "#1b7c83"]
_FIELD_LABELS = {"rps": "req/s", "error_rate_pct": "error rate", "p50_ms": "p50", "p99_ms": "p99"}
_BOTH = "Latency by percentile, canary vs primary (each side's HdrHistogram)"
ASSETS = ("uPlot.min.css", "uPlot.iife.min.js", "charts.js")


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


@cache
def asset(name: str) -> str:
    """One of the report's assets (uPlot and loadkit's plugin), as text."""
    try:
        return files("loadkit.report").joinpath("_assets", name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DriverError(f"the report asset {name} is missing from the loadkit package",
                          hint="reinstall loadkit, or in a checkout run `make assets`") from exc


def assets_html() -> str:
    """uPlot's CSS and JS and loadkit's plugin, inline, with uPlot's MIT licence notice."""
    notice = asset("uPlot.LICENSE").replace("*/", "* /")
    return (f"<style>{asset('uPlot.min.css')}</style>\n<script>/* uPlot 1.6.32, {notice} */\n"
            f"{asset('uPlot.iife.min.js')}</script>\n<script>{asset('charts.js')}</script>\n")


def script_json(data: Any) -> str:
    """JSON to put inside a <script> element: every "<" escaped (\\u003c), so neither "</script>" nor
    "<!--<script>" in a label (a profile's or a plan's name) can end or swallow the element."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render_charts(result: AnyResult, *, assets: bool = True, element_id: str = "lk-charts") -> str:
    """The charts of one result as an HTML fragment; `assets=False` when the page already has them."""
    data = script_json(chart_specs(result))
    return ((assets_html() if assets else "")
            + f'<div class="lk-charts" id="{element_id}"></div>\n'
            + f'<script type="application/json" id="{element_id}-data">{data}</script>\n'
            + f"<script>loadkitCharts.mount(document.getElementById({json.dumps(element_id)}), "
            + f"JSON.parse(document.getElementById({json.dumps(element_id + '-data')}).textContent));</script>\n")


def chart_specs(result: AnyResult) -> list[Spec]:
    """The charts of a result, each time series at most MAX_POINTS points (`decimated`)."""
    return [decimated(spec) for spec in _specs(result)]


def _specs(result: AnyResult) -> list[Spec]:
    if isinstance(result, Comparison):
        return _comparison_specs(result)
    if isinstance(result, GameDayResult):
        return _gameday_specs(result)
    if isinstance(result, ChaosResult):
        regions = [*_fault_region(result)]
        markers = [{"at": result.steady_state_after_at.timestamp(), "label": "steady state after"}] \
            if result.steady_state_after_at else []
        fault = result.fault
        if fault is not None and fault.removed_at is not None and fault.removed_at < fault.end:
            markers.append({"at": fault.removed_at.timestamp(), "label": "fault removed"})
        return _load_specs(_absolute(result.started_at, result.timeline), result.thresholds, regions, markers,
                           result.profile, None)
    return _load_specs(_absolute(result.started_at, result.timeline), result.thresholds,
                       _stage_regions(result.started_at, result.stages, result.ended_at), [], result.profile,
                       result.histogram)


def decimated(spec: Spec, budget: int = 0) -> Spec:
    """A time chart of more than `budget` (default MAX_POINTS) points as min/max per bucket: the
    windows are cut into budget/2 runs of consecutive ones, each drawn as two points (its first and
    last time) holding each series' lowest and highest value in the order they happened, so a spike
    or a dip of a single second is never averaged away. A 24 h run stays a report of a few hundred
    KB. The percentile curve (not a time axis) is left as it is."""
    budget = budget or MAX_POINTS
    xs = spec["x"]
    if spec.get("x_kind") or len(xs) <= budget:
        return spec
    size = -(-len(xs) // (budget // 2))  # windows per bucket, rounded up
    buckets = [range(i, min(i + size, len(xs))) for i in range(0, len(xs), size)]
    new_x = [x for b in buckets for x in ((xs[b[0]], xs[b[-1]]) if len(b) > 1 else (xs[b[0]],))]

    def envelope(values: Sequence[float | None]) -> list[float | None]:
        out: list[float | None] = []
        for b in buckets:
            known = [(i, v) for i in b if (v := values[i]) is not None]
            if not known:
                out.extend([None] * min(len(b), 2))
                continue
            low, high = min(known, key=lambda iv: iv[1]), max(known, key=lambda iv: iv[1])
            pair = (low[1], high[1]) if low[0] <= high[0] else (high[1], low[1])
            out.extend(pair if len(b) > 1 else pair[:1])
        return out

    return {**spec, "x": new_x, "decimated": size,
            "series": [{**s, "values": envelope(s["values"])} for s in spec["series"]]}


def live_specs(started_at: datetime, timeline: Sequence[TimelinePoint], thresholds: Sequence[Threshold],
               profile: str, *, after: float | None = None, stages: Sequence[StageInfo] = ()) -> list[Spec]:
    """The charts of a run still going (`loadkit serve`'s live page): the ones its result will have,
    from the timeline so far (its stages shaded as far as the load got), without the percentile curve
    (the histogram comes with the result). `after` (Unix seconds, a chart's last x): only the newer
    points, with the series of the whole timeline (every failure class seen so far), so a page can
    append them to the charts it has."""
    points = _absolute(started_at, timeline)
    so_far = started_at + timedelta(seconds=timeline[-1].t) if timeline else started_at
    if after is not None:
        points = [pt for pt in points if pt[0] > after]
    kinds = sorted({k for p in timeline for k in p.failures_by_kind})
    return _load_specs(points, thresholds, _stage_regions(started_at, stages, so_far), [], profile, None, kinds)


# ---- one run's load: rps and errors, users, latency, the percentile curve ------------------------------------

Point = tuple[float, TimelinePoint]


def _absolute(start: datetime, timeline: Sequence[TimelinePoint]) -> list[Point]:
    origin = start.timestamp()
    return [(round(origin + p.t, DIGITS), p) for p in timeline]


def _load_specs(points: Sequence[Point], thresholds: Sequence[Threshold], regions: list[Spec],
                markers: list[Spec], profile: str, histogram: str | None,
                kinds: Sequence[str] | None = None) -> list[Spec]:
    x = [t for t, _ in points]
    common = {"x": x, "regions": regions, "markers": markers}
    specs = [
        {"id": "throughput", "title": "Requests and errors per second", "y_label": "rate", "y_unit": "req/s",
         "series": [{"label": "requests/s", "color": COLORS["rps"], "values": [rounded(p.rps) for _, p in points]},
                    *_error_series([p for _, p in points], kinds)], **common},
        {"id": "users", "title": f"Users (profile {profile})", "y_label": "users", "y_unit": "",
         "series": [{"label": "users", "color": COLORS["users"], "values": [p.users for _, p in points]}], **common},
        {"id": "latency", "title": "Latency per window", "y_label": "latency", "y_unit": "ms",
         "series": [{"label": name, "color": COLORS[name], "values": [rounded(getattr(p, f"{name}_ms"))
                                                                      for _, p in points]}
                    for name in ("p50", "p95", "p99")],
         "thresholds": latency_thresholds(thresholds), **common},
    ]
    curve = percentile_curve(histogram) if histogram else None
    if curve:
        specs.append(_curve_spec([("all requests", COLORS["p99"], curve)], latency_thresholds(thresholds)))
    return specs


def _error_series(points: Sequence[TimelinePoint], kinds: Sequence[str] | None = None) -> list[Spec]:
    """errors/s per failure class (5xx, connection, ...; `kinds`: default those of `points`); one series
    of all failures for older results."""
    kinds = sorted({k for p in points for k in p.failures_by_kind}) if kinds is None else kinds

    def rate(p: TimelinePoint, failures: int) -> float:
        return round(failures * p.rps / p.requests, DIGITS) if p.requests else 0.0

    if not kinds:
        return [{"label": "errors/s", "color": KIND_COLORS[0], "values": [rate(p, p.failures) for p in points]}]
    return [{"label": f"errors/s {kind}", "color": KIND_COLORS[i % len(KIND_COLORS)],
             "values": [rate(p, p.failures_by_kind.get(kind, 0)) for p in points]} for i, kind in enumerate(kinds)]


def error_rate_spec(points: Sequence[Point], common: Spec) -> Spec:
    return {"id": "errors", "title": "Error rate per window", "y_label": "errors", "y_unit": "%",
            "series": [{"label": "error rate", "color": KIND_COLORS[0],
                        "values": [rounded(p.error_rate_pct) for _, p in points]}], **common}


def latency_thresholds(thresholds: Iterable[Threshold]) -> list[Spec]:
    """The latency thresholds with an upper bound: the line a latency chart draws."""
    lines = []
    for t in thresholds:
        bound = t.thresholdRange.max if t.thresholdRange is not None else None
        if t.metric in LATENCY and t.source in (None, Source.CLIENT) and bound is not None:
            lines.append({"value": bound, "label": f"{t.name} max {bound:g} ms"})
    return lines


def _curve_spec(curves: Sequence[tuple[str, str, list[tuple[float, float]]]], thresholds: list[Spec],
                title: str = "Latency by percentile (from the run's HdrHistogram)") -> Spec:
    """Latency by percentile, every recorded value of the HdrHistogram (x: 1/(1-p), log scale)."""
    xs = sorted({x for _, _, curve in curves for x, _ in curve})
    series = []
    for label, color, curve in curves:
        by_x = dict(curve)
        series.append({"label": label, "color": color, "values": [by_x.get(x) for x in xs]})
    # each curve's last point (p = 1) sits at 2n, not at a percentile: the legend names it "max"
    maxima = sorted({curve[-1][0] for _, _, curve in curves if curve})
    return {"id": "percentiles", "title": title, "x": xs, "x_max_at": maxima,
            "x_kind": "percentile", "y_label": "latency", "y_unit": "ms", "series": series,
            "thresholds": thresholds, "regions": [], "markers": []}


def _stage_regions(start: datetime, stages: Sequence[StageInfo], end: datetime) -> list[Spec]:
    """The stages as run: cut at the run's end (a run stopped early, a continuous run's last stage held
    until its analysis ended), so the axis is not stretched to a plan the load never reached."""
    regions, at, stop = [], start.timestamp(), end.timestamp()
    for i, stage in enumerate(stages, 1):
        if at < stop:
            regions.append({"from": at, "to": min(at + stage.duration_s, stop), "kind": "stage",
                            "label": f"stage {i}: {stage.users} users" if len(stages) > 1 else ""})
        at += stage.duration_s
    return regions


def _fault_region(result: ChaosResult) -> list[Spec]:
    fault = result.fault
    if fault is None:
        return []
    # the span the checks count (to `end`: the removal plus the in-flight requests), labelled the same
    return [{"from": fault.start.timestamp(), "to": fault.end.timestamp(), "kind": "fault",
             "label": f"fault ({fmt(fault.duration_s)}s)"}]


# ---- a comparison: canary and primary on one chart ----------------------------------------------------------

def _comparison_specs(c: Comparison) -> list[Spec]:
    if not c.canary_timeline or c.started_at is None:
        curves = _comparison_curves(c)
        return [_curve_spec(curves, [], _BOTH)] if curves else []
    start = c.started_at.timestamp()
    xs = sorted({round(start + p.t) for p in (*c.canary_timeline, *c.baseline_timeline)})

    def on_x(timeline: Sequence[TimelinePoint], field: str) -> list[float | None]:
        by_t = {round(start + p.t): getattr(p, field) for p in timeline}
        return [rounded(by_t.get(x)) for x in xs]

    def pair(field: str) -> list[Spec]:
        label = _FIELD_LABELS[field]
        light = field == "p50_ms"  # the medians lighter than the p99s they share a chart with
        return [{"label": f"canary {label}", "color": "#ff8182" if light else COLORS["canary"],
                 "values": on_x(c.canary_timeline, field)},
                {"label": f"primary {label}", "color": "#54aeff" if light else COLORS["primary"],
                 "values": on_x(c.baseline_timeline, field), "dash": [6, 3]}]

    allowed = _allowed_median(c)
    common = {"x": xs, "regions": [], "markers": []}
    specs = [
        {"id": "throughput", "title": "Requests per second, canary vs primary", "y_label": "rate", "y_unit": "req/s",
         "series": pair("rps"), **common},
        {"id": "errors", "title": "Error rate, canary vs primary", "y_label": "errors", "y_unit": "%",
         "series": pair("error_rate_pct"), **common},
        {"id": "latency", "title": "Median and p99 latency, canary vs primary", "y_label": "latency", "y_unit": "ms",
         "series": [*pair("p50_ms"), *pair("p99_ms")], "thresholds": allowed, **common},
    ]
    curves = _comparison_curves(c)
    if curves:
        specs.append(_curve_spec(curves, allowed, _BOTH))
    return specs


def _comparison_curves(c: Comparison) -> list[tuple[str, str, list[tuple[float, float]]]]:
    sides = [("canary", COLORS["canary"], c.canary_histogram), ("primary", COLORS["primary"], c.baseline_histogram)]
    return [(label, color, curve) for label, color, h in sides if h and (curve := percentile_curve(h))]


def _allowed_median(c: Comparison) -> list[Spec]:
    """The canary's allowed median: the primary's median plus --max-degradation."""
    latency = next((m for m in c.metrics if m.name.value == "latency" and m.baseline is not None), None)
    if latency is None or latency.baseline is None:
        return []
    # from the primary's median as the JSON and the table show it, so the line is the number a reader can check
    value = round(round(latency.baseline, DIGITS) * (1 + c.settings.max_degradation_pct / 100), DIGITS)
    return [{"value": value, "label": f"allowed canary median {value:g} ms "
                                      f"(primary +{c.settings.max_degradation_pct:g}%)"}]


# ---- a game day: every scenario's load on one axis, scenarios and faults shaded, stops marked ------------------

def _gameday_specs(g: GameDayResult) -> list[Spec]:
    """The whole game day's load (from its start: the baseline, then each scenario), an error-rate chart,
    the plan's load stop conditions as dashed lines on the chart of their metric."""
    regions: list[Spec] = []
    thresholds: list[Threshold] = []
    for s in g.scenarios:
        if s.started_at and s.ended_at:
            regions.append({"from": s.started_at.timestamp(), "to": s.ended_at.timestamp(), "kind": "scenario",
                            "label": f"{s.name} ({s.status.value})"})
        if s.chaos is not None:
            regions.extend(_fault_region(s.chaos))
            thresholds.extend(t for t in s.chaos.thresholds if t not in thresholds)
    points = _absolute(g.started_at, g.timeline) if g.timeline else _scenario_points(g)
    markers = [{"at": f.at.timestamp(), "label": f"stop: {f.condition}"} for f in g.stops]
    specs = _load_specs(points, thresholds, regions, markers, g.profile, None)
    specs.insert(1, error_rate_spec(points, {"x": [t for t, _ in points], "regions": regions, "markers": markers}))
    lines = stop_lines(g.load_stops)
    for spec in specs:
        spec["x_range"] = [g.started_at.timestamp(), g.ended_at.timestamp()]
        spec["thresholds"] = [*spec.get("thresholds", []), *lines.get(spec["id"], [])]
    return specs


def _scenario_points(g: GameDayResult) -> list[Point]:
    """A game day stored before it kept its own timeline: its scenarios' load, one point per instant."""
    points = [p for s in g.scenarios if s.chaos is not None for p in _absolute(s.chaos.started_at, s.chaos.timeline)]
    return sorted({t: (t, p) for t, p in points}.values(), key=lambda p: p[0])


def stop_lines(stops: Sequence[LoadStop]) -> dict[str, list[Spec]]:
    """The load stop conditions' bounds by the chart that shows their metric (a success-rate floor is
    drawn as the error-rate ceiling it means)."""
    lines: dict[str, list[Spec]] = {}
    for stop in stops:
        metric, bounds = stop.threshold().resolved_metric, stop.thresholdRange
        values: list[tuple[str, float, str]] = []
        if metric in LATENCY:
            values = [("latency", v, "") for v in (bounds.min, bounds.max) if v is not None]
        elif metric is Metric.ERROR_RATE:
            values = [("errors", v, "") for v in (bounds.min, bounds.max) if v is not None]
        elif metric is Metric.REQUEST_SUCCESS_RATE:
            values = [("errors", round(100 - v, DIGITS), f" = errors {fmt(100 - v)}%")
                      for v in (bounds.min, bounds.max) if v is not None]
        elif metric is Metric.RPS:
            values = [("throughput", v, "") for v in (bounds.min, bounds.max) if v is not None]
        for chart, value, note in values:
            lines.setdefault(chart, []).append({"value": value, "label": f"stop: {stop.condition}{note}",
                                                "kind": "stop"})
    return lines


def score_trend_html(history: Sequence[HistoryEntry], current: GameDayResult) -> str:
    """The plan's resilience score over its judged game days (the history, oldest first, with this
    one): an interrupted, errored or dry-run game day measured nothing, so it is not a point (as in
    the UI's trend: loadkit.store.judged)."""
    points = sorted({e.started_at.timestamp(): e.score for e in history
                     if e.kind is HistoryKind.GAMEDAY and e.name == current.plan and e.score is not None
                     and judged(e.verdict, e.score)}.items())
    if judged(current.verdict.value, current.score) and all(
            abs(t - current.started_at.timestamp()) >= 1 for t, _ in points):  # not saved: add this one
        points = sorted([*points, (current.started_at.timestamp(), current.score)])
    spec = trend_spec(f"Resilience score of {current.plan} per game day", points, "resilience score")
    data = script_json([spec])
    return ('<h2>Resilience score trend</h2><div class="lk-charts" id="lk-trend"></div>'
            f'<script type="application/json" id="lk-trend-data">{data}</script>'
            '<script>loadkitCharts.mount(document.getElementById("lk-trend"), '
            'JSON.parse(document.getElementById("lk-trend-data").textContent));</script>\n')


def trend_spec(title: str, points: Sequence[tuple[float, float]], label: str = "score",
               chart_id: str = "score-trend") -> Spec:
    """A score (0-100) per result over time: `points` are (Unix time, score), oldest first."""
    return {"id": chart_id, "title": title, "x": [t for t, _ in points], "y_label": "score", "y_unit": "",
            "regions": [], "markers": [], "points": True, "y_max": 100,
            "series": [{"label": label, "color": "#8250df", "values": [rounded(v) for _, v in points]}]}


def trend_specs(series: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> list[Spec]:
    """One score-trend chart per (title, points) series (`loadkit serve`'s history page)."""
    return [trend_spec(title, points, chart_id=f"trend-{i}") for i, (title, points) in enumerate(series)]
