"""The live line says which figures are the last window's and which are the whole run's."""

from __future__ import annotations

from rich.console import Console

from loadkit.cli._progress import Progress
from loadkit.models.specs import Threshold
from loadkit.models.wire import Snapshot, Stats


def snapshot(window_p99: float, run_error_pct: float) -> Snapshot:
    window = Stats(requests=20, rps=20.0, p99_ms=window_p99, duration_s=1.0, error_rate_pct=0.0,
                   success_rate_pct=100.0)
    run = Stats(requests=400, failures=8, rps=19.0, p99_ms=12.0, duration_s=20.0, error_rate_pct=run_error_pct,
                success_rate_pct=100.0 - run_error_pct)
    return Snapshot(elapsed_s=20.0, users=5, cpu_pct=10.0, lag_ms=1.0, window=window, cumulative=run)


def test_the_live_line_labels_window_and_run_figures() -> None:
    thresholds = [Threshold.model_validate({"name": "error-rate", "thresholdRange": {"max": 1}})]
    line = Progress(Console(), 60.0, thresholds, min_samples=100).line(snapshot(950.0, 2.0)).plain
    assert "last 1s: rps 20 p99 950 ms" in line, line  # now: the last window
    assert "run: errors 2% requests 400" in line, line  # so far: the whole run
    assert line.endswith("failing: error-rate"), line  # judged on the whole run, not the window


def test_an_open_model_line_shows_the_rate_in_flight_and_dropped() -> None:
    snap = snapshot(950.0, 0.0)
    snap = snap.model_copy(update={"rate": 100.0, "users": 12,
                                   "cumulative": snap.cumulative.model_copy(update={"dropped_iterations": 3})})
    line = Progress(Console(), 60.0, [], min_samples=100).line(snap).plain
    assert "rate 100/s in flight 12 dropped 3" in line and "users" not in line, line
