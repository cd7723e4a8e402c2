"""How a run ended decides what it is: a stop the caller asked for (fail fast's breach) or a signal
(Ctrl-C, SIGTERM: interrupted, exit 130). A breach in the last snapshot of a Ctrl-C'd run must not
turn it into a FAIL (review finding 4)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loadkit.analysis import _scored
from loadkit.load.runner import LoadOutcome, LoadPlan, LocustDriver
from loadkit.load.shapes import Stage
from loadkit.models.specs import default_thresholds
from loadkit.models.wire import Snapshot, Stats
from loadkit.sandbox import SandboxProcess
from loadkit.scoring import FailFast

LOCUSTFILE = Path(__file__).resolve().parents[2] / "locustfiles" / "website.py"


def test_a_stop_the_caller_asked_for_is_not_a_signal(healthy_sandbox: SandboxProcess) -> None:
    stop = threading.Event()
    plan = LoadPlan(target=f"{healthy_sandbox.traffic_url}/canary", locustfile=LOCUSTFILE,
                    stages=[Stage(30, 2, 10)])
    outcome = LocustDriver().run(plan, on_snapshot=lambda s: stop.set() if s.elapsed_s >= 1 else None, stop=stop)
    assert outcome.interrupted and outcome.stop_requested
    assert outcome.final.duration_s < 15


def _snap(t: float, n: int, bad: int) -> Snapshot:
    w = Stats(requests=n, failures=bad, status_codes={"200": n - bad, "500": bad})
    return Snapshot(elapsed_s=t, users=5, cpu_pct=1, lag_ms=1, window=w, cumulative=w)


class _CtrlCDriver:
    """The driver seam, fed as Locust feeds it when the user presses Ctrl-C at 12 s of a healthy run:
    the orderly shutdown's final snapshot carries a burst of failures that makes the breach certain."""

    def __init__(self, log_dir: Path | None = None) -> None:
        pass

    def run(self, plan: LoadPlan, on_snapshot: Callable[[Snapshot], None], stop: threading.Event,
            **_: Any) -> LoadOutcome:
        snaps = [_snap(float(s), 100, 0) for s in range(1, 13)]
        for s in snaps:
            on_snapshot(s)
        assert not stop.is_set()
        last = _snap(13.0, 300, 300)  # arrives after SIGINT reached Locust
        on_snapshot(last)
        now = datetime.now(UTC)
        total = Stats(requests=1500, failures=300, status_codes={"200": 1200, "500": 300}, duration_s=13.0)
        return LoadOutcome(started_at=now, ended_at=now, snapshots=[*snaps, last], final=total, endpoints=[],
                           errors=[], histogram="", interrupted=True, notes=[], log_path=None)


def test_ctrl_c_stays_interrupted_when_its_last_snapshot_breaches(healthy_sandbox: SandboxProcess,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scored, "LocustDriver", _CtrlCDriver)
    plan = LoadPlan(target=f"{healthy_sandbox.traffic_url}/canary", locustfile=LOCUSTFILE, stages=[Stage(60, 5, 5)])
    watch = FailFast(default_thresholds(), 100, planned_s=60, every=True, peak_load=5)
    result = _scored.run_scored(plan, default_thresholds(), 100, fail_fast=watch)
    assert watch.stopped is not None  # the last snapshot did breach ...
    assert result.interrupted and result.verdict.value == "interrupted" and result.stopped_early is None
