"""What /ui draws with: the seam between the UI and the HTML report's charts (loadkit/report).

webhook/ sits below report/ (docs/architecture.md), so it never imports it: `loadkit serve` (cli/)
builds a `ChartViews` from loadkit.report and hands it to `create_app(..., views=...)`. The UI then
draws the report's own uPlot charts: it serves their assets from the server itself (no CDN), embeds
a run's chart specs in the run page, and sends fresh specs in `live.json` for the page to `setData`.

    ChartViews(live_specs=charts.live_specs, result_specs=chart_specs, trend_specs=charts.trend_specs,
               report_html=render_report, asset=asset, assets=ASSETS)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from loadkit.models.results import RunResult, StageInfo, TimelinePoint
from loadkit.models.specs import Threshold

Spec = dict[str, Any]  # one chart, JSON-safe (loadkit/report/charts.py)
TrendSeries = tuple[str, Sequence[tuple[float, float]]]  # a title and its (Unix time, score) points


class LiveSpecs(Protocol):
    """A running run's charts so far (`after`: only its points after that time, for a page that appends
    them; `stages`: the planned ones, shaded as far as the load got)."""

    def __call__(self, started_at: datetime, timeline: Sequence[TimelinePoint], thresholds: Sequence[Threshold],
                 profile: str, *, after: float | None = None, stages: Sequence[StageInfo] = ()) -> list[Spec]: ...


@dataclass(frozen=True)
class ChartViews:
    """`live_specs`: a running run's charts so far (LiveSpecs);
    `result_specs(result)`: a finished run's (the report's); `trend_specs(series)`: score trends;
    `report_html(result)`: the self-contained HTML report; `asset(name)`: the text of one of `assets`
    (uPlot's CSS and JS and loadkit's plugin, in the order a page loads them)."""

    live_specs: LiveSpecs
    result_specs: Callable[[RunResult], list[Spec]]
    trend_specs: Callable[[Sequence[TrendSeries]], list[Spec]]
    report_html: Callable[[RunResult], str]
    asset: Callable[[str], str]
    assets: tuple[str, ...]
