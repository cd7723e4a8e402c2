"""A result that was not judged (interrupted, error, not-judged, dry-run) shows no score anywhere: not
in the HTML banner, not in JUnit's properties; a judged one (pass, fail) shows it. Pure renderers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loadkit.chaos.models import ChaosResult
from loadkit.gameday.models import GameDayResult
from loadkit.models.results import Comparison, RunResult
from loadkit.report import render_report
from loadkit.report.chaos import chaos_junit
from loadkit.report.charts import score_trend_html
from loadkit.report.junit import comparison_junit, junit_xml
from loadkit.store import HistoryEntry, HistoryKind

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CHECK = {"name": "error-rate", "metric": "error-rate", "kind": "metric", "observed": 0.0, "min": None,
         "max": 1.0, "status": "passed", "reason": "ok"}


def run(verdict: str, **extra: Any) -> RunResult:
    return RunResult.model_validate({
        "verdict": verdict, "score": 100, "target": "http://t", "profile": "p", "locustfile": "l",
        "started_at": START.isoformat(), "ended_at": (START + timedelta(seconds=3)).isoformat(), "stats": {},
        "checks": [CHECK], **extra})


def chaos(verdict: str, **extra: Any) -> ChaosResult:
    return ChaosResult.model_validate({
        "verdict": verdict, "score": 66.7, "reason": f"why {verdict}", "experiment": "x", "experiment_path": "x.yaml",
        "target": "t", "profile": "p", "started_at": START.isoformat(),
        "ended_at": (START + timedelta(seconds=20)).isoformat(), "journal_status": "completed", "deviated": False,
        "interrupted": verdict == "interrupted", "rollbacks": {"planned": 1, "run": 1, "failed": 0}, "phases": [],
        "checks": [CHECK], **extra})


def comparison(verdict: str) -> Comparison:
    return Comparison.model_validate({
        "verdict": verdict, "score": 100, "reason": f"why {verdict}", "source": "client", "baseline": "b",
        "canary": "c", "settings": {}, "started_at": START.isoformat(),
        "ended_at": (START + timedelta(seconds=3)).isoformat(), "metrics": [
            {"name": "latency", "classification": "pass", "passed": True, "critical": False, "reason": "same"}]})


def banner(html: str) -> str:
    return html.split('<div class="banner')[1].split("</div>")[0]


def properties(xml: str) -> dict[str, str]:
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    return {p.get("name") or "": p.get("value") or "" for p in suite.iter("property")}


CASES = [
    pytest.param(run("pass"), junit_xml, True, id="run-pass"),
    pytest.param(run("fail", checks=[{**CHECK, "status": "failed"}]), junit_xml, True, id="run-fail"),
    pytest.param(run("interrupted", interrupted=True), junit_xml, False, id="run-interrupted"),
    pytest.param(run("interrupted", reason="not judged: stopped before its end"), junit_xml, False,
                 id="webhook-run-stopped"),
    pytest.param(run("not-judged", reason="not judged: 3 requests, fewer than min_samples 50"), junit_xml, False,
                 id="webhook-run-too-few-samples"),
    pytest.param(run("error", reason="not judged: 5 request(s) left the target"), junit_xml, False,
                 id="webhook-run-left-target"),
    pytest.param(chaos("pass"), chaos_junit, True, id="chaos-pass"),
    pytest.param(chaos("interrupted"), chaos_junit, False, id="chaos-interrupted"),
    pytest.param(chaos("error"), chaos_junit, False, id="chaos-error"),
    pytest.param(chaos("dry-run", dry_run=True), chaos_junit, False, id="chaos-dry-run"),
    pytest.param(comparison("pass"), comparison_junit, True, id="compare-pass"),
    pytest.param(comparison("interrupted"), comparison_junit, False, id="compare-interrupted"),
]


@pytest.mark.parametrize(("result", "junit", "judged"), CASES)
def test_only_a_judged_verdict_shows_a_score(result: RunResult | ChaosResult | Comparison, junit: Any,
                                            judged: bool) -> None:
    shown = banner(render_report(result))
    verdict = result.verdict.value
    assert f'data-verdict="{verdict}"' in shown and f">{verdict.replace('-', ' ').upper()}<" in shown
    assert (" score " in shown) is judged, shown
    assert ("score" in properties(junit(result))) is judged
    if not judged:  # never reads as a pass or a fail
        assert "PASS" not in shown and "FAIL" not in shown, shown
        reason = getattr(result, "reason", "")
        assert not reason or reason in shown


@pytest.mark.parametrize("result", [p.values[0] for p in CASES if not p.values[2]],
                         ids=[str(p.id) for p in CASES if not p.values[2]])
def test_a_result_that_was_not_judged_is_never_green_in_junit(result: Any) -> None:
    junit = {RunResult: junit_xml, ChaosResult: chaos_junit, Comparison: comparison_junit}[type(result)]
    suite = ET.fromstring(junit(result)).find("testsuite")
    assert suite is not None
    run_case = [c for c in suite.iter("testcase") if c.get("name") in ("run", "comparison")]
    assert len(run_case) == 1, ET.tostring(suite)
    tag = "skipped" if result.verdict.value == "dry-run" else "error"
    assert run_case[0].find(tag) is not None and suite.get("skipped" if tag == "skipped" else "errors") != "0"


def gameday(verdict: str, score: float, at_s: float) -> GameDayResult:
    started = START + timedelta(seconds=at_s)
    return GameDayResult.model_validate({
        "plan": "p", "plan_path": "p.yaml", "verdict": verdict, "score": score, "categories": {}, "target": "t",
        "profile": "steady", "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=30)).isoformat(), "scenarios": []})


def entry(verdict: str, score: float, at_s: float) -> HistoryEntry:
    at = START + timedelta(seconds=at_s)
    return HistoryEntry(id=f"g{at_s}", kind=HistoryKind.GAMEDAY, name="p", started_at=at, ended_at=at,
                        recorded_at=at, verdict=verdict, score=score, schema_version=1)


def trend_values(html: str) -> list[float]:
    import json

    data = html.split('id="lk-trend-data">')[1].split("</script>")[0]
    return list(json.loads(data)[0]["series"][0]["values"])


def test_the_game_day_trend_leaves_out_what_judged_nothing() -> None:
    """As /ui's trend (loadkit.store.judged): interrupted, errored and dry-run game days are no point."""
    history = [entry("interrupted", 5, 0), entry("error", 0, 100), entry("fail", 40, 200),
               entry("dry-run", 0, 300)]
    assert trend_values(score_trend_html(history, gameday("pass", 62.5, 400))) == [40, 62.5]
    # the current one is no point either when it judged nothing
    assert trend_values(score_trend_html(history, gameday("interrupted", 7, 400))) == [40]


def test_an_interrupted_comparisons_metrics_are_not_judged_either() -> None:
    data = comparison("interrupted").model_dump()
    data["metrics"].append({**data["metrics"][0], "name": "error-rate", "classification": "high", "passed": False,
                            "reason": "worse"})
    c = Comparison.model_validate(data)
    suite = ET.fromstring(comparison_junit(c)).find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("skipped") == "2"
    assert suite.get("errors") == "1"
    for case in suite.iter("testcase"):
        if case.get("name") != "comparison":
            assert case.find("failure") is None and "so far" in (case.find("skipped").get("message") or "")  # type: ignore[union-attr]
    html = render_report(c)
    metrics = html.split("<h2>Metrics</h2>")[1].split("</table>")[0]
    assert 'class="pass"' not in metrics and 'class="fail"' not in metrics and "so far high" in metrics


@pytest.mark.parametrize(("verdict", "shown"), [("interrupted", False), ("error", False), ("dry-run", False),
                                                 ("halted", True), ("fail", True), ("pass", True)])
def test_a_game_days_score_is_shown_only_when_it_judged_something(verdict: str, shown: bool) -> None:
    from io import StringIO

    from rich.console import Console

    from loadkit.report.gameday import render_gameday, render_gameday_html

    g = gameday(verdict, 37.5, 0)
    out = StringIO()
    render_gameday(g, Console(file=out, width=200))
    assert ("resilience score 37.5" in out.getvalue()) is shown, out.getvalue()
    assert ('data-score="37.5"' in render_gameday_html(g)) is shown


def test_the_history_table_shows_no_score_for_what_judged_nothing() -> None:
    from io import StringIO

    from rich.console import Console

    from loadkit.report.history import render_history

    out = StringIO()
    render_history([entry("interrupted", 91.25, 0), entry("fail", 12.5, 100)], Console(file=out, width=200))
    text = out.getvalue()
    assert "91.25" not in text and "12.5" in text, text
