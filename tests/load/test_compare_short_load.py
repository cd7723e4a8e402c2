""""a lost forked process makes the load short, never a pass" (commit 10f7dd5) holds only for
the canary's own run. A compare check (`loadkit run --baseline`, the webhook's {baseline: primary}) and
`loadkit compare` also judge a second run, the baseline's, and nothing reads that run's worker events:
its lost forked process (or lost --workers worker) is silent (not even a warning) and the verdict can
be PASS on a baseline that ran half its load. Reproduced for real with two local servers:

    loadkit run --target http://127.0.0.1:A --baseline http://127.0.0.1:B --config cmp.yaml \\
        -f lf.py --processes 2 -u 4 -t 15s -o json      # and SIGKILL one of B's forked Locust processes
    -> exit 0, verdict pass, vs-primary passed on 260 baseline vs 488 canary requests, no warning

    loadkit compare --target ... --baseline ... --processes 2 -u 6 -t 15s   # kill one canary process
    -> exit 0, verdict pass (canary 465 requests, baseline 864): only a warning note

These tests give run_scored / compare_scored the outcomes Locust gave in those runs (a fake of the
engine: they are unit tests of the caller)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from loadkit.analysis import _scored
from loadkit.analysis._server_side import ServerSide
from loadkit.load._distributed import FORKED_PROCESS_LOST
from loadkit.load._window import new_histogram
from loadkit.load.runner import LoadOutcome, LoadPlan
from loadkit.load.shapes import Stage
from loadkit.models.specs import CompareSpec, Threshold
from loadkit.models.wire import Snapshot, Stats, WorkerEvent, WorkerEventKind
from tests.conftest import ROOT

CANARY, BASELINE = "http://127.0.0.1:18783", "http://127.0.0.1:18784"
NOTE = ("a Locust process (--processes) was lost about 6s into the run (no heartbeat): its load until then is "
        "counted")


def _outcome(requests: int, seed: int, lost: bool) -> LoadOutcome:
    rng = random.Random(seed)
    hist = new_histogram()
    for _ in range(requests):
        hist.record_value(int(rng.gauss(21_000, 400)))  # ~21 ms, the same on both sides
    total = Stats(requests=requests, status_codes={"200": requests}, success_rate_pct=100.0, error_rate_pct=0.0,
                  p50_ms=21.0, p95_ms=22.0, p99_ms=23.0, max_ms=25.0, duration_s=15.0, rps=requests / 15)
    snaps = [Snapshot(elapsed_s=float(t), users=4, cpu_pct=5, lag_ms=1, window=Stats(requests=requests // 15),
                      cumulative=total) for t in range(1, 16)]
    workers = [WorkerEvent(event=WorkerEventKind.LOST, node="vm_abc", at_s=7.0, detected_s=7.0,
                           reason=FORKED_PROCESS_LOST)] if lost else []
    now = datetime.now(UTC)
    return LoadOutcome(started_at=now, ended_at=now, snapshots=snaps, final=total, endpoints=[], errors=[],
                       histogram=hist.encode().decode("ascii"), interrupted=False,
                       notes=[NOTE] if lost else [], log_path=None, workers=workers)


def _plan() -> LoadPlan:
    return LoadPlan(target=CANARY, locustfile=ROOT / "locustfiles" / "website.py", stages=[Stage(15, 4, 4)],
                    processes=2)


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> dict[str, LoadOutcome]:
    outcomes: dict[str, LoadOutcome] = {}
    monkeypatch.setattr(_scored, "preflight", lambda *_a, **_k: None)
    monkeypatch.setattr(_scored, "run_pair", lambda *_a, **_k: (outcomes["canary"], outcomes["baseline"]))
    return outcomes


def test_healthy_pair_passes(pair: dict[str, LoadOutcome]) -> None:
    """The control: with nothing lost, the same numbers pass (so the tests below fail for the loss alone)."""
    pair["canary"], pair["baseline"] = _outcome(488, 1, lost=False), _outcome(488, 2, lost=False)
    thresholds = [Threshold(name="vs-primary", compare=CompareSpec(baseline="primary", max_degradation_pct=5))]
    result = _scored.run_scored(_plan(), thresholds, 100, server=ServerSide(baseline_url=BASELINE))
    assert result.verdict.value == "pass"


def test_a_compare_check_on_a_baseline_that_lost_a_process_is_never_a_pass(pair: dict[str, LoadOutcome]) -> None:
    pair["canary"], pair["baseline"] = _outcome(488, 1, lost=False), _outcome(260, 2, lost=True)
    thresholds = [Threshold(name="vs-primary", compare=CompareSpec(baseline="primary", max_degradation_pct=5))]
    result = _scored.run_scored(_plan(), thresholds, 100, server=ServerSide(baseline_url=BASELINE))
    assert result.verdict.value != "pass", result.warnings  # HEAD: pass, and no warning at all
    assert any("baseline" in w and "lost" in w for w in result.warnings), result.warnings  # HEAD: no warning at all


def test_loadkit_compare_with_a_lost_canary_process_is_never_a_pass(pair: dict[str, LoadOutcome]) -> None:
    pair["canary"], pair["baseline"] = _outcome(465, 1, lost=True), _outcome(864, 2, lost=False)
    comparison, interrupted = _scored.compare_scored(_plan(), BASELINE, CompareSpec(baseline=BASELINE))
    assert not interrupted
    assert comparison.verdict.value != "pass", comparison.reason  # HEAD: pass (exit 0), the loss only a note
