"""A forked Locust process of --processes that is lost (no heartbeat, or no final window at the stop) leaves
its load uncounted: the run is never a pass, and says why. Pure: build_result on the outcome Locust gives."""

from __future__ import annotations

from datetime import UTC, datetime

from loadkit.analysis import build_result
from loadkit.load._distributed import FORKED_PROCESS_LOST
from loadkit.load.runner import LoadOutcome, LoadPlan
from loadkit.load.shapes import Stage
from loadkit.models.specs import default_thresholds
from loadkit.models.wire import Snapshot, Stats, WorkerEvent, WorkerEventKind
from tests.conftest import ROOT

NOTE = ("a Locust process (--processes) sent no final window within 11s of the stop: its last second of load "
        "is not counted")


def _outcome(workers: list[WorkerEvent]) -> LoadOutcome:
    total = Stats(requests=3000, status_codes={"200": 3000}, success_rate_pct=100.0, error_rate_pct=0.0,
                  p50_ms=5.0, p95_ms=9.0, p99_ms=12.0, max_ms=20.0, duration_s=30.0, rps=100.0)
    snaps = [Snapshot(elapsed_s=float(t), users=10, cpu_pct=5, lag_ms=1, window=Stats(requests=100), cumulative=total)
             for t in range(1, 31)]
    now = datetime.now(UTC)
    return LoadOutcome(started_at=now, ended_at=now, snapshots=snaps, final=total, endpoints=[], errors=[],
                       histogram="", interrupted=False, notes=[NOTE] if workers else [], log_path=None,
                       workers=workers)


def _result(workers: list[WorkerEvent]):  # type: ignore[no-untyped-def]
    plan = LoadPlan(target="http://127.0.0.1:1", locustfile=ROOT / "locustfiles" / "website.py",
                    stages=[Stage(30, 10, 10)], processes=2)
    return build_result(plan, _outcome(workers), default_thresholds(), 100)


def test_a_healthy_processes_run_passes() -> None:
    assert _result([]).verdict.value == "pass"


def test_a_lost_forked_process_is_never_a_pass() -> None:
    lost = WorkerEvent(event=WorkerEventKind.LOST, node="host_abc", at_s=29.0, detected_s=30.0,
                       reason=FORKED_PROCESS_LOST)
    result = _result([lost])
    assert result.verdict.value == "fail"
    assert result.generator.load_short == "1 of 2 forked load generator processes lost"
    assert NOTE in result.warnings and any(w.startswith("not a pass: the load that arrived is short") for w in
                                           result.warnings)
    assert not any("worker host_abc" in w for w in result.warnings)  # the note says it, once
