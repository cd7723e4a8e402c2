"""Renderers of the one result model: text scorecard, JSON, JUnit XML, HTML, report directory."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from loadkit.chaos.models import ChaosResult
from loadkit.gameday.models import GameDayResult
from loadkit.models.results import Comparison, RunResult, TimelinePoint
from loadkit.report.chaos import chaos_junit, render_chaos_html
from loadkit.report.charts import ASSETS, asset, assets_html, chart_specs, render_charts
from loadkit.report.gameday import render_gameday_html, write_gameday_dir
from loadkit.report.html import render_comparison_html, render_html
from loadkit.report.junit import comparison_junit, junit_xml, write_junit, write_text
from loadkit.report.text import render_scorecard, threshold_text
from loadkit.store import HistoryEntry

AnyResult = RunResult | Comparison | ChaosResult | GameDayResult
TIMELINE_FIELDS = ["t", "users", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate_pct",
                   "cpu_pct"]


def result_json(result: AnyResult) -> str:
    return result.model_dump_json(indent=2)


def render_report(result: AnyResult, history: Sequence[HistoryEntry] = ()) -> str:
    """The self-contained HTML report of any result (`history`: a game day's earlier runs, for the trend)."""
    if isinstance(result, Comparison):
        return render_comparison_html(result)
    if isinstance(result, GameDayResult):
        return render_gameday_html(result, history)
    if isinstance(result, ChaosResult):
        return render_chaos_html(result)
    return render_html(result)


def write_report_dir(result: AnyResult, directory: Path, history: Sequence[HistoryEntry] = ()) -> list[Path]:
    """result.json, junit.xml and report.html (and timeline.csv for a run or chaos run; error.txt for a
    game day that did not pass) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(result, GameDayResult):
        written = write_gameday_dir(result, directory)
    else:
        junit = {RunResult: junit_xml, Comparison: comparison_junit, ChaosResult: chaos_junit}[type(result)]
        written = [directory / "result.json", directory / "junit.xml"]
        write_text(written[0], result_json(result) + "\n")
        write_text(written[1], junit(result))  # type: ignore[operator]
    report = directory / "report.html"
    write_text(report, render_report(result, history))
    written.append(report)
    if isinstance(result, RunResult | ChaosResult):
        written.append(_timeline_csv(result.timeline, directory / "timeline.csv"))
    return written


def _timeline_csv(timeline: Sequence[TimelinePoint], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TIMELINE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for point in timeline:
            writer.writerow(point.model_dump())
    return path


__all__ = ["ASSETS", "asset", "assets_html", "chart_specs", "junit_xml", "render_charts", "render_html",
           "render_report", "render_scorecard", "result_json", "threshold_text", "write_junit", "write_report_dir"]
