"""Score a chaos run: the journal, the phases and the load in, one ChaosResult out.

Checks, all of which must pass for a `pass`:
- steady-state-before / steady-state-after: Chaos Toolkit's hypothesis (a gate that was not met
  reads `completed` in the journal, so it is checked here explicitly);
- the load thresholds (request-success-rate, request-duration, error-rate, ...) over the fault
  window, where a weakness shows;
- availability (default min 100 %: zero downtime) and recovery-time (default max 120 s);
- rollbacks: every planned rollback ran and succeeded, and no fault was left behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loadkit.chaos.live import Stamped
from loadkit.chaos.models import ChaosCheck, ChaosResult, FaultWindow, JournalStatus, PhaseLoad, Rollbacks
from loadkit.chaos.phases import phase_stats, recovery_time
from loadkit.models import Check, Metric, Stats, Threshold, Verdict
from loadkit.scoring import Observation, evaluate, observations_from_stats

SETTLE_S = 1.5  # requests in flight when a fault is removed still finish with it: count them in


@dataclass
class Timeline:
    """When each part of the experiment happened (time.time()), recorded by the event handler."""

    load_start: float = 0.0
    load_end: float = 0.0
    fault_start: float | None = None
    method_end: float | None = None
    rollbacks_end: float | None = None
    leftovers_removed_at: float | None = None  # loadkit removed a fault the rollbacks had not
    notes: list[str] = field(default_factory=list)

    @property
    def fault_end(self) -> float | None:
        """When the fault was removed (the rollbacks ended), plus the time its in-flight requests
        need to finish; without rollbacks, the end of the method."""
        if self.fault_start is None:
            return None
        removed = self.leftovers_removed_at or self.rollbacks_end or self.method_end or self.load_end
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


def build_chaos_result(inputs: ChaosInputs) -> ChaosResult:
    j, t = inputs.journal, inputs.timeline
    before_met, after_met = _steady(j, "before"), _steady(j, "after")
    fault_start, fault_end = t.fault_start, t.fault_end
    phases = _phases(inputs.windows, t)
    fault_stats = phases[1].stats if fault_start is not None else phase_stats(inputs.windows, None, None)
    recovery = None
    if fault_start is not None:
        recovery = recovery_time(inputs.windows, fault_start, inputs.load_thresholds, inputs.recovery_window_s)
    rollbacks = _rollbacks(inputs.experiment, j, inputs.leftovers)
    status = _status(j)
    checks = [*_gate_checks(before_met, after_met, bool(j.get("deviated"))), _method_check(j, inputs.dry_run),
              *_load_checks(inputs, fault_stats, recovery, fault_start is not None, status),
              _rollback_check(rollbacks)]
    passed = sum(c.weight for c in checks if c.passed)
    total = sum(c.weight for c in checks)
    verdict = Verdict.PASS if all(c.passed for c in checks) and status is JournalStatus.COMPLETED else Verdict.FAIL
    return ChaosResult(
        verdict=verdict, score=round(100.0 * passed / total, 1) if total else 0.0,
        experiment=str(inputs.experiment.get("title", "")), experiment_path=inputs.path, target=inputs.target,
        profile=inputs.profile, started_at=_dt(t.load_start), ended_at=_dt(t.load_end),
        journal_status=status, deviated=bool(j.get("deviated")),
        interrupted=status is JournalStatus.INTERRUPTED, dry_run=inputs.dry_run,
        steady_state_before_met=before_met, steady_state_after_met=after_met, rollbacks=rollbacks,
        fault=FaultWindow(start=_dt(fault_start), end=_dt(fault_end), duration_s=round(fault_end - fault_start, 3))
        if fault_start is not None and fault_end is not None else None,
        phases=phases,
        availability_pct=fault_stats.success_rate_pct if fault_start is not None else None,
        recovery_time_s=round(recovery, 1) if recovery is not None else None,
        checks=checks, thresholds=[*inputs.load_thresholds, *inputs.chaos_thresholds],
        warnings=_warnings(inputs, rollbacks), journal_path=inputs.journal_path,
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


def _gate_checks(before: bool | None, after: bool | None, deviated: bool) -> list[Check]:
    def gate(name: str, met: bool | None, what: str) -> Check:
        passed = met is not False
        reason = (f"steady state {what} was met" if met else f"steady state {what} was NOT met") \
            if met is not None else f"not checked {what} (no hypothesis, or the run stopped first)"
        return Check(name=name, metric=ChaosCheck.STEADY_STATE.value, observed=None if met is None else float(met),
                     min=None,
                     max=None, passed=passed, reason=reason)

    checks = [gate("steady-state-before", before, "before the fault")]
    after_check = gate("steady-state-after", after, "after the fault")
    if deviated and after_check.passed:
        after_check = after_check.model_copy(update={"passed": False, "reason": "the steady state deviated"})
    return [*checks, after_check]


def _load_checks(inputs: ChaosInputs, fault: Stats, recovery: float | None, had_fault: bool,
                 status: JournalStatus) -> list[Check]:
    observations: dict[Metric, Observation] = dict(observations_from_stats(fault))
    observations[Metric.AVAILABILITY] = Observation(fault.success_rate_pct if fault.requests else None,
                                                    fault.requests, "%")
    observations[Metric.RECOVERY_TIME] = Observation(recovery, fault.requests, "s")
    thresholds = list(inputs.load_thresholds) + ([] if inputs.dry_run else list(inputs.chaos_thresholds))
    card = evaluate(thresholds, observations, inputs.min_samples, inputs.external)
    where = "during the fault" if had_fault else "over the whole run (nothing was injected)"
    checks = []
    for check in card.checks:
        reason = check.reason
        if check.metric == Metric.RECOVERY_TIME and check.observed is None and had_fault:
            reason = ("interrupted before a recovery could be measured" if status is JournalStatus.INTERRUPTED
                      else "did not recover: the thresholds never held again over a whole window before the load "
                      "ended")
        checks.append(check.model_copy(update={"reason": f"{reason} ({where})"}))
    return checks


def _method_check(journal: Mapping[str, Any], dry_run: bool) -> Check:
    """Chaos Toolkit records a failed action without failing the run; an experiment whose fault was
    never injected (refused by a guard, an API error) tested nothing, so it cannot pass."""
    runs = journal.get("run") or []
    failed = [r for r in runs if r.get("status") != "succeeded" and (r.get("activity") or {}).get("type") == "action"]
    metric = ChaosCheck.METHOD.value
    if not failed:
        reason = "dry run: no action ran" if dry_run else f"{len(runs)} method activities ran and succeeded"
        return Check(name="method", metric=metric, observed=float(len(runs)), min=None, max=None, passed=True,
                     reason=reason)
    details = "; ".join(f"{(r.get('activity') or {}).get('name')}: {_last_line(r.get('exception'))}" for r in failed)
    return Check(name="method", metric=metric, observed=float(len(runs) - len(failed)), min=None, max=None,
                 passed=False, reason=f"{len(failed)} action(s) failed, so the fault was not (fully) injected: "
                 f"{details}")


def _status(journal: Mapping[str, Any]) -> JournalStatus:
    try:
        return JournalStatus(str(journal.get("status")))
    except ValueError:
        return JournalStatus.ABORTED


def _last_line(exception: Any) -> str:
    lines = [str(line).strip() for line in (exception or []) if str(line).strip()]
    return lines[-1] if lines else "failed"


def _rollbacks(experiment: Mapping[str, Any], journal: Mapping[str, Any], leftovers: Sequence[str]) -> Rollbacks:
    runs = journal.get("rollbacks") or []
    return Rollbacks(planned=len(experiment.get("rollbacks") or []), run=len(runs),
                     failed=sum(1 for r in runs if r.get("status") != "succeeded"),
                     leftovers_removed=list(leftovers))


def _rollback_check(r: Rollbacks) -> Check:
    ok = r.run >= r.planned and r.failed == 0 and not r.leftovers_removed
    if ok:
        reason = f"{r.run} of {r.planned} rollbacks ran and succeeded; nothing was left behind"
    else:
        reason = (f"{r.run} of {r.planned} rollbacks ran, {r.failed} failed"
                  + (f"; loadkit removed what was left: {', '.join(r.leftovers_removed)}"
                     if r.leftovers_removed else ""))
    return Check(name="rollbacks", metric=ChaosCheck.ROLLBACKS.value, observed=float(r.run), min=float(r.planned),
                 max=None,
                 passed=ok, reason=reason)


def _steady(journal: Mapping[str, Any], which: str) -> bool | None:
    state = (journal.get("steady_states") or {}).get(which)
    return None if not state else bool(state.get("steady_state_met"))


def _warnings(inputs: ChaosInputs, rollbacks: Rollbacks) -> list[str]:
    warnings = list(inputs.timeline.notes)
    status = inputs.journal.get("status")
    if status == "aborted":
        warnings.append("the experiment aborted (an activity raised); see the journal")
    if status == "interrupted":
        warnings.append("interrupted: rollbacks were run, and what was collected is scored")
    if rollbacks.leftovers_removed:
        warnings.append(f"faults were still there after the rollbacks and were removed: "
                        f"{', '.join(rollbacks.leftovers_removed)}")
    return warnings


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts or 0.0, UTC)
