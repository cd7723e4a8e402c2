"""Renderers of the one result model: text scorecard, JSON, JUnit XML, HTML, report directory."""

from __future__ import annotations

import csv
from pathlib import Path

from loadkit.models.results import RunResult
from loadkit.report.html import render_html
from loadkit.report.junit import junit_xml, write_junit
from loadkit.report.text import render_scorecard, threshold_text


def result_json(result: RunResult) -> str:
    return result.model_dump_json(indent=2)


def write_report_dir(result: RunResult, directory: Path) -> list[Path]:
    """Write result.json, junit.xml, report.html and timeline.csv into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "result.json": result_json(result) + "\n",
        "junit.xml": junit_xml(result),
        "report.html": render_html(result),
    }
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    timeline = directory / "timeline.csv"
    with timeline.open("w", newline="", encoding="utf-8") as fh:
        fields = ["t", "users", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms",
                  "error_rate_pct", "cpu_pct"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for point in result.timeline:
            writer.writerow(point.model_dump())
    written.append(timeline)
    return written


__all__ = ["junit_xml", "render_html", "render_scorecard", "result_json", "threshold_text",
           "write_junit", "write_report_dir"]
