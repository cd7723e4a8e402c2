"""A scenario judged against its expectation, and the game day's verdict: no I/O.

Which of a chaos run's checks count for a scenario depends on what the team expects of it:
- `survives`: all of them (every threshold holds through the fault, then the system recovers);
- `degrades`: all but the checks over the fault window (thresholds, their worst windows,
  availability): those may break; the steady states, the method, the rollbacks and the recovery
  time count;
- `detected`: as `degrades`, plus a check `detected` that passes when a threshold over the fault
  window broke (the fault was seen): judged on data and failed, not failed for "no data" or
  "insufficient data" (too little load to see anything is not detection).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from loadkit.chaos.models import ChaosResult
from loadkit.gameday.models import GameDayVerdict, ScenarioResult, ScenarioStatus
from loadkit.gameday.plan import Expect, ScenarioSpec
from loadkit.models.results import Check, CheckStatus, Verdict
from loadkit.models.specs import CheckKind, Metric
from loadkit.scoring import scenario_score


def impact(check: Check) -> bool:
    """A check over the fault window (it may break when the scenario expects degradation)."""
    return check.kind is not CheckKind.GATE and check.metric != Metric.RECOVERY_TIME.value


def breached(check: Check) -> bool:
    """A check that failed on data: the threshold really broke (not "could not be judged")."""
    if check.status is not CheckStatus.FAILED or check.observed is None:
        return False
    return not check.reason.lower().startswith(("no data", "nodata", "insufficient data"))


def counted_checks(expect: Expect, chaos: ChaosResult) -> list[Check]:
    if expect is Expect.SURVIVES:
        return list(chaos.checks)
    kept = [c for c in chaos.checks if not impact(c)]
    if expect is Expect.DETECTED:
        broke = [c.name for c in chaos.checks if impact(c) and breached(c)]
        kept.append(Check(name="detected", metric="detected", kind=CheckKind.GATE, observed=float(len(broke)),
                          min=1, max=None, status=CheckStatus.PASSED if broke else CheckStatus.FAILED,
                          reason=f"seen by {', '.join(broke)}" if broke else
                          "no threshold over the fault window broke: the fault went unseen"))
    return kept


def judge(scenario: ScenarioSpec, chaos: ChaosResult, *, halted: str | None) -> ScenarioResult:
    """`halted`: the stop condition's reason when one fired during (or before the end of) this run."""
    checks = counted_checks(scenario.expect, chaos)
    passed = sum(1 for c in checks if c.status is CheckStatus.PASSED)
    if chaos.interrupted:
        status, reason = ScenarioStatus.INTERRUPTED, chaos.reason or "interrupted: rolled back"
    elif halted:
        status, reason = ScenarioStatus.HALTED, f"halted: {halted}"
    elif chaos.verdict is Verdict.ERROR:
        status, reason = ScenarioStatus.ERROR, chaos.reason
    elif passed == len(checks) and checks:
        status, reason = ScenarioStatus.PASSED, ""
    else:
        failing = [c.name for c in checks if c.status is not CheckStatus.PASSED]
        status, reason = ScenarioStatus.FAILED, f"{scenario.expect.value}: not met by {', '.join(failing)}"
    ran = status not in (ScenarioStatus.HALTED, ScenarioStatus.INTERRUPTED, ScenarioStatus.ERROR)
    return ScenarioResult(name=scenario.name, experiment_path=chaos.experiment_path, expect=scenario.expect,
                          category=scenario.category, weight=scenario.weight, status=status,
                          score=scenario_score(passed, len(checks), ran), reason=reason,
                          started_at=chaos.started_at, ended_at=chaos.ended_at, checks=checks, chaos=chaos)


def not_run(scenario: ScenarioSpec, path: str, status: ScenarioStatus, reason: str,
            started: datetime | None) -> ScenarioResult:
    return ScenarioResult(name=scenario.name, experiment_path=path, expect=scenario.expect,
                          category=scenario.category, weight=scenario.weight, status=status, score=0.0,
                          reason=reason, started_at=started)


def gameday_verdict(scenarios: Sequence[ScenarioResult], *, halted: str | None, interrupted: bool,
                    error: str | None, dry_run: bool = False) -> tuple[GameDayVerdict, str]:
    """interrupted > halted > error > dry-run > fail > pass; the reason names the first scenario to blame."""
    if interrupted:
        return GameDayVerdict.INTERRUPTED, "the current scenario was rolled back; the rest were skipped"
    if halted:
        return GameDayVerdict.HALTED, halted
    if error:
        return GameDayVerdict.ERROR, error
    errors = [s for s in scenarios if s.status is ScenarioStatus.ERROR]
    if errors:
        return GameDayVerdict.ERROR, f"scenario {errors[0].name} tested nothing: {errors[0].reason}"
    failed = [s for s in scenarios if s.status is not ScenarioStatus.PASSED]
    if dry_run:
        also = f" ({len(failed)} of {len(scenarios)} scenarios did not pass even so, first: {failed[0].name})" \
            if failed else ""
        return GameDayVerdict.DRY_RUN, f"a dry run: no fault was injected, nothing is judged{also}"
    if failed:
        return GameDayVerdict.FAIL, f"{len(failed)} of {len(scenarios)} scenarios failed (first: {failed[0].name})"
    return GameDayVerdict.PASS, ""
