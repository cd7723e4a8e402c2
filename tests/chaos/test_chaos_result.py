"""Scoring a chaos run from synthetic load: one stamped window a second, no sandbox, no clock."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console

from loadkit.chaos.live import Stamped
from loadkit.chaos.models import ChaosResult
from loadkit.chaos.result import ChaosInputs, Timeline, build_chaos_result
from loadkit.load._window import Window
from loadkit.models.results import Check, CheckStatus, RunResult, Verdict
from loadkit.models.specs import Threshold, ThresholdRange, default_chaos_thresholds, default_thresholds
from loadkit.models.wire import Snapshot, Stats
from loadkit.report.chaos import chaos_junit, render_chaos, render_chaos_html
from loadkit.report.html import render_html

T0 = 1_000.0  # the load starts; the fault (when there is one) at T0 + 10
FAULT = T0 + 10
RECOVERY_ONLY = [Threshold(name="recovery-time", thresholdRange=ThresholdRange(max=120))]
HYPOTHESIS = {"title": "healthy", "probes": []}
METHOD = {"type": "action", "name": "fault", "provider": {"type": "python", "module": "loadkit.chaos.sandbox",
                                                          "func": "add_delay"}}
Shape = Callable[[float], dict[str, Any]]


def second(at: float, requests: int = 100, errors: int = 0, latency_ms: float = 20.0, users: int = 10) -> Stamped:
    """One Locust snapshot: `requests` in the second before `at`, the first `errors` of them 503s."""
    w = Window()
    for i in range(requests):
        failed = i < errors
        w.record("GET", "/", latency_ms, 503 if failed else 200, "HTTP 503" if failed else None)
    stats = Stats.model_validate(w.summary(1.0))
    return Stamped(at, Snapshot(elapsed_s=at - T0, users=users, cpu_pct=0.0, lag_ms=0.0, window=stats,
                                window_histogram=w.encoded_histogram(), cumulative=stats))


def windows(until: float, shape: Shape = lambda _at: {}) -> list[Stamped]:
    """A window every second from T0 + 1 to `until`; `shape(at)` sets that second's load."""
    return [second(T0 + s, **shape(T0 + s)) for s in range(1, int(until - T0) + 1)]


def journal(status: str = "completed", before: bool | None = True, after: bool | None = True,
            action: str | None = "succeeded", rollbacks: int = 1) -> dict[str, Any]:
    run = [] if action is None else [{"activity": {"type": "action", "name": "fault"}, "status": action,
                                      "exception": None if action == "succeeded" else ["ActivityFailed: refused"]}]
    states = {"before": None if before is None else {"steady_state_met": before},
              "after": None if after is None else {"steady_state_met": after}}
    return {"status": status, "deviated": after is False, "steady_states": states, "run": run,
            "rollbacks": [{"status": "succeeded"}] * rollbacks}


def scenario(observe_s: float, shape: Shape = lambda _at: {}, cooldown_s: float = 10.0, **changes: Any) -> ChaosInputs:
    """A fault injected at FAULT, removed (rollbacks end) `observe_s` later, then a cool-down."""
    removed = FAULT + observe_s
    end = removed + cooldown_s
    base = ChaosInputs(
        experiment={"title": "t", "steady-state-hypothesis": HYPOTHESIS, "method": [METHOD],
                    "rollbacks": [{"name": "undo"}]},
        journal=journal(), windows=windows(end, shape),
        timeline=Timeline(load_start=T0, load_end=end, fault_start=FAULT, method_end=removed - 0.1,
                          rollbacks_end=removed),
        load_thresholds=default_thresholds(), chaos_thresholds=default_chaos_thresholds(), min_samples=100,
        target="http://canary", profile="steady", path="x.yaml", dry_run=False, leftovers=[], journal_path=None,
        recovery_window_s=5.0,
    )
    return replace(base, **changes)


def by_name(result: ChaosResult) -> dict[str, Check]:
    return {c.name: c for c in result.checks}


def pod_kill_burst(at: float) -> dict[str, Any]:
    """30 % errors for the 2 seconds after the kill; otherwise healthy."""
    return {"errors": 30} if FAULT < at <= FAULT + 2 else {}


@pytest.mark.parametrize("observe_s", [12, 60], ids=["observed-12s", "observed-60s"])
def test_a_pod_kill_burst_fails_its_worst_window_however_long_it_is_observed(observe_s: float) -> None:
    result = build_chaos_result(scenario(observe_s, pod_kill_burst, chaos_thresholds=RECOVERY_ONLY))
    checks = by_name(result)
    worst = checks["request-success-rate (worst 5s)"]
    assert worst.status is CheckStatus.FAILED and worst.observed == 88.0  # 60 errors in 500 requests
    assert checks["error-rate (worst 5s)"].observed == 12.0
    assert result.verdict is Verdict.FAIL
    assert result.availability_worst_pct == 88.0
    assert result.detect_time_s == 5.0  # the end of the first 5 s window after the kill
    assert result.recovery_time_s == 0.0  # healthy again well before the removal
    whole = checks["request-success-rate"]
    assert whole.passed is (observe_s == 60)  # the burst averages away over a minute (99.02 %): why "worst"


def test_the_same_burst_gives_the_same_worst_window_verdict() -> None:
    short, long = (by_name(build_chaos_result(scenario(s, pod_kill_burst))) for s in (12, 60))
    for name in ("request-success-rate (worst 5s)", "error-rate (worst 5s)", "request-duration (worst 5s)"):
        assert (short[name].status, short[name].observed) == (long[name].status, long[name].observed), name


def slow_for_40s(at: float) -> dict[str, Any]:
    """600 ms for 40 s, and for one second after the removal (requests in flight)."""
    return {"latency_ms": 600.0} if FAULT < at <= FAULT + 41 else {}


def test_a_long_fault_recovers_a_second_after_its_removal() -> None:
    result = build_chaos_result(scenario(40, slow_for_40s))
    checks = by_name(result)
    assert result.recovery_time_s == 1.0  # counted from the removal, not from the fault's start (41 s)
    assert checks["recovery-time"].status is CheckStatus.PASSED
    assert checks["request-duration"].passed is False and (checks["request-duration (worst 5s)"].observed or 0) >= 600
    assert result.detect_time_s == 5.0
    assert result.fault is not None and result.fault.removed_at is not None
    assert result.fault.removed_at.timestamp() == FAULT + 40
    assert result.availability_pct == 100.0 and result.verdict is Verdict.FAIL


def test_a_fault_that_never_recovers_fails_recovery_when_the_load_ran_long_enough() -> None:
    result = build_chaos_result(scenario(10, lambda at: {"latency_ms": 600.0} if at > FAULT else {}))
    recovery = by_name(result)["recovery-time"]
    assert result.recovery_time_s is None
    assert recovery.status is CheckStatus.FAILED and recovery.reason.startswith("did not recover")


def test_too_little_load_after_the_removal_skips_recovery() -> None:
    result = build_chaos_result(scenario(10, lambda at: {"latency_ms": 600.0} if at > FAULT else {},
                                         cooldown_s=2.0))
    recovery = by_name(result)["recovery-time"]
    assert recovery.status is CheckStatus.SKIPPED and "less than a whole 5s recovery window" in recovery.reason
    assert result.verdict is Verdict.FAIL


def test_a_fault_that_was_never_injected_is_an_error() -> None:
    inputs = scenario(10, journal=journal(action="failed"),
                      timeline=Timeline(load_start=T0, load_end=T0 + 30, rollbacks_end=T0 + 20))
    result = build_chaos_result(inputs)
    assert result.verdict is Verdict.ERROR and result.fault is None
    assert "never injected" in result.reason and "fault: refused" in result.reason
    assert "ActivityFailed" not in result.reason  # the message, not chaoslib's class names
    assert result.reason in result.warnings
    checks = by_name(result)
    assert checks["method"].status is CheckStatus.FAILED
    assert checks["availability"].status is CheckStatus.SKIPPED
    assert checks["recovery-time"].status is CheckStatus.SKIPPED


def test_an_aborted_experiment_is_an_error() -> None:
    result = build_chaos_result(scenario(10, journal=journal(status="aborted", after=None)))
    assert result.verdict is Verdict.ERROR and "aborted" in result.reason


def test_an_interrupted_run_is_interrupted_and_its_after_steady_state_skipped() -> None:
    slow = scenario(8, lambda at: {"latency_ms": 600.0} if at > FAULT else {}, cooldown_s=0.5,
                    journal=journal(status="interrupted", after=None))
    result = build_chaos_result(slow)
    assert result.verdict is Verdict.INTERRUPTED and result.interrupted is True
    checks = by_name(result)
    after = checks["steady-state-after"]
    assert after.status is CheckStatus.SKIPPED and after.passed is False
    assert after.reason == "not checked after the method: the run was interrupted first"
    recovery = checks["recovery-time"]
    assert recovery.status is CheckStatus.SKIPPED and "interrupted before a recovery" in recovery.reason


def test_interrupted_before_the_method_skips_method_and_rollbacks() -> None:
    inputs = scenario(5, journal=journal(status="interrupted", after=None, action=None, rollbacks=0),
                      timeline=Timeline(load_start=T0, load_end=T0 + 12))
    result = build_chaos_result(inputs)
    assert result.verdict is Verdict.INTERRUPTED  # not an error: the signal is why nothing was injected
    checks = by_name(result)
    assert checks["method"].status is CheckStatus.SKIPPED and checks["rollbacks"].status is CheckStatus.SKIPPED


def test_thin_load_skips_the_worst_window_and_never_passes() -> None:
    result = build_chaos_result(scenario(12, lambda _at: {"requests": 1}, min_samples=10))
    checks = by_name(result)
    assert checks["request-success-rate"].passed  # 23 requests over the fault window: enough for min_samples 10
    worst = checks["request-success-rate (worst 5s)"]
    assert worst.status is CheckStatus.SKIPPED and worst.passed is False
    assert worst.reason.startswith("thin load") and "at most 5" in worst.reason
    assert result.verdict is Verdict.FAIL and result.score < 100
    assert "not judged (skipped)" in result.reason


def test_a_worst_window_is_not_passed_when_thinner_windows_went_unjudged() -> None:
    """Slow and thin during the fault, loaded again only around its removal: the one window that
    holds enough requests is the healthiest, so it cannot stand for the worst."""
    def shape(at: float) -> dict[str, Any]:
        if FAULT < at <= FAULT + 7:
            return {"requests": 1, "latency_ms": 2000.0}
        return {"requests": 1} if at <= FAULT + 11 else {"requests": 40}

    worst = by_name(build_chaos_result(scenario(12, shape, min_samples=5)))["request-duration (worst 5s)"]
    assert worst.status is CheckStatus.SKIPPED and worst.passed is False, worst
    assert worst.reason.startswith("thin load") and "the worst window is not known" in worst.reason


def test_a_healthy_run_passes_and_every_check_is_judged() -> None:
    result = build_chaos_result(scenario(12))
    assert result.verdict is Verdict.PASS and result.score == 100, result.reason
    assert result.detect_time_s is None and result.recovery_time_s == 0.0
    assert [c.name for c in result.checks][:3] == ["steady-state-before", "steady-state-after", "method"]


@pytest.mark.parametrize(("experiment", "journal_", "steady_after_at", "expected"), [
    ({"title": "t"}, journal(before=None, after=None), None, {}),
    ({"title": "t", "steady-state-hypothesis": HYPOTHESIS}, journal(), None,
     {"steady-state-before": (CheckStatus.PASSED, "before the fault was met"),
      "steady-state-after": (CheckStatus.PASSED, "steady state after the method was met")}),
    ({"title": "t", "steady-state-hypothesis": HYPOTHESIS}, journal(), FAULT + 25,
     {"steady-state-before": (CheckStatus.PASSED, "before the fault was met"),
      "steady-state-after": (CheckStatus.PASSED, "after the rollbacks and the cool-down was met")}),
    ({"title": "t", "steady-state-hypothesis": HYPOTHESIS}, journal(before=False, after=None, action=None), None,
     {"steady-state-before": (CheckStatus.FAILED, "NOT met"),
      "steady-state-after": (CheckStatus.SKIPPED, "the steady state before was not met")}),
], ids=["no-hypothesis", "after-the-method", "after-the-cool-down", "before-not-met"])
def test_steady_state_checks(experiment: dict[str, Any], journal_: dict[str, Any], steady_after_at: float | None,
                             expected: dict[str, tuple[CheckStatus, str]]) -> None:
    base = scenario(12)
    timeline = replace(base.timeline, steady_after_at=steady_after_at)
    result = build_chaos_result(replace(base, experiment={**experiment, "method": [METHOD],
                                                          "rollbacks": [{"name": "undo"}]},
                                        journal=journal_, timeline=timeline))
    gates = {c.name: c for c in result.checks if c.metric == "steady-state"}
    assert set(gates) == set(expected)
    for name, (status, words) in expected.items():
        assert gates[name].status is status and words in gates[name].reason, gates[name]


def test_a_dry_run_judges_the_worst_window_of_the_whole_run() -> None:
    inputs = scenario(10, dry_run=True,  # chaoslib records dry actions and rollbacks as succeeded
                      timeline=Timeline(load_start=T0, load_end=T0 + 30))
    result = build_chaos_result(inputs)
    # nothing was injected, so nothing was tested: a dry run is never a pass, and has no score
    assert result.verdict is Verdict.DRY_RUN and result.score == 0, result.reason
    assert "no fault was injected" in result.reason
    assert by_name(result)["request-duration (worst 5s)"].status is CheckStatus.PASSED
    suite = junit(result)  # never green in CI either: the run is a skipped testcase, and no score
    run = next(c for c in suite.iter("testcase") if c.get("name") == "run")
    assert run.find("skipped") is not None and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert "score" not in {p.get("name") for p in suite.iter("property")}
    html = render_chaos_html(result)
    assert 'data-verdict="dry-run"' in html and "PASS" not in html.split('class="banner')[1].split("</div>")[0]
    assert " score " not in html.split('class="banner')[1].split("</div>")[0]


def test_a_dry_run_whose_probes_saw_failures_is_still_a_dry_run() -> None:
    inputs = scenario(10, lambda _at: {"requests": 100, "errors": 50}, dry_run=True,
                      timeline=Timeline(load_start=T0, load_end=T0 + 30))
    result = build_chaos_result(inputs)
    assert result.verdict is Verdict.DRY_RUN and result.score == 0, result.reason
    assert "failures even so" in result.reason


def junit(result: ChaosResult) -> ET.Element:
    suite = ET.fromstring(chaos_junit(result)).find("testsuite")
    assert suite is not None
    return suite


def test_junit_marks_skipped_checks_and_an_error_verdict() -> None:
    thin = junit(build_chaos_result(scenario(12, lambda _at: {"requests": 1}, min_samples=10)))
    skipped = {c.get("name"): element.get("message") or "" for c in thin.iter("testcase")
               if (element := c.find("skipped")) is not None}
    assert skipped["request-success-rate (worst 5s)"].startswith("thin load")
    assert thin.get("skipped") == str(len(skipped))
    # a FAIL made only of skipped checks: never green in CI (the exit code is 1)
    failures = [c.get("name") for c in thin.iter("testcase") if c.find("failure") is not None]
    assert not [c for c in failures if c != "run"], "the scenario must fail on skipped checks alone"
    assert failures == ["run"] and thin.get("failures") == "1" and thin.get("errors") == "0"

    never = junit(build_chaos_result(scenario(10, journal=journal(action="failed"),
                                              timeline=Timeline(load_start=T0, load_end=T0 + 30))))
    run = next(c for c in never.iter("testcase") if c.get("name") == "run")
    error = run.find("error")
    assert error is not None and "never injected" in (error.get("message") or "")
    assert never.get("errors") == "1"


def test_junit_marks_an_interrupted_run() -> None:
    suite = junit(build_chaos_result(scenario(5, journal=journal(status="interrupted", after=None))))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["interrupted"] == "true" and props["verdict"] == "interrupted"
    run = next(c for c in suite.iter("testcase") if c.get("name") == "run")
    assert run.find("error") is not None and suite.get("errors") == "1"


def test_the_scorecard_says_skip_and_error() -> None:
    console = Console(record=True, width=200)
    render_chaos(build_chaos_result(scenario(10, journal=journal(action="failed"),
                                             timeline=Timeline(load_start=T0, load_end=T0 + 30))), console)
    text = console.export_text()
    assert "ERROR: the fault was never injected" in text and "SKIP" in text


def test_html_never_shows_a_skipped_check_green() -> None:
    skipped = Check(name="x (worst 5s)", metric="request-success-rate", observed=None, min=99, max=None,
                    status=CheckStatus.SKIPPED, reason="thin load")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    run = RunResult(verdict=Verdict.FAIL, score=0, target="t", profile="p", locustfile="l", started_at=start,
                    ended_at=start, stats=Stats(), checks=[skipped])
    html = render_html(run)
    assert '<span class="skip">SKIP</span>' in html and '<span class="pass">' not in html


CHECK = {"name": "x", "metric": "x", "observed": None, "min": None, "max": None, "reason": "r"}


@pytest.mark.parametrize(("given", "status", "passed"), [
    ({"passed": True}, CheckStatus.PASSED, True),
    ({"passed": False}, CheckStatus.FAILED, False),
    ({"status": "skipped"}, CheckStatus.SKIPPED, False),
    ({"status": "passed"}, CheckStatus.PASSED, True),
    ({"status": "failed", "passed": False}, CheckStatus.FAILED, False),
], ids=["passed", "failed", "skipped", "status-passed", "both"])
def test_check_status_and_passed_follow_each_other(given: dict[str, Any], status: CheckStatus,
                                                   passed: bool) -> None:
    check = Check.model_validate({**CHECK, **given})
    assert (check.status, check.passed) == (status, passed)
    assert Check.model_validate_json(check.model_dump_json()) == check


@pytest.mark.parametrize(("given", "words"), [
    ({"status": "skipped", "passed": True}, "a skipped check cannot have passed"),
    ({"status": "failed", "passed": True}, "contradicts"),
    ({}, "give status"),
], ids=["skipped-and-passed", "failed-and-passed", "neither"])
def test_check_refuses_a_contradiction(given: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Check.model_validate({**CHECK, **given})


def test_an_empty_method_is_an_error_that_says_so() -> None:
    inputs = scenario(10, journal=journal(action=None), timeline=Timeline(load_start=T0, load_end=T0 + 30))
    result = build_chaos_result(replace(inputs, experiment={**inputs.experiment, "method": []}))
    assert result.verdict is Verdict.ERROR
    assert "the method is empty" in by_name(result)["method"].reason and "stopped first" not in result.reason


def test_a_failed_action_reads_as_its_message_once() -> None:
    stacked = "chaoslib.exceptions.ActivityFailed: ActivityFailed: chaoslib.exceptions.ActivityFailed: the API said no"
    failed = journal(action="failed")
    failed["run"][0]["exception"] = ["Traceback ...", stacked]
    result = build_chaos_result(scenario(10, journal=failed, timeline=Timeline(load_start=T0, load_end=T0 + 30)))
    reason = by_name(result)["method"].reason
    assert "the API said no" in reason and "ActivityFailed" not in reason, reason
