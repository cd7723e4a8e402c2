"""Render a game day: the scorecard text, JUnit (one testsuite per scenario), the report directory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioResult, ScenarioStatus
from loadkit.models.results import CheckStatus
from loadkit.report.junit import write_text
from loadkit.report.text import render_checks
from loadkit.units import fmt, with_unit

STYLES = {GameDayVerdict.PASS: "bold green", GameDayVerdict.FAIL: "bold red", GameDayVerdict.HALTED: "bold red",
          GameDayVerdict.INTERRUPTED: "bold yellow", GameDayVerdict.ERROR: "bold magenta",
          GameDayVerdict.DRY_RUN: "bold cyan"}
STATUS_STYLES = {ScenarioStatus.PASSED: "green", ScenarioStatus.FAILED: "red", ScenarioStatus.HALTED: "red",
                 ScenarioStatus.ERROR: "magenta", ScenarioStatus.INTERRUPTED: "yellow", ScenarioStatus.SKIPPED: "dim"}
UNJUDGED = (ScenarioStatus.HALTED, ScenarioStatus.INTERRUPTED, ScenarioStatus.ERROR, ScenarioStatus.SKIPPED)


def render_gameday(result: GameDayResult, console: Console) -> None:
    console.print(Text.assemble(("loadkit gameday ", "bold"), f"{result.plan!r} -> {result.target}  ",
                                (result.verdict.value.upper(), STYLES[result.verdict]),
                                f"  resilience score {fmt(result.score)}"))
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
