"""Render a game day: the scorecard text, JUnit (one testsuite per scenario), the report directory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioResult, ScenarioStatus
from loadkit.models.results import CheckStatus
from loadkit.report.charts import render_charts, score_trend_html
from loadkit.report.html import banner, checks_section, page, table, warnings_html
from loadkit.report.junit import write_text
from loadkit.report.text import render_checks
from loadkit.store import HistoryEntry, judged
from loadkit.units import fmt, with_unit

STYLES = {GameDayVerdict.PASS: "bold green", GameDayVerdict.FAIL: "bold red", GameDayVerdict.HALTED: "bold red",
          GameDayVerdict.INTERRUPTED: "bold yellow", GameDayVerdict.ERROR: "bold magenta",
          GameDayVerdict.DRY_RUN: "bold cyan"}
STATUS_STYLES = {ScenarioStatus.PASSED: "green", ScenarioStatus.FAILED: "red", ScenarioStatus.HALTED: "red",
                 ScenarioStatus.ERROR: "magenta", ScenarioStatus.INTERRUPTED: "yellow", ScenarioStatus.SKIPPED: "dim"}
UNJUDGED = (ScenarioStatus.HALTED, ScenarioStatus.INTERRUPTED, ScenarioStatus.ERROR, ScenarioStatus.SKIPPED)


def _scored(result: GameDayResult) -> bool:
    """A resilience score is the game day's only when it judged something (not interrupted, errored or dry)."""
    return judged(result.verdict.value, result.score)


def _score_html(result: GameDayResult, categories: str) -> str:
    if not _scored(result):
        return (f'<p style="font-size:1.3em">resilience score <b data-score="">not judged</b> '
                f'<span class="facts">({escape(result.verdict.value)}: no score)</span></p>')
    return (f'<p style="font-size:1.3em">resilience score <b data-score="{fmt(result.score)}">{fmt(result.score)}</b>\n'
            f'<span class="facts">(Σ weight·score / Σ weight; categories: {categories})</span></p>')


def render_gameday(result: GameDayResult, console: Console) -> None:
    console.print(Text.assemble(("loadkit gameday ", "bold"), f"{result.plan!r} -> {result.target}  ",
                                (result.verdict.value.upper(), STYLES[result.verdict]),
                                f"  resilience score {fmt(result.score)}" if _scored(result) else ""))
    if result.verdict is not GameDayVerdict.PASS and result.reason:
        console.print(Text.assemble((f"{result.verdict.value.upper()}: ", STYLES[result.verdict]), result.reason),
                      highlight=False)
    if result.categories:
        console.print("categories  " + "  ".join(f"{c} {fmt(s)}" for c, s in result.categories.items()),
                      highlight=False)
    table = Table(show_edge=False, pad_edge=False)
    for column in ("scenario", "category", "expect", "weight", "result", "score", "availability", "recovery",
                   "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for s in result.scenarios:
        chaos = s.chaos
        table.add_row(s.name, s.category.value, s.expect.value, str(s.weight),
                      Text(s.status.value.upper(), style=STATUS_STYLES[s.status]), fmt(s.score),
                      with_unit(chaos.availability_pct, "%") if chaos else "-",
                      with_unit(chaos.recovery_time_s, "s") if chaos and chaos.recovery_time_s is not None else "-",
                      s.reason)
    console.print(table)
    for firing in result.stops:
        console.print(Text(f"stop condition fired at {firing.at.isoformat(timespec='seconds')}"
                           f"{f' during {firing.scenario}' if firing.scenario else ''}: {firing.condition}: "
                           f"{firing.reason}", style="red"), highlight=False)
    for s in result.scenarios:
        if s.checks and s.status is not ScenarioStatus.PASSED:
            console.print(Text(f"\n{s.name}: the checks that count ({s.expect.value})", style="bold"))
            render_checks(s.checks, console)
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def gameday_junit(result: GameDayResult) -> str:
    """One testsuite per scenario, one testcase per counted check. A scenario that was halted,
    interrupted, skipped or errored adds a testcase `scenario` with an `<error>`: never green."""
    root = ET.Element("testsuites", {"name": f"loadkit.gameday.{result.plan}"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for scenario in result.scenarios:
        suite = _suite(result, scenario)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(result: GameDayResult, scenario: ScenarioResult) -> ET.Element:
    name = f"loadkit.gameday.{result.plan}.{scenario.name}"
    duration = (scenario.ended_at - scenario.started_at).total_seconds() \
        if scenario.started_at and scenario.ended_at else 0.0
    failed = sum(1 for c in scenario.checks if c.status is CheckStatus.FAILED)
    skipped = sum(1 for c in scenario.checks if c.status is CheckStatus.SKIPPED)
    unjudged = scenario.status in UNJUDGED
    unexplained = scenario.status is ScenarioStatus.FAILED and failed == 0
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(scenario.checks) + unjudged + unexplained),
        "failures": str(failed + unexplained), "errors": str(int(unjudged)), "skipped": str(skipped),
        "time": f"{duration:.3f}", "timestamp": (scenario.started_at or result.started_at).isoformat()})
    props = ET.SubElement(suite, "properties")
    for key, value in {"status": scenario.status.value, "score": fmt(scenario.score), "weight": str(scenario.weight),
                       "category": scenario.category.value, "expect": scenario.expect.value,
                       "gameday_verdict": result.verdict.value}.items():
        ET.SubElement(props, "property", {"name": key, "value": value})
    if unjudged or unexplained:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": "scenario", "time": f"{duration:.3f}"})
        tag = "error" if unjudged else "failure"
        element = ET.SubElement(case, tag, {"message": scenario.reason or scenario.status.value,
                                            "type": scenario.status.value.capitalize()})
        element.text = scenario.reason or scenario.status.value
    for check in scenario.checks:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": check.name, "time": f"{duration:.3f}"})
        if check.status is CheckStatus.SKIPPED:
            ET.SubElement(case, "skipped", {"message": check.reason})
        elif check.status is CheckStatus.FAILED:
            ET.SubElement(case, "failure", {"message": check.reason, "type": "CheckFailed"}).text = check.reason
    return suite


def write_gameday_dir(result: GameDayResult, directory: Path) -> list[Path]:
    """result.json and junit.xml; error.txt too when the game day did not pass."""
    written = [directory / "result.json", directory / "junit.xml"]
    write_text(written[0], result.model_dump_json(indent=2) + "\n")
    write_text(written[1], gameday_junit(result))
    error = directory / "error.txt"
    if result.verdict is not GameDayVerdict.PASS:
        failing = [f"  {s.name}: {s.status.value}: {s.reason}" for s in result.failing]
        write_text(error, f"game day {result.plan}: {result.verdict.value} (score {fmt(result.score)})\n"
                   f"{result.reason}\n" + "\n".join(failing) + "\n")
        written.append(error)
    elif error.exists():
        error.unlink()
    return written


_BAR_COLORS = {ScenarioStatus.PASSED: "#1a7f37", ScenarioStatus.FAILED: "#cf222e",
               ScenarioStatus.HALTED: "#a40e26", ScenarioStatus.ERROR: "#8250df",
               ScenarioStatus.INTERRUPTED: "#9a6700", ScenarioStatus.SKIPPED: "#8c959f"}


def render_gameday_html(result: GameDayResult, history: Sequence[HistoryEntry] = ()) -> str:
    """The report of `loadkit gameday run`: scenario timeline, per-scenario results, the resilience
    score and (given `history`, the plan's earlier game days) its trend."""
    rows = [_scenario_row(s) for s in result.scenarios]
    stops = [f"<li><b>{escape(f.at.isoformat(timespec='seconds'))}</b> {escape(f.kind.value)} "
             f"<code>{escape(f.condition)}</code>{escape(f' during {f.scenario}' if f.scenario else '')}: "
             f"{escape(f.reason)}</li>" for f in result.stops]
    checks = "".join(f"<h3>{escape(s.name)} ({escape(s.expect.value)})</h3>{checks_section(s.checks)}"
                     for s in result.scenarios if s.checks)
    categories = " · ".join(f"{escape(c)} {fmt(v)}" for c, v in result.categories.items()) or "-"
    body = f"""<h1>loadkit game day: {escape(result.plan)}</h1>
<p class="facts">{escape(result.plan_path)} against <code>{escape(result.target)}</code> · profile
{escape(result.profile)} · {escape(result.started_at.isoformat(timespec="seconds"))} to
{escape(result.ended_at.isoformat(timespec="seconds"))}</p>
{banner(result.verdict.value, result.reason or _gameday_reason(result), None, "")}
{_score_html(result, categories)}
{warnings_html(result.warnings)}
<h2>Scenario timeline</h2>{_gantt(result)}
{"<h2>Stop conditions that fired</h2><ul>" + "".join(stops) + "</ul>" if stops else ""}
<h2>Scenarios</h2>{table(["scenario", "category", "expect", "weight", "result", "score", "availability",
                          "recovery", "reason"], rows)}
<h2>Load over the game day</h2>{render_charts(result)}
{score_trend_html(history, result) if history else ""}
<h2>Checks per scenario</h2>{checks or "<p>none</p>"}
"""
    return page(f"loadkit game day {result.plan}: {result.verdict.value}", body)


def _scenario_row(s: ScenarioResult) -> str:
    c = s.chaos
    cells = [escape(s.name), escape(s.category.value), escape(s.expect.value), str(s.weight),
             f'<span class="{_css(s.status)}">{escape(s.status.value.upper())}</span>', fmt(s.score),
             escape(with_unit(c.availability_pct, "%")) if c else "-",
             escape(with_unit(c.recovery_time_s, "s")) if c and c.recovery_time_s is not None else "-",
             escape(s.reason)]
    return "<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>"


def _css(status: ScenarioStatus) -> str:
    return {ScenarioStatus.PASSED: "pass", ScenarioStatus.FAILED: "fail", ScenarioStatus.HALTED: "halted",
            ScenarioStatus.ERROR: "error"}.get(status, "interrupted")


def _gantt(result: GameDayResult) -> str:
    """One row per scenario, its bar placed on the game day's span; skipped ones have no bar."""
    start, end = result.started_at.timestamp(), result.ended_at.timestamp()
    span = max(end - start, 1e-9)
    rows = []
    for s in result.scenarios:
        bar = ""
        if s.started_at and s.ended_at:
            left = 100 * (s.started_at.timestamp() - start) / span
            width = max(100 * (s.ended_at.timestamp() - s.started_at.timestamp()) / span, 0.5)
            bar = (f'<span class="bar" style="left:{left:.2f}%;width:{width:.2f}%;background:{_BAR_COLORS[s.status]}" '
                   f'title="{escape(s.name)}">{escape(s.name)} {escape(s.status.value)}</span>')
        rows.append(f'<div class="row" data-scenario="{escape(s.name)}">{bar or escape(s.name + " (not run)")}</div>')
    for f in result.stops:
        left = 100 * (f.at.timestamp() - start) / span
        label = f"stop: {escape(f.condition)}"
        # the bar starts (or, late in the day, ends) at the firing, so its label stays on the page
        place, text = (f"left:{left:.2f}%", f"&#9660; {label}") if left < 60 else \
            (f"right:{100 - left:.2f}%", f"{label} &#9660;")
        rows.append(f'<div class="row"><span class="bar" style="{place};background:#8250df">{text}</span></div>')
    return f'<div class="gantt">{"".join(rows)}</div>'


def _gameday_reason(result: GameDayResult) -> str:
    failing = result.failing
    if not failing:
        return f"all {len(result.scenarios)} scenarios met their expectation"
    return "; ".join(f"{s.name}: {s.status.value}" + (f" ({s.reason})" if s.reason else "") for s in failing)
