"""What counts as passed, failed or within thresholds: table-driven, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loadkit.models.results import Verdict
from loadkit.models.specs import default_thresholds
from loadkit.models.wire import Snapshot, Stats
from loadkit.webhook.hooks import current, has_failed, has_passed, is_promotable, is_within
from loadkit.webhook.models import HookKind, LiveState, LiveVerdict, RunRecord, RunStatus
from loadkit.webhook.runs import live_state
from loadkit.webhook.store import Store

T0 = datetime(2026, 11, 29, tzinfo=UTC)


def run(status: RunStatus, verdict: Verdict | None = None, live: LiveVerdict | None = None,
        hook: HookKind = HookKind.ROLLOUT, profile: str = "steady", age_s: int = 0, run_id: str = "r",
        continuous: bool = False) -> RunRecord:
    return RunRecord(id=run_id, namespace="bruno", name="bruno-site", checksum="c", profile=profile, hook=hook,
                     thresholds="default", target="http://t", status=status, verdict=verdict, plan_key=profile,
                     created_at=T0 - timedelta(seconds=age_s), continuous=continuous,
                     live=LiveState(verdict=live) if live else None)


@pytest.mark.parametrize(
    ("record", "passed", "failed", "within", "promotable"),
    [
        pytest.param(run(RunStatus.COMPLETED, Verdict.PASS), True, False, True, True, id="completed-pass"),
        pytest.param(run(RunStatus.COMPLETED, Verdict.FAIL), False, True, False, False, id="completed-fail"),
        pytest.param(run(RunStatus.COMPLETED), False, False, False, False,
                     id="too-few-samples"),  # too few samples: not judged
        pytest.param(run(RunStatus.STOPPED), False, False, False, False, id="stopped"),
        pytest.param(run(RunStatus.STOPPED, Verdict.FAIL), False, False, False, False,
                     id="stopped-fail"),  # a stop is never judged
        pytest.param(run(RunStatus.SUPERSEDED), False, False, False, False, id="superseded"),
        pytest.param(run(RunStatus.INTERRUPTED), False, False, False, False, id="interrupted"),
        pytest.param(run(RunStatus.ERROR), False, False, False, False, id="error"),
        pytest.param(run(RunStatus.RUNNING), False, False, False, False, id="running-starting"),
        pytest.param(run(RunStatus.RUNNING, live=LiveVerdict.COLLECTING), False, False, False, False,
                     id="running-collecting"),
        pytest.param(run(RunStatus.RUNNING, live=LiveVerdict.PASS), False, False, True, False, id="running-passing"),
        pytest.param(run(RunStatus.RUNNING, live=LiveVerdict.PASS, continuous=True), False, False, True, True,
                     id="continuous-passing"),
        pytest.param(run(RunStatus.RUNNING, live=LiveVerdict.COLLECTING, continuous=True), False, False, False, False,
                     id="continuous-collecting"),
        pytest.param(run(RunStatus.RUNNING, live=LiveVerdict.FAIL), False, True, False, False, id="running-breached"),
    ],
)
def test_run_judgements(record: RunRecord, passed: bool, failed: bool, within: bool, promotable: bool) -> None:
    got = (has_passed(record), has_failed(record), is_within(record), is_promotable(record))
    assert got == (passed, failed, within, promotable)


def test_current_is_the_newest_run_of_each_hook_and_plan() -> None:
    runs = [  # newest first, as the store returns them
        run(RunStatus.COMPLETED, Verdict.PASS, profile="steady", run_id="a"),
        run(RunStatus.COMPLETED, Verdict.FAIL, profile="quick", age_s=5, run_id="b"),
        run(RunStatus.COMPLETED, Verdict.FAIL, profile="steady", age_s=10, run_id="c"),
        run(RunStatus.COMPLETED, Verdict.PASS, hook=HookKind.PRE_ROLLOUT, profile="steady", age_s=20, run_id="d"),
    ]
    assert [r.id for r in current(runs)] == ["a", "b", "d"]


def test_store_keeps_verdicts_interrupts_runs_and_prunes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "s.db")
    finished = run(RunStatus.RUNNING, run_id="old")
    store.insert_run(finished.model_copy(update={"created_at": T0 - timedelta(days=40)}))
    store.finish_run("old", RunStatus.COMPLETED, verdict=Verdict.PASS, score=100.0, reason="ok", result=None)
    store.insert_run(run(RunStatus.RUNNING, run_id="flying"))
    assert store.verdict_counts() == {("completed", "pass"): 1}  # running runs are not counted
    assert store.interrupt_unfinished("restart") == 1
    assert store.verdict_counts() == {("completed", "pass"): 1, ("interrupted", ""): 1}
    flying = store.get_run("flying")
    assert flying is not None and flying.status is RunStatus.INTERRUPTED and flying.verdict is None
    assert store.prune(T0 - timedelta(days=30)) == 1
    assert store.get_run("old") is None and store.get_run("flying") is not None
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert reopened.get_run("flying") is not None


def snapshot(requests: int, failures: int = 0, refused: int = 0) -> Snapshot:
    kinds = {"http_5xx": failures, **({"refused": refused} if refused else {})}
    codes = {"200": requests - failures - refused, "503": failures, "0": refused}
    stats = Stats(requests=requests, failures=failures + refused, rps=10.0, p50_ms=5.0, p95_ms=9.0, p99_ms=12.0,
                  success_rate_pct=100.0 * (requests - failures - refused) / requests,
                  error_rate_pct=100.0 * (failures + refused) / requests, status_codes=codes,
                  failures_by_kind={k: v for k, v in kinds.items() if v})
    return Snapshot(elapsed_s=60.0, users=10, cpu_pct=1.0, lag_ms=0.0, window=stats, cumulative=stats)


@pytest.mark.parametrize(("snap", "recent", "decisive", "verdict", "reason"), [
    pytest.param(snapshot(1000), [], "", LiveVerdict.PASS, "every threshold met so far", id="passing"),
    pytest.param(snapshot(20), [], "", LiveVerdict.COLLECTING, "collecting: 20 of 50", id="collecting"),
    pytest.param(
        snapshot(1000, failures=5),
        ["error-rate: 5% of 200 requests in the last 10s failed"],
        "",
        LiveVerdict.FAIL,
        "in the last 10s",
        id="late-breach-in-the-window"
    ),  # the whole run passes: a long healthy history must not hide a fresh breach
    pytest.param(
        snapshot(1000, failures=5),
        [],
        "error-rate: at least 2% of 300 requests failed",
        LiveVerdict.FAIL,
        "at least 2%",
        id="decisive"
    ),
    pytest.param(snapshot(1000, refused=3), [], "", LiveVerdict.NOT_JUDGED, "left the target", id="left-the-target"),
])
def test_the_live_verdict_sees_the_recent_window_and_decisive_breaches(
        snap: Snapshot, recent: list[str], decisive: str, verdict: LiveVerdict, reason: str) -> None:
    state = live_state(snap, default_thresholds(), 50, decisive, recent)
    assert state.verdict is verdict and reason in state.reason, state.reason
