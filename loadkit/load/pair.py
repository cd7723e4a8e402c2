"""The same profile against two targets at once (canary and baseline): two Locust processes.

The canary's run is the caller's (its snapshots feed progress, Ctrl-C reaches it); the baseline
runs on a thread and stops when the canary's run ends early, and the other way round.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from loadkit.errors import UsageError
from loadkit.load.runner import LoadOutcome, LoadPlan, LocustDriver
from loadkit.models.wire import Snapshot


def check_pair(canary: LoadPlan) -> None:
    """Before any traffic: the two runs can happen at once. One bound worker pool (--master-bind,
    server.workers) serves one run at a time, so canary and baseline cannot both load from it."""
    if canary.master_bind is None:
        return
    host, port = canary.master_bind
    raise UsageError(f"compare checks run the same load against the baseline at the same time, and the worker pool "
                     f"at {host}:{port} serves one run at a time",
                     hint="drop --master-bind (local --workers N run both), or run without the compare checks; "
                          "for loadkit serve, raise server.workers.min_users above this run's users")


def run_pair(canary: LoadPlan, baseline_target: str, *, log_dir: Path | None = None,
             on_snapshot: Callable[[Snapshot], None] | None = None,
             stop: threading.Event | None = None) -> tuple[LoadOutcome, LoadOutcome]:
    """(canary outcome, baseline outcome); raises the first error either run raised."""
    check_pair(canary)
    baseline = dataclasses.replace(canary, target=baseline_target)
    stop_baseline = threading.Event()
    stop_canary = _Either(stop)  # set when the baseline fails; never touches the caller's event
    box: dict[str, LoadOutcome | BaseException] = {}

    def run_baseline() -> None:
        try:
            box["outcome"] = LocustDriver(log_dir=log_dir / "baseline" if log_dir else None).run(
                baseline, stop=stop_baseline)
        except BaseException as exc:  # handed to the caller below
            box["outcome"] = exc
            stop_canary.set()

    thread = threading.Thread(target=run_baseline, name="baseline-run", daemon=True)
    thread.start()
    ended_early = True
    try:
        outcome = LocustDriver(log_dir=log_dir).run(canary, on_snapshot=on_snapshot, stop=stop_canary)
        ended_early = outcome.interrupted
    finally:
        if ended_early:
            stop_baseline.set()
        try:
            thread.join()  # the baseline runs the same plan: it ends when the canary's did
        except BaseException:
            stop_baseline.set()  # Ctrl-C while waiting for it
            thread.join()
            raise
    other = box["outcome"]
    if isinstance(other, BaseException):
        raise other
    return outcome, other


class _Either(threading.Event):
    """Set by itself, or when the caller's own stop event is."""

    def __init__(self, outer: threading.Event | None) -> None:
        super().__init__()
        self.outer = outer

    def is_set(self) -> bool:
        return super().is_set() or (self.outer is not None and self.outer.is_set())
