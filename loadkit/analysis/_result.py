"""Turn a Locust outcome into the one result model: stats, scored checks, generator health."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loadkit.load._arrivals import default_max_in_flight
from loadkit.load._distributed import FORKED_PROCESS_LOST
from loadkit.load._timeline import CPU_SATURATED_PCT, LAG_SATURATED_MS, Samples, generator_seconds
from loadkit.load._window import MAX_ENDPOINTS, OTHER_ENDPOINTS, decode_histogram
from loadkit.load.runner import LoadOutcome, LoadPlan
from loadkit.load.shapes import RateStage, scheduled_arrivals
from loadkit.models.results import (
    Check,
    CheckStatus,
    EarlyStop,
    EndpointStats,
    ErrorStat,
    GeneratorHealth,
    LostWorker,
    RateStageInfo,
    RunResult,
    StageInfo,
    TimelinePoint,
    Verdict,
)
from loadkit.models.specs import CheckKind, Metric, Source, Threshold
from loadkit.models.wire import Snapshot, Stats, WorkerEvent, WorkerEventKind
from loadkit.scoring import Observation, evaluate, observations_from_stats
from loadkit.units import fmt

SATURATED_SHARE = 0.25  # of the samples (seconds at >= CPU_SATURATED_PCT, or LAG_SATURATED_MS late)
DROPPED_SATURATED_SHARE = 0.001  # of the scheduled iterations (open model)
START_LAG_SATURATED_MS = 100.0  # p99 of the iterations' start lag (open model)
INTERRUPTED_NOTE = "interrupted after"


def assess_generator(snapshots: Sequence[Snapshot], processes: int,
                     rate_stages: Sequence[RateStage] = (), max_in_flight: int = 0) -> GeneratorHealth:
    """Was the load generator itself the bottleneck? Then latency numbers are not trustworthy.

    Saturated when a Locust process ran at >= 90 % CPU for at least a quarter of the samples,
    or its event loop was late by >= 100 ms that often (requests wait for the loop, not the target).
    An open-model run (rate stages) also when more than 0.1 % of the scheduled iterations were
    dropped, or the iterations' start lag had a p99 >= 100 ms: the schedule was not kept. Unless the
    in-flight cap (`max_in_flight`, all processes together) was reached with the CPU and loop fine: then
    the target was slow, not the generator (`in_flight_cap_reached`; the reason says so, not saturated).
    The seconds are counted whole as they arrive (a Timeline's `seconds`), so a long run's coarser
    timeline gives the same answer as its every second.
    """
    seconds = generator_seconds(snapshots)
    # the schedule ran: its "users" are the iterations in flight, often 0 on a fast target
    samples = seconds.scheduled if rate_stages else seconds.loaded
    if not samples.n:
        samples = seconds.every
    if not samples.n:
        return GeneratorHealth(processes=processes)
    health = _cpu_and_loop(samples, processes)
    if rate_stages:
        cap_reached = bool(max_in_flight) and seconds.users_max >= max_in_flight
        health = _schedule_kept(health, snapshots[-1].cumulative, rate_stages, cap_reached)
    return health


def _schedule_kept(health: GeneratorHealth, total: Stats, rate_stages: Sequence[RateStage],
                   cap_reached: bool = False) -> GeneratorHealth:
    """Every scheduled arrival is started or dropped (started + dropped = scheduled); of the started, some
    may be cut off at the end. Arrivals neither started nor dropped are unaccounted: their process was lost.

    Drops and late starts are the generator's (saturated) unless the in-flight cap was reached while its
    CPU and loop were fine (the target was slow); cut-offs are the target's; unaccounted ones the generator's."""
    scheduled = scheduled_arrivals(rate_stages, total.duration_s or None)
    started, dropped, cut_off = total.iterations or 0, total.dropped_iterations or 0, total.cut_off_iterations or 0
    unaccounted = max(0, scheduled - started - dropped)
    lag = total.start_lag_p99_ms
    generator = [health.reason] if health.reason else []  # the generator's own limits: saturated
    target: list[str] = []  # the target was slow: the schedule was not kept, but not for the generator
    target_slow = cap_reached and not health.saturated
    allowed = DROPPED_SATURATED_SHARE * max(1, scheduled)
    if dropped > allowed:
        (target if target_slow else generator).append(
            f"{dropped} of {scheduled} scheduled iterations were dropped (not started within the allowed lateness)")
    if lag is not None and lag >= START_LAG_SATURATED_MS:
        (target if target_slow else generator).append(f"iterations started late: start lag p99 {fmt(lag)} ms")
    if cut_off > allowed:
        target.append(f"{cut_off} of {scheduled} scheduled iterations were still running when the run ended "
                      "(cut off)")
    if unaccounted > allowed:
        generator.append(f"{unaccounted} of {scheduled} scheduled iterations were neither started nor dropped "
                         "(a load generator process was lost?): that load never ran")
    if target_slow and any("dropped" in r or "late" in r for r in target):
        target.append("the in-flight cap was reached while the target was slow")
    return health.model_copy(update={
        "scheduled_iterations": scheduled, "iterations": started, "dropped_iterations": dropped,
        "cut_off_iterations": cut_off, "unaccounted_iterations": unaccounted,
        "start_lag_p99_ms": lag, "start_lag_max_ms": total.start_lag_max_ms, "in_flight_cap_reached": cap_reached,
        "saturated": bool(generator), "reason": "; ".join(generator + target),
    })


_LATENCY_QUANTILES = {Metric.REQUEST_DURATION.value: 99.0, Metric.LATENCY_P50.value: 50.0,
                      Metric.LATENCY_P95.value: 95.0, Metric.LATENCY_P99.value: 99.0, Metric.LATENCY_MAX.value: 100.0}


def latency_upper_bound_ms(histogram: str, quantile: float, censored: int, unrecorded: int) -> float | None:
    """The highest the `quantile` latency can be when `censored` samples of the histogram are only lower
    bounds (dropped and cut-off iterations) and `unrecorded` arrivals have no sample at all: every one of
    them could be arbitrarily long. None: unbounded (they reach into the quantile).

    Sorted with them at infinity, the quantile's rank r holds the r-th smallest exact sample, which is at
    most the histogram's (r + censored)-th value.
    """
    hist = decode_histogram(histogram) if histogram else None
    recorded = hist.get_total_count() if hist is not None else 0
    n = recorded + unrecorded
    rank = max(1, math.ceil(quantile / 100.0 * n - 1e-9))
    if hist is None or rank > n - censored - unrecorded:
        return None
    return hist.get_value_at_percentile(min(100.0, 100.0 * (rank + censored) / recorded)) / 1000.0


def censored_latency_checks(checks: Sequence[Check], health: GeneratorHealth, histogram: str) -> list[Check]:
    """Open model: a client latency check passes only if it would pass with every dropped, cut-off or
    unaccounted iteration infinitely long. Their recorded latencies are lower bounds (the lateness at the
    drop, the age at the end): a threshold above them must not pass on them (a stall hidden as a drop)."""
    censored = (health.dropped_iterations or 0) + (health.cut_off_iterations or 0)
    unrecorded = health.unaccounted_iterations or 0
    if unrecorded <= DROPPED_SATURATED_SHARE * max(1, health.scheduled_iterations or 0):
        unrecorded = 0  # a few: the processes' clocks started milliseconds apart, not a lost process
    if not censored + unrecorded:
        return list(checks)
    out = []
    for check in checks:
        quantile = _LATENCY_QUANTILES.get(check.metric)
        if (quantile is None or not check.passed or check.kind is not CheckKind.METRIC
                or check.source is not Source.CLIENT or check.max is None):
            out.append(check)
            continue
        bound = latency_upper_bound_ms(histogram, quantile, censored, unrecorded)
        if bound is not None and bound <= check.max:
            out.append(check)
            continue
        could = "could be any length" if bound is None else f"could be up to {fmt(bound)} ms"
        out.append(check.restated(CheckStatus.FAILED, (
            f"{fmt(check.observed or 0.0)} ms measured, but {censored + unrecorded} iteration(s) were dropped, cut off "
            f"or never ran: their latency is only a lower bound, so the true value {could}, above the maximum "
            f"{fmt(check.max)} ms")))
    return out


def _cpu_and_loop(samples: Samples, processes: int) -> GeneratorHealth:
    busy, late = samples.busy / samples.n, samples.late / samples.n
    reasons = []
    if busy >= SATURATED_SHARE:
        reasons.append(f"a Locust process was at >= {CPU_SATURATED_PCT:g}% CPU for {busy:.0%} of the run")
    if late >= SATURATED_SHARE:
        reasons.append(f"Locust's event loop was >= {LAG_SATURATED_MS:g} ms late for {late:.0%} of the run")
    return GeneratorHealth(
        processes=processes,
        cpu_max_pct=round(samples.cpu_max, 1),
        cpu_avg_pct=round(samples.cpu_sum / samples.n, 1),
        loop_lag_max_ms=round(samples.lag_max, 1),
        saturated=bool(reasons),
        reason="; ".join(reasons),
    )


def with_workers(health: GeneratorHealth, events: Sequence[WorkerEvent], planned: int = 0) -> GeneratorHealth:
    """A distributed run's generator health: how many workers took part, which were lost (and came
    back), what did not come from this run's planned workers, and whether its load fell short."""
    joined = {e.node for e in events if e.event is WorkerEventKind.JOINED}
    lost: list[LostWorker] = []
    for e in events:
        if e.event is WorkerEventKind.LOST:
            lost.append(LostWorker(node=e.node, index=e.index, at_s=e.at_s, detected_s=e.detected_s,
                                   requests=e.requests or 0, reason=e.reason, users_moved=e.users_moved))
        elif e.event is WorkerEventKind.REJOINED:
            back = next((w for w in reversed(lost) if w.node == e.node and w.rejoined_s is None), None)
            if back is not None:
                lost[lost.index(back)] = back.model_copy(update={"rejoined_s": e.at_s})
    unplanned = sum(e.event is WorkerEventKind.UNPLANNED for e in events)
    dropped = sum(e.requests or 0 for e in events if e.event is WorkerEventKind.DROPPED)
    health = health.model_copy(update={"workers": len(joined), "workers_lost": lost, "workers_unplanned": unplanned,
                                       "dropped_requests": dropped})
    return health.model_copy(update={"load_short": load_short(health, planned)})


def load_short(health: GeneratorHealth, planned: int) -> str:
    """Why the load that arrived is short of the plan ("" when it is not): the rule that keeps a
    distributed run that lost load (or had load it could not count) from ever being a pass."""
    if not health.workers and not health.workers_lost:
        return ""
    reasons = []
    if health.workers_lost:
        forked = sum(w.reason == FORKED_PROCESS_LOST for w in health.workers_lost)
        if forked:
            reasons.append(f"{forked} of {max(planned, health.processes)} forked load generator processes lost")
        if len(health.workers_lost) > forked:
            reasons.append(f"{len(health.workers_lost) - forked} load generator worker loss(es) of "
                           f"{max(planned, health.workers)} workers")
    if health.workers_unplanned:
        reasons.append(f"{health.workers_unplanned} worker(s) without this run's plan took users (their load on "
                       "the target is not counted)")
    return "; ".join(reasons)


def every_worker_lost(health: GeneratorHealth) -> bool:
    """No worker was left loading at the end: the run was judged on a part of its profile."""
    down = {w.node for w in health.workers_lost if w.rejoined_s is None}
    return health.workers > 0 and len(down) >= health.workers


def workers_lost_warnings(health: GeneratorHealth, planned: int) -> list[str]:
    """One warning per lost worker, and per thing that did not come from this run's planned workers:
    the run is judged on what arrived, and says so in every output."""
    out = []
    remaining = planned
    for w in health.workers_lost:
        if w.reason == FORKED_PROCESS_LOST:
            continue  # a forked process (--processes): its note says when and what is missing
        name = f"worker {w.index}" if w.index is not None else f"worker {w.node}"
        when = f"at {fmt(w.at_s)}s" if w.at_s is not None else "mid-run"
        head = f"load generator {name} was lost {when} ({w.reason}): its {w.requests} requests until then are counted"
        if w.rejoined_s is not None:
            out.append(f"{head}; it came back at {fmt(w.rejoined_s)}s, so its load between is missing (Locust gave "
                       "it users again)")
        elif w.users_moved:
            remaining = max(remaining - 1, 0)
            out.append(f"{head}; Locust moved its users to the remaining {remaining} of {planned} workers, so the "
                       "load went on with fewer generators")
        else:
            remaining = max(remaining - 1, 0)
            out.append(f"{head}, its load after that is missing; judged on what arrived, from then on with "
                       f"{remaining} of {planned} workers")
    if health.workers_unplanned:
        out.append(f"{health.workers_unplanned} load generator worker(s) without this run's plan joined mid-run and "
                   "took users until they were evicted: the target saw load this result does not count")
    if health.dropped_requests:
        out.append(f"{health.dropped_requests} requests reported by workers that are not this run's planned ones "
                   "(another run's, or a stranger on the master's port) were dropped, not counted")
    return out


def _score(checks: Sequence[Check]) -> float:
    """`evaluate`'s score (share of the weight that passed) of restated checks."""
    total = sum(c.weight for c in checks)
    return round(100.0 * sum(c.weight for c in checks if c.passed) / total, 1) if total else 0.0


def outcome_short(plan: LoadPlan, outcome: LoadOutcome) -> str:
    """Why a run's load is short of its plan ("" when it is not, or it was interrupted): a lost worker or
    forked process, load from a worker without the plan. For the second run of a comparison (the baseline)
    as much as for the canary's: a compare judged on half a baseline is no more a pass."""
    if outcome.interrupted:
        return ""
    return with_workers(GeneratorHealth(processes=plan.processes), outcome.workers, plan.workers).load_short


def build_result(plan: LoadPlan, outcome: LoadOutcome, thresholds: Sequence[Threshold], min_samples: int,
                 external: Mapping[str, Observation] | None = None, notes: Sequence[str] = (),
                 early_stop: EarlyStop | None = None, baseline: LoadOutcome | None = None) -> RunResult:
    """`external`: observations of Prometheus and compare checks (`gather`). `early_stop`: the run was
    stopped for a decisive breach: judged FAIL, and the breached check says so. `baseline`: the run the
    compare checks judged the canary against (its notes are warnings; its short load, a FAIL)."""
    stats = outcome.final
    card = evaluate(thresholds, observations_from_stats(stats), min_samples, external)
    checks = card.checks if early_stop is None else [_breached(c, early_stop) for c in card.checks]
    shares = plan.workers or plan.processes
    cap = (plan.max_in_flight or default_max_in_flight(plan.peak_rate, shares)) * shares if plan.open_model else 0
    health = with_workers(assess_generator(outcome.snapshots, plan.processes, plan.rate_stages, cap),
                          outcome.workers, plan.workers)
    if plan.open_model:
        checks = censored_latency_checks(checks, health, outcome.histogram)
    censored = checks != card.checks and early_stop is None
    # A run whose load fell short of its plan (a lost worker, uncounted load) is never a pass: judged
    # FAIL, so no rollout is promoted on it; with no worker left at the end, not judged at all.
    short = "" if outcome.interrupted else health.load_short
    baseline_short = outcome_short(plan, baseline) if baseline is not None and not outcome.interrupted else ""
    if baseline_short:
        short = "; ".join(filter(None, [short, f"the baseline's run: {baseline_short}"]))
    if short and every_worker_lost(health):
        checks = [c.unjudged("insufficient data: every load generator worker was lost before the end") for c in checks]
    short_reason = f"not a pass: the load that arrived is short of the plan ({short})" if short else ""
    # a run stopped early is not scored (see RunResult.scored); one whose checks changed here is scored on them
    score = 0.0 if early_stop is not None else card.score if not censored and not short else _score(checks)
    warnings = [*outcome.notes, *notes, *workers_lost_warnings(health, plan.workers)]
    if baseline is not None:
        warnings += [f"baseline: {n}" for n in baseline.notes]
    warnings += [f"a load generator worker was refused: {e.reason}" for e in outcome.workers
                 if e.event is WorkerEventKind.REFUSED]
    if health.saturated:
        fix = "use --processes N, a lower --rate, or check that the target keeps up" if plan.open_model \
            else "use --processes N or fewer users"
        warnings.append(f"load generator saturated: {health.reason}; latency figures are unreliable ({fix})")
    elif health.reason:  # an open model whose target was slow: the generator was fine
        fix = ("raise --max-in-flight to keep the schedule; " if health.in_flight_cap_reached else "") + \
            "the latency checks count the dropped and cut-off iterations as of unknown length"
        warnings.append(f"the schedule was not kept: {health.reason} ({fix})")
    unknown = (health.dropped_iterations or 0) + (health.cut_off_iterations or 0)
    if plan.open_model and not stats.requests and unknown:
        warnings.append(f"no request was answered: the latency figures are only the lower bounds of {unknown} "
                        "dropped or cut-off iteration(s) (how late each was when given up)")
    if stats.exceptions:
        task_errors = [m for m, _ in outcome.errors if m.startswith("task error:")]
        example = f"; most common: {task_errors[0].removeprefix('task error: ')}" if task_errors else ""
        warnings.append(f"the locustfile's tasks raised {stats.exceptions} exception(s), counted in "
                        f"error-rate{example}")
    if any(row[1] == OTHER_ENDPOINTS for row in outcome.endpoints):
        warnings.append(f"the locustfile requested more than {MAX_ENDPOINTS} distinct endpoint names: the rest are "
                        f"counted in the row {OTHER_ENDPOINTS!r} (give requests with ids a name=, e.g. "
                        "self.client.get(f'/item/{id}', name='/item/[id]'))")
    if early_stop is not None:
        warnings.append(early_stop.summary)
    if short:
        warnings.append(f"{short_reason}; judged FAIL so that "
                        "nothing is promoted on it (see docs/distributed.md)")
    if outcome.interrupted:
        warnings.append(f"{INTERRUPTED_NOTE} {fmt(stats.duration_s)}s: not judged (the checks show what was "
                        "collected)")
    return RunResult(
        verdict=Verdict.INTERRUPTED if outcome.interrupted else Verdict.FAIL if early_stop or censored or short
        else card.verdict,
        reason=short_reason,
        score=score,
        target=plan.target,
        profile=plan.profile,
        locustfile=str(plan.locustfile),
        started_at=outcome.started_at,
        ended_at=outcome.ended_at,
        interrupted=outcome.interrupted,
        stats=stats,
        checks=[c.unjudged("interrupted") for c in checks] if outcome.interrupted else checks,
        thresholds=list(thresholds),
        min_samples=min_samples,
        generator=health,
        endpoints=[_endpoint(e) for e in outcome.endpoints],
        errors=[ErrorStat(message=m, count=c) for m, c in outcome.errors],
        timeline=[timeline_point(s) for s in outcome.snapshots],
        warnings=warnings,
        histogram=outcome.histogram or None,
        stages=[] if plan.open_model else [StageInfo(duration_s=s.duration_s, users=s.users, spawn_rate=s.spawn_rate)
                                           for s in plan.stages],
        rate_stages=[RateStageInfo(duration_s=s.duration_s, start=s.start, end=s.end) for s in plan.rate_stages],
        stopped_early=early_stop,
    )


def _breached(check: Check, stop: EarlyStop) -> Check:
    """The check that stopped the run fails with the reason its whole-run failure was certain; the
    others are not judged on the shortened run (skipped, keeping what they showed so far)."""
    if check.name != stop.check:
        return check.unjudged(f"the run stopped at {fmt(stop.at_s)}s of {fmt(stop.planned_s)}s")
    return check.restated(CheckStatus.FAILED, f"{stop.reason.removeprefix(check.name + ': ')} "
                          f"(stopped the run at {fmt(stop.at_s)}s)")


def _endpoint(row: Sequence[Any]) -> EndpointStats:
    """[method, name, requests, failures] and, from the plugin of this version, p50, p95, p99, max (ms)."""
    latencies = dict(zip(("p50_ms", "p95_ms", "p99_ms", "max_ms"), row[4:8], strict=False))
    return EndpointStats(method=row[0], name=row[1], requests=row[2], failures=row[3], **latencies)


def timeline_point(s: Snapshot, t: float | None = None) -> TimelinePoint:
    """One snapshot's window as a point of a result's timeline (`t`: default the snapshot's elapsed time)."""
    w = s.window
    return TimelinePoint(
        t=s.elapsed_s if t is None else t, users=s.users, requests=w.requests, failures=w.failures, rps=w.rps,
        p50_ms=w.p50_ms, p95_ms=w.p95_ms, p99_ms=w.p99_ms, error_rate_pct=w.error_rate_pct, cpu_pct=s.cpu_pct,
        failures_by_kind=dict(w.failures_by_kind),
    )


def as_planned_end(result: RunResult, note: str) -> RunResult:
    """A run stopped from outside at its planned end (a continuous run when its analysis ended): not
    interrupted, so judged on its checks."""
    warnings = [w for w in result.warnings if not w.startswith(INTERRUPTED_NOTE)]
    checks = [c.rejudged() for c in result.checks]
    verdict = Verdict.PASS if checks and all(c.passed for c in checks) else Verdict.FAIL
    return result.model_copy(update={"interrupted": False, "verdict": verdict, "checks": checks,
                                     "warnings": [*warnings, note]})
