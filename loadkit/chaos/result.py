"""Score a chaos run: the journal, the phases and the load in, one ChaosResult out.

Checks (a skipped one never counts as passed; score = weight passed / weight of all):
- steady-state-before/-after: the hypothesis (a gate not met still reads `completed` in the
  journal); none without a hypothesis, skipped when the run stopped before it ran;
- method: every action succeeded (a fault that was never injected tested nothing);
- each load threshold over the whole fault window, and again over its worst rolling
  `impact_window_s` window there ("request-success-rate (worst 5s)"), so a short burst is not
  averaged away; a window needs `window_min_requests` requests, and with none the check is skipped;
- availability (min 100 %) and recovery-time (max 120 s, counted from the fault's removal);
- rollbacks: every planned rollback ran and succeeded, and no fault was left behind.

Verdict: `interrupted` (a signal stopped the run), `error` (it did not test what it claims:
loadkit stopped it early, the experiment aborted, the hypothesis could not measure, or no fault
was seen in place), `dry-run` (`--dry-run`: nothing was injected, so nothing is judged; score 0),
`pass` (every check passed and the journal completed) or `fail`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loadkit.analysis import timeline_point
from loadkit.chaos.live import Stamped
from loadkit.chaos.models import ChaosCheck, ChaosResult, FaultWindow, JournalStatus, PhaseLoad, Rollbacks
from loadkit.chaos.phases import (
    WINDOW_MIN_REQUESTS,
    WINDOW_SLACK_S,
    Recovery,
    Span,
    detect_time,
    load_after,
    loaded,
    phase_stats,
    recovery,
    rolling_spans,
    span_observations,
    worst_span,
)
from loadkit.models.results import Check, CheckStatus, Verdict
from loadkit.models.specs import CheckKind, Metric, Threshold
from loadkit.models.wire import Stats
from loadkit.scoring import UNITS, Observation, evaluate, evaluate_threshold
from loadkit.units import fmt

SETTLE_S = 1.5  # requests in flight when a fault is removed still finish with it: count them in


@dataclass
class Timeline:
    """When each part of the experiment happened (time.time()), recorded by the event handler."""

    load_start: float = 0.0
    load_end: float = 0.0
    fault_start: float | None = None  # the start of the first action whose fault was seen in place
    first_attempt: float | None = None  # the first fault-injecting action started (the watchdog counts from it)
    faults_seen: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # loadkit stopped the experiment itself (the watchdog, the load)
    method_end: float | None = None
    rollbacks_end: float | None = None
    leftovers_removed_at: float | None = None  # loadkit removed a fault the rollbacks had not
    steady_after_at: float | None = None  # the steady state after was measured (after rollbacks and cool-down)
    notes: list[str] = field(default_factory=list)

    def attempted(self, at: float) -> None:
        if self.first_attempt is None:
            self.first_attempt = at

    def injected(self, at: float, what: str) -> None:
        if self.fault_start is None:
            self.fault_start = at
        self.faults_seen.append(what)

    @property
    def fault_removed_at(self) -> float | None:
        """When the fault was removed: the rollbacks ended, or loadkit removed what they left (the
        later); without either, the end of the method (else of the load)."""
        if self.fault_start is None:
            return None
        removals = [t for t in (self.rollbacks_end, self.leftovers_removed_at) if t is not None]
        return max(removals) if removals else (self.method_end or self.load_end)

    @property
    def fault_end(self) -> float | None:
        """The fault's removal plus the time its in-flight requests need to finish."""
        removed = self.fault_removed_at
        if removed is None:
            return None
        return min(removed + SETTLE_S, self.load_end) if self.load_end else removed + SETTLE_S


@dataclass(frozen=True)
class ChaosInputs:
    experiment: Mapping[str, Any]
    journal: Mapping[str, Any]
    timeline: Timeline
    windows: Sequence[Stamped]
    load_thresholds: Sequence[Threshold]
    chaos_thresholds: Sequence[Threshold]
    min_samples: int
    target: str
    profile: str
    path: str
    dry_run: bool
    leftovers: Sequence[str]
    journal_path: str | None
    recovery_window_s: float
    external: Mapping[str, Observation] = field(default_factory=dict)  # Prometheus/compare, over the fault
    impact_window_s: float = 5.0  # load thresholds are judged again over the fault's worst window this long
    window_min_requests: int = WINDOW_MIN_REQUESTS  # a rolling window with fewer requests is not judged
    unguarded: Sequence[str] = ()  # what --allow-unguarded let run
    leftovers_failed: Sequence[str] = ()  # this run's faults loadkit could not remove (or see restored)
    measuring: frozenset[str] = frozenset()  # hypothesis probes whose failure means "could not measure"
    journal_error: str | None = None  # the journal could not be written
    load_error: str | None = None  # the load stopped before the experiment ended (Locust crashed)


@dataclass(frozen=True)
class _Scope:
    """What the load checks judge: the fault window, or the whole run when nothing was injected."""

    stats: Stats
    spans: list[Span]
    origin: float  # rolling windows are placed relative to this (the fault's or the load's start)
    where: str  # "during the fault", ...
    origin_name: str  # "the fault's start", ...


def build_chaos_result(inputs: ChaosInputs) -> ChaosResult:
    j, t = inputs.journal, inputs.timeline
    status = _status(j)
    fault_start, fault_end = t.fault_start, t.fault_end
    phases = _phases(inputs.windows, t)
    scope = _scope(inputs, phases)
    detect = detect_time(scope.spans, fault_start, inputs.load_thresholds, inputs.window_min_requests) \
        if fault_start is not None else None
    recovered = _recovery(inputs, scope, detect)
    rollbacks = _rollbacks(inputs.experiment, j, inputs.leftovers, inputs.leftovers_failed)
    observations = _observations(scope.stats, recovered)
    checks = [*_gate_checks(inputs, status), _method_check(inputs, status),
              *_load_checks(inputs, scope, observations),
              *_chaos_checks(inputs, scope, observations, recovered, status),
              _rollback_check(rollbacks, bool(j.get("run")))]
    verdict, reason = _verdict(inputs, status, checks)
    passed = sum(c.weight for c in checks if c.status is CheckStatus.PASSED)
    total = sum(c.weight for c in checks)
    worst = min((s.stats.success_rate_pct for s in loaded(scope.spans, inputs.window_min_requests)
                 if s.stats.success_rate_pct is not None), default=None)
    return ChaosResult(
        verdict=verdict, score=round(100.0 * passed / total, 1) if total and not inputs.dry_run else 0.0,
        reason=reason,
        experiment=str(inputs.experiment.get("title", "")), experiment_path=inputs.path, target=inputs.target,
        profile=inputs.profile, started_at=_dt(t.load_start), ended_at=_dt(t.load_end),
        journal_status=status, deviated=bool(j.get("deviated")),
        interrupted=verdict is Verdict.INTERRUPTED, dry_run=inputs.dry_run,
        steady_state_before_met=_steady(j, "before"), steady_state_after_met=_steady(j, "after"),
        steady_state_after_at=_dt(t.steady_after_at) if t.steady_after_at is not None else None,
        rollbacks=rollbacks, phases=phases,
        fault=FaultWindow(start=_dt(fault_start), end=_dt(fault_end), duration_s=round(fault_end - fault_start, 3),
                          removed_at=_dt(t.fault_removed_at))
        if fault_start is not None and fault_end is not None else None,
        availability_pct=scope.stats.success_rate_pct if fault_start is not None else None,
        availability_worst_pct=worst if fault_start is not None else None,
        detect_time_s=round(detect, 1) if detect is not None else None,
        recovery_time_s=round(recovered, 1) if isinstance(recovered, float) else None,
        impact_window_s=inputs.impact_window_s, recovery_window_s=inputs.recovery_window_s,
        checks=checks, thresholds=[*inputs.load_thresholds, *inputs.chaos_thresholds],
        warnings=_warnings(inputs, rollbacks, verdict, reason), journal_path=inputs.journal_path,
        journal_error=inputs.journal_error, unguarded=list(inputs.unguarded), faults_seen=list(t.faults_seen),
        timeline=[timeline_point(w.snapshot, round(w.at - (t.load_start or w.at), 3)) for w in inputs.windows],
    )


def _phases(windows: Sequence[Stamped], t: Timeline) -> list[PhaseLoad]:
    start, end = t.fault_start, t.fault_end
    if start is None or end is None:
        whole = phase_stats(windows, None, None)
        return [PhaseLoad(name="whole run", start=_dt(t.load_start), end=_dt(t.load_end), stats=whole)]
    return [
        PhaseLoad(name="before", start=_dt(t.load_start), end=_dt(start), stats=phase_stats(windows, None, start)),
        PhaseLoad(name="fault", start=_dt(start), end=_dt(end), stats=phase_stats(windows, start, end)),
        PhaseLoad(name="after", start=_dt(end), end=_dt(t.load_end), stats=phase_stats(windows, end, None)),
    ]


def _scope(inputs: ChaosInputs, phases: list[PhaseLoad]) -> _Scope:
    t, window_s = inputs.timeline, inputs.impact_window_s
    if t.fault_start is not None:
        # Rolling windows only while the fault was on: a window that reaches past its removal holds the
        # healthy load that followed (and under thin load it would be the only well-loaded one).
        removed = t.fault_removed_at or t.fault_end
        spans = rolling_spans(inputs.windows, t.fault_start, (removed or 0.0) + WINDOW_SLACK_S, window_s)
        return _Scope(phases[1].stats, spans, t.fault_start, "during the fault", "the fault's start")
    # Nothing injected: the whole run, its worst window from the first one at full load (the
    # spawn burst is not the steady state).
    settled = _settled_at(inputs.windows)
    spans = rolling_spans(inputs.windows, settled, None, window_s)
    where = "over the whole run (dry run)" if inputs.dry_run else "over the whole run (nothing was injected)"
    return _Scope(phases[0].stats, spans, t.load_start, where, "the load's start")


def _settled_at(windows: Sequence[Stamped]) -> float | None:
    """When the load reached its steady state: its first window at peak users (an open model: the first
    window with iterations; its "users" are the iterations in flight, which peak under a fault)."""
    if any(w.snapshot.rate is not None for w in windows):
        return next((w.at - w.snapshot.window.duration_s for w in windows if w.snapshot.window.iterations), None)
    peak = max((w.snapshot.users for w in windows), default=0)
    return next((w.at - w.snapshot.window.duration_s for w in windows if w.snapshot.users >= peak), None)


def _recovery(inputs: ChaosInputs, scope: _Scope, detect: float | None) -> float | Recovery | None:
    """Seconds from the fault's removal until the thresholds held again; 0 when they never broke
    (well-loaded windows showed it); None when nothing was injected."""
    removed = inputs.timeline.fault_removed_at
    if removed is None:
        return None
    if detect is None and loaded(scope.spans, inputs.window_min_requests):
        return 0.0
    return recovery(inputs.windows, removed, inputs.load_thresholds, inputs.recovery_window_s,
                    inputs.window_min_requests)


def _observations(stats: Stats, recovered: float | Recovery | None) -> dict[Metric, Observation]:
    observations = span_observations(stats)
    value = recovered if isinstance(recovered, float) else None
    observations[Metric.RECOVERY_TIME] = Observation(value, stats.requests, UNITS[Metric.RECOVERY_TIME])
    return observations


def _gate_checks(inputs: ChaosInputs, status: JournalStatus) -> list[Check]:
    """The hypothesis before and after; none when the experiment has no hypothesis."""
    if not inputs.experiment.get("steady-state-hypothesis"):
        return []
    j = inputs.journal
    before, after = _steady(j, "before"), _steady(j, "after")
    measured_late = inputs.timeline.steady_after_at is not None
    after_when = "after the rollbacks and the cool-down" if measured_late else "after the method"
    before_check = _gate("steady-state-before", before, "before the fault", _stopped_first(status))
    after_check = _gate("steady-state-after", after, after_when,
                        "the steady state before was not met, so the method did not run" if before is False
                        else _stopped_first(status))
    # chaoslib's deviation comes from its own hypothesis right after the method; once loadkit has
    # measured the steady state after the rollbacks and the cool-down, that measurement decides.
    if j.get("deviated") and not measured_late and after_check.passed:
        after_check = after_check.restated(CheckStatus.FAILED, "the steady state deviated")
    checks = [before_check, after_check]
    for i, which in enumerate(("before", "after")):
        if why := _unmeasured(inputs, which):
            checks[i] = checks[i].restated(CheckStatus.SKIPPED, f"could not be measured: {why}") \
                .model_copy(update={"observed": None})
    return checks


def _gate(name: str, met: bool | None, when: str, not_run: str) -> Check:
    if met is None:
        status, reason = CheckStatus.SKIPPED, f"not checked {when}: {not_run}"
    else:
        status = CheckStatus.PASSED if met else CheckStatus.FAILED
        reason = f"steady state {when} was {'met' if met else 'NOT met'}"
    return Check(name=name, metric=ChaosCheck.STEADY_STATE.value, kind=CheckKind.GATE,
                 observed=None if met is None else float(met), min=None, max=None, status=status, reason=reason)


def _stopped_first(status: JournalStatus) -> str:
    return {JournalStatus.INTERRUPTED: "the run was interrupted first",
            JournalStatus.ABORTED: "the experiment aborted first"}.get(status, "the run stopped first")


def _load_checks(inputs: ChaosInputs, scope: _Scope, observations: Mapping[Metric, Observation]) -> list[Check]:
    """Each load threshold over the whole scope, and each client-side one over its worst window too."""
    card = evaluate(inputs.load_thresholds, observations, inputs.min_samples, inputs.external)
    checks = []
    for threshold, check in zip(inputs.load_thresholds, card.checks, strict=True):
        checks.append(check.restated(check.status, f"{check.reason} ({scope.where})"))
        if threshold.is_client_range and threshold.resolved_metric is not Metric.RECOVERY_TIME:
            checks.append(_worst_check(inputs, scope, threshold))
    return checks


def _worst_check(inputs: ChaosInputs, scope: _Scope, threshold: Threshold) -> Check:
    """The threshold over its worst rolling window; skipped when no window held enough requests."""
    window_s, needed = inputs.impact_window_s, inputs.window_min_requests
    judged = threshold.model_copy(update={"name": f"{threshold.name} (worst {fmt(window_s)}s)", "min_samples": None})
    spans = loaded(scope.spans, needed)
    worst = worst_span(spans, threshold.resolved_metric, judged.thresholdRange) \
        if judged.thresholdRange is not None else None
    if worst is None:
        skipped = evaluate_threshold(judged, None, needed)
        return skipped.restated(CheckStatus.SKIPPED, _unjudged(scope, spans, window_s, needed))
    span, value = worst
    metric = threshold.resolved_metric
    check = evaluate_threshold(judged, Observation(value, span.stats.requests, UNITS.get(metric, "")), needed)
    where = (f"in the worst {fmt(window_s)}s window, {fmt(span.start - scope.origin)}-{fmt(span.end - scope.origin)}s "
             f"after {scope.origin_name} ({span.stats.requests} requests)")
    thin = len(scope.spans) - len(spans)
    if check.status is CheckStatus.PASSED and thin:
        # The windows that held too few requests may be the bad ones (a thin window is often thin
        # because the fault slowed or broke it): "the worst of the loaded ones passed" is no pass.
        return check.restated(CheckStatus.SKIPPED, f"thin load: {thin} of the {len(scope.spans)} {fmt(window_s)}s "
                              f"windows {scope.where} held fewer than {needed} requests, so the worst window is not "
                              f"known ({check.reason} {where}); raise --users or the impact window")
    return check.restated(check.status, f"{check.reason} {where}")


def _unjudged(scope: _Scope, spans: Sequence[Span], window_s: float, needed: int) -> str:
    if not scope.spans:
        return f"no load {scope.where}: no {fmt(window_s)}s window to judge"
    if not spans:
        most = max(s.stats.requests for s in scope.spans)
        return (f"thin load: no {fmt(window_s)}s window {scope.where} held {needed} requests (at most {most}); "
                "raise --users or the impact window")
    return f"no {fmt(window_s)}s window {scope.where} had a value for this metric (no request was answered)"


def _chaos_checks(inputs: ChaosInputs, scope: _Scope, observations: Mapping[Metric, Observation],
                  recovered: float | Recovery | None, status: JournalStatus) -> list[Check]:
    """availability and recovery-time (and any Prometheus chaos threshold); none in a dry run."""
    if inputs.dry_run:
        return []
    card = evaluate(inputs.chaos_thresholds, observations, inputs.min_samples, inputs.external)
    if inputs.timeline.fault_start is None:
        return [c.restated(CheckStatus.SKIPPED, "the fault was never injected: nothing to measure")
                .model_copy(update={"observed": None}) for c in card.checks]
    checks = []
    for check in card.checks:
        if not (check.kind is CheckKind.METRIC and check.metric == Metric.RECOVERY_TIME):
            checks.append(check.restated(check.status, f"{check.reason} ({scope.where})"))
        elif isinstance(recovered, float):
            checks.append(check.restated(check.status, f"{check.reason} (after the fault was removed)"))
        else:
            checks.append(_no_recovery(inputs, check, recovered, status))
    return checks


def _no_recovery(inputs: ChaosInputs, check: Check, why: Recovery | None, status: JournalStatus) -> Check:
    window = f"{fmt(inputs.recovery_window_s)}s"
    removed = inputs.timeline.fault_removed_at or 0.0
    after = f"{fmt(load_after(inputs.windows, removed))}s of load after the fault was removed"
    if why is Recovery.NOT_RECOVERED and status is not JournalStatus.INTERRUPTED:
        return check.restated(CheckStatus.FAILED, f"did not recover: the thresholds never held over a whole "
                              f"{window} window in the {after}")
    if status is JournalStatus.INTERRUPTED:
        reason = "interrupted before a recovery could be measured"
    elif why is Recovery.THIN:
        reason = (f"thin load: no {window} window after the fault was removed held {inputs.window_min_requests} "
                  "requests; raise --users")
    else:
        reason = f"not measured: only {after}, less than a whole {window} recovery window (raise --cooldown)"
    return check.restated(CheckStatus.SKIPPED, reason)


def _method_check(inputs: ChaosInputs, status: JournalStatus) -> Check:
    """Chaos Toolkit records a failed action without failing the run; an experiment whose fault was
    never seen in place (refused by a guard, an API error, an action that injects nothing) tested
    nothing, so it cannot pass."""
    runs = inputs.journal.get("run") or []
    actions = [r for r in runs if (r.get("activity") or {}).get("type") == "action"]
    failed = [r for r in runs if r.get("status") != "succeeded" and (
        (r.get("activity") or {}).get("type") == "action" or _refused(r))]
    metric = ChaosCheck.METHOD.value

    def method(check_status: CheckStatus, observed: int, reason: str) -> Check:
        return Check(name="method", metric=metric, kind=CheckKind.GATE, observed=float(observed), min=None, max=None,
                     status=check_status,
                     reason=reason)

    if failed:
        details = "; ".join(f"{(r.get('activity') or {}).get('name')}: {_last_line(r.get('exception'))}"
                            for r in failed)
        return method(CheckStatus.FAILED, len(runs) - len(failed),
                      f"{len(failed)} activit{'y' if len(failed) == 1 else 'ies'} failed, so the fault was not "
                      f"(fully) injected: {details}")
    if inputs.dry_run:
        return method(CheckStatus.PASSED, len(runs), "dry run: no action ran")
    if not inputs.experiment.get("method"):
        return method(CheckStatus.FAILED, 0, "the method is empty: nothing was injected")
    if not runs:
        why = "the steady state before was not met" if _steady(inputs.journal, "before") is False \
            else _stopped_first(status)
        return method(CheckStatus.SKIPPED, 0, f"the method did not run: {why}")
    if not actions:
        return method(CheckStatus.FAILED, len(runs), "the method has no action: nothing was injected")
    if inputs.timeline.fault_start is None:
        return method(CheckStatus.FAILED, len(runs), "no action of the method injects a fault (or its fault was "
                      "never seen in place): nothing was injected")
    return method(CheckStatus.PASSED, len(runs), f"{len(runs)} method activities ran and succeeded; in place: "
                  f"{'; '.join(inputs.timeline.faults_seen)}")


def _refused(run: Mapping[str, Any]) -> bool:
    return "refused by loadkit's safety guards" in " ".join(str(line) for line in run.get("exception") or [])


def _verdict(inputs: ChaosInputs, status: JournalStatus, checks: Sequence[Check]) -> tuple[Verdict, str]:
    if status is JournalStatus.INTERRUPTED and not inputs.timeline.stopped_by:
        return Verdict.INTERRUPTED, "interrupted: the rollbacks ran; what was collected is shown, not judged"
    if inputs.load_error is not None:  # what the load measured after it stopped is nothing: not judged
        return Verdict.ERROR, f"the load stopped before the experiment ended, so it was not judged: {inputs.load_error}"
    if inputs.timeline.stopped_by:
        return Verdict.ERROR, (f"loadkit stopped the experiment early: {inputs.timeline.stopped_by}; the rollbacks "
                               "ran, and the run did not test what it claims")
    if status is JournalStatus.ABORTED:
        return Verdict.ERROR, "the experiment aborted (an activity raised), so it tested nothing: see the journal"
    unmeasured = _unmeasured(inputs)
    if unmeasured:
        return Verdict.ERROR, f"the steady-state hypothesis could not measure, so nothing was judged: {unmeasured}"
    failed = [c.name for c in checks if c.status is CheckStatus.FAILED]
    if inputs.dry_run:  # nothing was injected, so nothing was tested: never a pass (nor a fail)
        also = f" (the probes saw failures even so: {', '.join(failed)})" if failed else ""
        return Verdict.DRY_RUN, f"a dry run: no fault was injected, nothing is judged{also}"
    before = _steady(inputs.journal, "before")
    if before is False:  # the canary was unhealthy before any fault: a finding, not a broken experiment
        return Verdict.FAIL, "the steady state before the fault was not met, so nothing was injected"
    if inputs.timeline.fault_start is None:
        method = next((c for c in checks if c.kind is CheckKind.GATE and c.metric == ChaosCheck.METHOD), None)
        return Verdict.ERROR, ("the fault was never injected, so nothing was tested"
                               + (f": {method.reason}" if method is not None else ""))
    skipped = [c.name for c in checks if c.status is CheckStatus.SKIPPED]
    if not failed and not skipped and status is JournalStatus.COMPLETED:
        return Verdict.PASS, f"all {len(checks)} checks passed"
    parts = [f"failed: {', '.join(failed)}"] if failed else []
    parts += [f"not judged (skipped): {', '.join(skipped)}"] if skipped else []
    parts += [] if status is JournalStatus.COMPLETED else [f"Chaos Toolkit's run status is {status.value}"]
    return Verdict.FAIL, "; ".join(parts)


def _unmeasured(inputs: ChaosInputs, *which: str) -> str:
    """A measuring probe of the hypothesis (loadkit's load probes, a Prometheus query) that failed:
    the hypothesis could not measure (too little load, no data), which says nothing about the canary."""
    for when in which or ("before", "after"):
        state = (inputs.journal.get("steady_states") or {}).get(when) or {}
        for run in state.get("probes") or []:
            name = str((run.get("activity") or {}).get("name"))
            if run.get("status") == "failed" and name in inputs.measuring:
                return f"probe {name} ({when} the fault): {_last_line(run.get('exception'))}"
    return ""


def _status(journal: Mapping[str, Any]) -> JournalStatus:
    try:
        return JournalStatus(str(journal.get("status")))
    except ValueError:
        return JournalStatus.ABORTED


def _last_line(exception: Any) -> str:
    """The exception's message, without the class names chaoslib stacks in front of it."""
    lines = [str(line).strip() for line in (exception or []) if str(line).strip()]
    text = lines[-1] if lines else "failed"
    return re.sub(r"^(?:(?:[\w.]*\.)?(?:ActivityFailed|InterruptExecution|ChaosException|InsufficientData|"
                  r"[A-Z]\w*Error|Exception):\s*)+", "", text) or text


def _rollbacks(experiment: Mapping[str, Any], journal: Mapping[str, Any], leftovers: Sequence[str],
               leftovers_failed: Sequence[str]) -> Rollbacks:
    runs = journal.get("rollbacks") or []
    return Rollbacks(planned=len(experiment.get("rollbacks") or []), run=len(runs),
                     failed=sum(1 for r in runs if r.get("status") != "succeeded"),
                     leftovers_removed=list(leftovers), leftovers_failed=list(leftovers_failed))


def _rollback_check(r: Rollbacks, method_ran: bool) -> Check:
    ok = r.run >= r.planned and r.failed == 0 and not r.leftovers_removed and not r.leftovers_failed
    status = CheckStatus.PASSED if ok else CheckStatus.FAILED
    if ok:
        reason = f"{r.run} of {r.planned} rollbacks ran and succeeded; nothing was left behind"
    elif not method_ran and r.run == 0 and not r.leftovers_removed and not r.leftovers_failed:
        status, reason = CheckStatus.SKIPPED, "the method never started: there was nothing to roll back"
    else:
        reason = (f"{r.run} of {r.planned} rollbacks ran, {r.failed} failed"
                  + (f"; loadkit removed what was left: {', '.join(r.leftovers_removed)}"
                     if r.leftovers_removed else "")
                  + (f"; STILL IN PLACE (loadkit could not remove it): {'; '.join(r.leftovers_failed)}"
                     if r.leftovers_failed else ""))
    return Check(name="rollbacks", metric=ChaosCheck.ROLLBACKS.value, kind=CheckKind.GATE, observed=float(r.run),
                 min=float(r.planned),
                 max=None, status=status, reason=reason)


def _steady(journal: Mapping[str, Any], which: str) -> bool | None:
    state = (journal.get("steady_states") or {}).get(which)
    return None if not state else bool(state.get("steady_state_met"))


def _warnings(inputs: ChaosInputs, rollbacks: Rollbacks, verdict: Verdict, reason: str) -> list[str]:
    warnings = list(inputs.timeline.notes)
    status = inputs.journal.get("status")
    if status == "aborted":
        warnings.append("the experiment aborted (an activity raised); see the journal")
    if status == "interrupted":
        warnings.append("interrupted: rollbacks were run, and what was collected is shown")
    if verdict is Verdict.ERROR and status != "aborted":
        warnings.append(reason)
    if rollbacks.leftovers_removed:
        warnings.append(f"faults were still there after the rollbacks and were removed: "
                        f"{', '.join(rollbacks.leftovers_removed)}")
    warnings += [f"STILL IN PLACE: {item}" for item in rollbacks.leftovers_failed]
    return warnings


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts or 0.0, UTC)
