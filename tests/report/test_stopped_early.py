"""A run stopped early by --abort-on-fail (review finding 7): the breached check FAILs, the others are
not judged on the partial run (skipped, with what they showed), no output shows a score, and the
history stores it without one, so it neither gets a trend nor becomes the next run's trend base."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from loadkit.analysis import build_result
from loadkit.load.runner import LoadOutcome, LoadPlan
from loadkit.load.shapes import Stage
from loadkit.models.results import EarlyStop, RunResult
from loadkit.models.specs import default_thresholds
from loadkit.models.wire import Stats
from loadkit.report import render_report, render_scorecard
from loadkit.report.junit import junit_xml
from loadkit.store import History, HistoryQuery, save_result

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PLAN = LoadPlan(target="http://t", locustfile=Path("lf.py"), stages=[Stage(60, 5, 5)], profile="steady")


def result(stop: EarlyStop | None, at_s: float = 0.0, errors: int = 30) -> RunResult:
    stats = Stats(requests=165, failures=errors, status_codes={"200": 165 - errors, "503": errors}, duration_s=3.5,
                  p99_ms=20.0, p50_ms=5.0, p95_ms=10.0, max_ms=25.0, error_rate_pct=100 * errors / 165,
                  success_rate_pct=100 * (165 - errors) / 165)
    outcome = LoadOutcome(started_at=START + timedelta(seconds=at_s), ended_at=START + timedelta(seconds=at_s + 4),
                          snapshots=[], final=stats, endpoints=[], errors=[], histogram="", interrupted=False,
                          notes=[], log_path=None)
    return build_result(PLAN, outcome, default_thresholds(), 10, early_stop=stop)


STOP = EarlyStop(at_s=3.5, planned_s=60, check="error-rate", reason="error-rate: 30 of 165 requests ...",
                 confidence=1.0)


def test_the_other_checks_are_not_judged_and_nothing_shows_a_score() -> None:
    stopped = result(STOP)
    by_name = {c.name: c for c in stopped.checks}
    assert by_name["error-rate"].status.value == "failed" and "stopped the run at 3.5s" in by_name["error-rate"].reason
    for name in ("request-success-rate", "request-duration"):
        assert by_name[name].status.value == "skipped"
        assert by_name[name].reason.startswith("not judged: the run stopped at 3.5s of 60s; so far")
    assert stopped.verdict.value == "fail" and not stopped.scored
    console = Console(file=io.StringIO(), width=200)
    render_scorecard(stopped, console)
    head = console.file.getvalue().splitlines()[0]  # type: ignore[attr-defined]
    assert "not scored (stopped early)" in head and " score " not in head
    assert 'name="score"' not in junit_xml(stopped)
    assert " score " not in render_report(stopped).split('<div class="banner', 1)[1].split("</div>", 1)[0]
    assert result(None).scored and 'name="score"' in junit_xml(result(None, errors=0))


def test_history_keeps_a_stopped_run_out_of_the_trend(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    save_result("run", result(None, at_s=0, errors=0), db)  # a judged run: the trend base
    stopped = save_result("run", result(STOP, at_s=100), db)
    later = save_result("run", result(None, at_s=200, errors=0), db)
    assert stopped.score is None
    history = History(db)
    try:
        rows = {e.id: e for e in history.entries(HistoryQuery())}
    finally:
        history.close()
    assert rows[stopped.id].trend is None and rows[stopped.id].verdict == "fail"
    assert rows[later.id].previous_id not in (None, stopped.id) and rows[later.id].trend == 0
