"""The analysis lifecycle: which Flagger analysis a hook call belongs to.

Read from Flagger's scheduler (fluxcd/flagger pkg/controller/scheduler.go; reference §1.5):
- The checksum is a hash of *content* (pod template and tracked configs). It repeats (A -> B -> A,
  a revert, a spec re-applied after a failure), so it is not an analysis id.
- An analysis of (namespace, name) opens at the first hook of a revision that Flagger calls while
  Progressing: on each such tick the rollback hooks run first, then pre-rollout (at weight 0) or
  rollout, the confirm-* gates. It closes at post-rollout (promotion or rollback), when a
  different checksum arrives for the same canary ("New revision detected! Restarting analysis"
  calls no post-rollout), or when confirm-rollout is called: Flagger calls it only between
  analyses, so an analysis still open then has ended without its post-rollout reaching loadkit.
- confirm-rollout's checksum is the *previous* revision's (LastAppliedSpec is synced only after
  it passes), so it never opens an analysis; its gates belong to "the next rollout".
- Without a checksum (Flagger before 1.34) a new revision mid-analysis is invisible, so analysis
  hooks are refused (400) rather than let two revisions share verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadkit.errors import PayloadError
from loadkit.webhook.logs import log_event
from loadkit.webhook.models import AnalysisOutcome, AnalysisRecord
from loadkit.webhook.policy import HookCall
from loadkit.webhook.runs import RunManager
from loadkit.webhook.store import Store

NO_CHECKSUM = ("the payload has no checksum: loadkit needs Flagger 1.34 or newer, which sends the revision's "
               "checksum, to tell one analysis from the next (without it a new revision would inherit the last "
               "one's verdicts)")


@dataclass(frozen=True)
class Lifecycle:
    store: Store
    manager: RunManager

    def enter(self, call: HookCall) -> AnalysisRecord:
        """The analysis this analysis-hook call belongs to, opening (and superseding) as Flagger moves on."""
        if not call.checksum:
            raise PayloadError(NO_CHECKSUM)
        analysis, opened, superseded = self.store.enter_analysis(call.namespace, call.name, call.checksum,
                                                                 call.kind.value)
        if superseded is not None:
            stopped = self.manager.end_analysis(superseded.id, superseded=True)
            _closed(superseded, stopped)
        self.manager.seen(analysis.id)
        if opened:
            log_event("analysis_open", analysis=analysis.id, namespace=call.namespace, name=call.name,
                      checksum=call.checksum, hook=call.kind.value,
                      superseded=superseded.id if superseded else None)
        return analysis

    def close(self, call: HookCall, outcome: AnalysisOutcome, reason: str) -> tuple[AnalysisRecord | None, list[str]]:
        """Close the canary's open analysis and end its runs: (the closed analysis, run ids asked to stop)."""
        closed = self.store.close_analysis(call.namespace, call.name, outcome, reason)
        if closed is None:
            return None, []
        stopped = self.manager.end_analysis(closed.id, superseded=False)
        _closed(closed, stopped)
        return closed, stopped


def outcome_of(phase: str) -> AnalysisOutcome:
    """post-rollout's phase: Succeeded after a promotion, Failed after a rollback."""
    return {"Succeeded": AnalysisOutcome.SUCCEEDED, "Failed": AnalysisOutcome.FAILED}.get(phase, AnalysisOutcome.ENDED)


def _closed(analysis: AnalysisRecord, stopped: list[str]) -> None:
    log_event("analysis_close", analysis=analysis.id, namespace=analysis.namespace, name=analysis.name,
              checksum=analysis.checksum, outcome=analysis.outcome.value if analysis.outcome else None,
              runs_stopped=len(stopped), reason=analysis.reason)
