"""Turn a Locust outcome into the one result model: stats, scored checks, generator health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loadkit.load._window import MAX_ENDPOINTS, OTHER_ENDPOINTS
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
from loadkit.models.specs import Threshold
from loadkit.models.wire import Snapshot, Stats, WorkerEvent, WorkerEventKind
from loadkit.scoring import Observation, evaluate, observations_from_stats
from loadkit.units import fmt

CPU_SATURATED_PCT = 90.0
SATURATED_SHARE = 0.25  # of the samples
LAG_SATURATED_MS = 100.0
DROPPED_SATURATED_SHARE = 0.001  # of the scheduled iterations (open model)
START_LAG_SATURATED_MS = 100.0  # p99 of the iterations' start lag (open model)
INTERRUPTED_NOTE = "interrupted after"


def assess_generator(snapshots: Sequence[Snapshot], processes: int,
                     rate_stages: Sequence[RateStage] = ()) -> GeneratorHealth:
    """Was the load generator itself the bottleneck? Then latency numbers are not trustworthy.

    Saturated when a Locust process ran at >= 90 % CPU for at least a quarter of the samples,
    or its event loop was late by >= 100 ms that often (requests wait for the loop, not the target).
    An open-model run (rate stages) also when more than 0.1 % of the scheduled iterations were
    dropped, or the iterations' start lag had a p99 >= 100 ms: the schedule was not kept.
    """
    if rate_stages:  # the schedule ran: its "users" are the iterations in flight, often 0 on a fast target
        samples = [s for s in snapshots[1:] if s.rate] or list(snapshots)
    else:
        samples = [s for s in snapshots[1:] if s.users > 0] or list(snapshots)
    if not samples:
        return GeneratorHealth(processes=processes)
    health = _cpu_and_loop(samples, processes)
    if rate_stages:
        health = _schedule_kept(health, snapshots[-1].cumulative, rate_stages)
    return health


def _schedule_kept(health: GeneratorHealth, total: Stats, rate_stages: Sequence[RateStage]) -> GeneratorHealth:
    scheduled = scheduled_arrivals(rate_stages, total.duration_s or None)
    dropped = total.dropped_iterations or 0
    lag = total.start_lag_p99_ms
    reasons = [health.reason] if health.reason else []
    if dropped > DROPPED_SATURATED_SHARE * max(1, scheduled):
        reasons.append(f"{dropped} of {scheduled} scheduled iterations were dropped (not started within the "
                       "allowed lateness)")
    if lag is not None and lag >= START_LAG_SATURATED_MS:
        reasons.append(f"iterations started late: start lag p99 {fmt(lag)} ms")
    return health.model_copy(update={
        "scheduled_iterations": scheduled, "iterations": total.iterations or 0, "dropped_iterations": dropped,
        "start_lag_p99_ms": lag, "start_lag_max_ms": total.start_lag_max_ms,
        "saturated": bool(reasons), "reason": "; ".join(reasons),
    })


def _cpu_and_loop(samples: Sequence[Snapshot], processes: int) -> GeneratorHealth:
    cpu = [s.cpu_pct for s in samples]
    lag = [s.lag_ms for s in samples]
    busy = sum(c >= CPU_SATURATED_PCT for c in cpu) / len(cpu)
    late = sum(v >= LAG_SATURATED_MS for v in lag) / len(lag)
    reasons = []
    if busy >= SATURATED_SHARE:
        reasons.append(f"a Locust process was at >= {CPU_SATURATED_PCT:g}% CPU for {busy:.0%} of the run")
    if late >= SATURATED_SHARE:
        reasons.append(f"Locust's event loop was >= {LAG_SATURATED_MS:g} ms late for {late:.0%} of the run")
    return GeneratorHealth(
        processes=processes,
        cpu_max_pct=round(max(cpu), 1),
        cpu_avg_pct=round(sum(cpu) / len(cpu), 1),
        loop_lag_max_ms=round(max(lag), 1),
        saturated=bool(reasons),
        reason="; ".join(reasons),
    )


def with_workers(health: GeneratorHealth, events: Sequence[WorkerEvent]) -> GeneratorHealth:
    """A distributed run's generator health: how many workers took part, which were lost."""
    joined = {e.node for e in events if e.event is WorkerEventKind.JOINED}
    lost = [LostWorker(node=e.node, index=e.index, at_s=e.at_s, detected_s=e.detected_s, requests=e.requests or 0,
                       reason=e.reason) for e in events if e.event is WorkerEventKind.LOST]
    return health.model_copy(update={"workers": len(joined), "workers_lost": lost})


def workers_lost_warnings(health: GeneratorHealth, planned: int) -> list[str]:
    """One warning per lost worker: the run is judged on what arrived, and says so in every output."""
    out = []
    for n, w in enumerate(health.workers_lost, start=1):
        name = f"worker {w.index}" if w.index is not None else f"worker {w.node}"
        when = f"at {fmt(w.at_s)}s" if w.at_s is not None else "mid-run"
        out.append(f"load generator {name} was lost {when} ({w.reason}): its {w.requests} requests until then "
                   f"are counted, its load after that is missing; judged on what arrived, from then on with "
                   f"{max(planned - n, 0)} of {planned} workers")
    return out


def build_result(plan: LoadPlan, outcome: LoadOutcome, thresholds: Sequence[Threshold], min_samples: int,
                 external: Mapping[str, Observation] | None = None, notes: Sequence[str] = (),
                 early_stop: EarlyStop | None = None) -> RunResult:
    """`external`: observations of Prometheus and compare checks (`gather`). `early_stop`: the run was
    stopped for a decisive breach: judged FAIL, and the breached check says so."""
    stats = outcome.final
    card = evaluate(thresholds, observations_from_stats(stats), min_samples, external)
    checks = card.checks if early_stop is None else [_breached(c, early_stop) for c in card.checks]
    score = card.score if early_stop is None else 0.0  # not scored: see RunResult.scored
    health = with_workers(assess_generator(outcome.snapshots, plan.processes, plan.rate_stages), outcome.workers)
    warnings = [*outcome.notes, *notes, *workers_lost_warnings(health, plan.workers)]
    warnings += [f"a load generator worker was refused: {e.reason}" for e in outcome.workers
                 if e.event is WorkerEventKind.REFUSED]
    if health.saturated:
        fix = "use --processes N, a lower --rate, or check that the target keeps up" if plan.open_model \
            else "use --processes N or fewer users"
        warnings.append(f"load generator saturated: {health.reason}; latency figures are unreliable ({fix})")
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
    if outcome.interrupted:
        warnings.append(f"{INTERRUPTED_NOTE} {fmt(stats.duration_s)}s: not judged (the checks show what was "
                        "collected)")
    return RunResult(
        verdict=Verdict.INTERRUPTED if outcome.interrupted else Verdict.FAIL if early_stop else card.verdict,
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
