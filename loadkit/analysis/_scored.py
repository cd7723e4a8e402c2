"""One scored load run, from a plan to a RunResult (or a Comparison). Shared by the CLI, the webhook
and chaos: pre-flight, the server-side checks' needs, Locust (twice at once for a comparison), the score."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from loadkit.analysis._result import build_result, outcome_short, timeline_point
from loadkit.analysis._server_side import ServerSide, baseline_target, gather, require, side_of
from loadkit.analysis._tally import tally_of
from loadkit.load._window import REFUSED_KIND
from loadkit.load.pair import check_pair, run_pair
from loadkit.load.preflight import preflight, validate_target
from loadkit.load.runner import LoadPlan, LocustDriver
from loadkit.models.results import CompareVerdict, Comparison, EarlyStop, RunResult, TimelinePoint
from loadkit.models.specs import CompareSpec, Threshold
from loadkit.models.wire import Snapshot
from loadkit.scoring import FailFast, judge
from loadkit.units import fmt


def run_scored(plan: LoadPlan, thresholds: list[Threshold], min_samples: int, *,
               on_snapshot: Callable[[Snapshot], None] | None = None,
               log_dir: Path | None = None, stop: threading.Event | None = None,
               server: ServerSide | None = None, fail_fast: FailFast | None = None) -> RunResult:
    """Pre-flight, run Locust, score the outcome. Setting `stop` ends the run early (interrupted).

    With compare checks the same plan also runs against the baseline, at the same time; with
    Prometheus checks their queries are checked before and run after the load. With `fail_fast`
    the run stops as soon as it finds a decisive breach, and is judged: FAIL, saying when and why.
    """
    server = server or ServerSide()
    if fail_fast is not None and fail_fast.enabled:
        stop = stop or threading.Event()
        on_snapshot = _watching(fail_fast, stop, on_snapshot, plan.open_model)
    require(thresholds, server)
    baseline = baseline_target(thresholds, server)
    if baseline is not None:
        check_pair(plan)
    preflight(plan.target, plan.headers)
    if baseline is None:
        outcome = LocustDriver(log_dir=log_dir).run(plan, on_snapshot=on_snapshot, stop=stop)
        pair, other = None, None
    else:
        preflight(baseline, plan.headers)
        outcome, other = run_pair(plan, baseline, log_dir=log_dir, on_snapshot=on_snapshot, stop=stop)
        pair = (outcome.final, outcome.histogram, other.final, other.histogram)
    external, notes = gather(thresholds, server, start=outcome.started_at, end=outcome.ended_at, pair=pair,
                             wait=not outcome.interrupted, canary_label=plan.target)
    early = _early_stop(fail_fast, outcome.interrupted and outcome.stop_requested)
    if early is not None:
        outcome = dataclasses.replace(outcome, interrupted=False)
    return build_result(plan, outcome, thresholds, min_samples, external, notes, early_stop=early,
                        baseline=None if pair is None else other)


def _watching(fail_fast: FailFast, stop: threading.Event, on_snapshot: Callable[[Snapshot], None] | None,
              open_model: bool) -> Callable[[Snapshot], None]:
    """The snapshot callback that also feeds `fail_fast` and sets `stop` on its first breach. Once the
    run is stopping for any reason, what arrives (the final snapshot of a stop) decides nothing."""
    def watch(snapshot: Snapshot) -> None:
        if not stop.is_set():
            window = tally_of(snapshot.window, snapshot.window_histogram, fail_fast.bounds)
            load = snapshot.rate if open_model else snapshot.users
            refused = snapshot.window.failures_by_kind.get(REFUSED_KIND, 0)
            if fail_fast.add(snapshot.elapsed_s, window, load=load, refused=refused) is not None:
                stop.set()
        if on_snapshot is not None:
            on_snapshot(snapshot)
    return watch


def _early_stop(fail_fast: FailFast | None, stopped_by_request: bool) -> EarlyStop | None:
    """The run stopped for its breach: by the stop event its breach set, not by Ctrl-C or SIGTERM
    (interrupted, exit 130, even when the last snapshot of that stop breaches), nor a stop before it."""
    if fail_fast is None or fail_fast.stopped is None or not stopped_by_request:
        return None
    found = fail_fast.stopped
    return EarlyStop(at_s=found.at_s, planned_s=fail_fast.planned_s, check=found.check, reason=found.reason,
                     confidence=1.0)


def compare_scored(plan: LoadPlan, baseline: str, spec: CompareSpec, *,
                   on_snapshot: Callable[[Snapshot], None] | None = None, log_dir: Path | None = None,
                   stop: threading.Event | None = None) -> tuple[Comparison, bool]:
    """`loadkit compare` with load: the plan against canary and baseline at once, judged.

    Returns (comparison, interrupted).
    """
    baseline = validate_target(baseline, "--baseline")
    check_pair(plan)
    preflight(plan.target, plan.headers)
    preflight(baseline, plan.headers)
    canary, other = run_pair(plan, baseline, log_dir=log_dir, on_snapshot=on_snapshot, stop=stop)
    comparison = judge(side_of(other.final, other.histogram), side_of(canary.final, canary.histogram), spec,
                       baseline_name=baseline, canary_name=plan.target)
    warnings = [*canary.notes, *(f"baseline: {n}" for n in other.notes)]
    short = "; ".join(f"{side}: {why}" for side, why in (("the canary's run", outcome_short(plan, canary)),
                                                          ("the baseline's run", outcome_short(plan, other))) if why)
    if short and not canary.interrupted:  # a comparison on load that did not all arrive is never a pass
        warnings.append(f"not a pass: the load that arrived is short of the plan ({short})")
        comparison = comparison.model_copy(update={
            "verdict": CompareVerdict.FAIL,
            "reason": f"not a pass: the load that arrived is short of the plan ({short}); judged FAIL so that "
                      "nothing is promoted on it" + (f" (and: {comparison.reason})"
                                                     if comparison.verdict is not CompareVerdict.PASS else "")})
    if canary.interrupted:  # what was collected is shown, but it is no verdict: never pass, never fail
        warnings.append("interrupted: compared what was collected")
        comparison = comparison.model_copy(update={
            "verdict": CompareVerdict.INTERRUPTED,
            "reason": f"interrupted after {fmt(canary.final.duration_s)}s: not judged (the metrics show what was "
                      "collected)"})
    return comparison.model_copy(update={
        "started_at": canary.started_at, "ended_at": canary.ended_at, "baseline_stats": other.final,
        "canary_stats": canary.final, "warnings": warnings,
        "baseline_timeline": _timeline(other.snapshots, other.started_at.timestamp() - canary.started_at.timestamp()),
        "canary_timeline": _timeline(canary.snapshots), "baseline_histogram": other.histogram or None,
        "canary_histogram": canary.histogram or None}), canary.interrupted


def _timeline(snapshots: Sequence[Snapshot], offset_s: float = 0.0) -> list[TimelinePoint]:
    """Both sides on the canary's clock: `offset_s` is how much later the baseline's run started."""
    return [timeline_point(s, round(s.elapsed_s + offset_s, 3)) for s in snapshots]
