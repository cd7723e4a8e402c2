"""The /ui chart renderer (pure): axes, units, one scale per chart, thresholds as lines, gaps kept."""

from __future__ import annotations

import re

import pytest

from loadkit.models.results import TimelinePoint
from loadkit.models.specs import Threshold
from loadkit.webhook.ui_charts import nice_ceiling, render_run_charts, render_score_trend, ticks


@pytest.mark.parametrize(("value", "top"), [
    (0.0, 1.0), (-3.0, 1.0), (float("nan"), 1.0), (0.7, 1.0), (1.0, 1.0), (1.2, 2.0), (2.1, 2.5), (3.0, 5.0),
    (7.0, 10.0), (700.0, 1000.0), (120.0, 200.0),
], ids=lambda v: str(v))
def test_nice_ceiling(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.0, 100.0, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
    (1.0, 4.2, [1.0, 2.0, 3.0, 4.0]),
    (5.0, 5.0, [5.0]),
], ids=["0-100", "1-4.2", "flat"])
def test_ticks(low: float, high: float, expected: list[float]) -> None:
    assert ticks(low, high) == expected


def point(t: float, p99: float | None, requests: int = 100, failures: int = 0) -> TimelinePoint:
    return TimelinePoint(t=t, users=10, requests=requests, failures=failures, rps=float(requests),
                         p50_ms=None if p99 is None else p99 / 4, p95_ms=p99, p99_ms=p99)


def latency_svg(html: str) -> str:
    match = re.search(r'<figure class="chart" data-chart="Latency">.*?</figure>', html)
    assert match, html
    return match.group(0)


def test_the_latency_chart_shares_one_scale_and_draws_the_limit() -> None:
    timeline = [point(1, 10.0), point(2, 12.0), point(3, 11.0)]
    html = render_run_charts(timeline, [Threshold.model_validate({"name": "request-duration",
                                                                  "thresholdRange": {"max": 700}})])
    latency = latency_svg(html)
    assert "1000 ms" in latency  # the axis reaches past the 700 ms limit ...
    [limit] = re.findall(r'<line [^>]*class="threshold"', latency)
    y_limit = float(re.search(r'y1="([\d.]+)"', limit).group(1))  # type: ignore[union-attr]
    p99 = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="#9467bd"', latency)[0]
    ys = [float(pair.split(",")[1]) for pair in p99.split()]
    assert all(y > y_limit + 100 for y in ys)  # ... so a 12 ms p99 sits far below it, not at the top
    assert "request-duration max (p99) 700 ms" in latency
    assert html.count('<figure class="chart"') == 3 and "time since start (s)" in html


def test_no_latency_limit_no_line_and_a_gap_stays_a_gap() -> None:
    html = render_run_charts([point(1, 10.0), point(2, None, requests=0), point(3, 30.0)], [
        Threshold.model_validate({"name": "request-success-rate", "thresholdRange": {"min": 99}})])
    latency = latency_svg(html)
    assert 'class="threshold"' not in latency
    assert len(re.findall(r'stroke="#9467bd"', latency)) == 2  # p99: two pieces around the empty window


def test_failures_per_second_from_the_window() -> None:
    html = render_run_charts([point(1, 10.0, requests=100, failures=10), point(2, 10.0, requests=100, failures=50)],
                             [])
    assert "failures/s" in html and "100 req/s" in html


def test_nothing_yet_says_so() -> None:
    assert "No samples yet" in render_run_charts([], [])


def test_user_text_in_charts_is_escaped() -> None:
    svg = render_score_trend([("<b>day</b>", 80.0), ("later", 90.0)], "<script>x</script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;day" in svg
    assert svg.count("<circle") == 2
