"""Manual gates, as flagger-loadtester's /gate/* and /rollback/* give them, but authenticated and kept.

Per canary and analysis: approve or halt confirm-traffic-increase and confirm-promotion, and open
or close a manual rollback; per canary, approve or halt the *next* rollout (confirm-rollout runs
before its analysis opens). Everything resets on a new revision: gates belong to one analysis,
and the next rollout's approval is used up when its analysis opens.

    loadkit gate approve bruno/bruno-site --server http://loadkit.loadkit      # promote / go on
    loadkit gate halt bruno/bruno-site --server ...                            # hold, whatever the load says
    loadkit gate rollback bruno/bruno-site --server ...                        # the rollback hook answers 200
"""

from __future__ import annotations

from dataclasses import dataclass

from loadkit.errors import NotReadyError, PayloadError
from loadkit.webhook.logs import log_event
from loadkit.webhook.models import (
    GATE_HOOKS,
    AnalysisRecord,
    GateMode,
    GateRecord,
    GateRequest,
    GateState,
    GateStatus,
    HookKind,
)
from loadkit.webhook.store import NEXT_ROLLOUT, Store, now

ROLLBACK = HookKind.ROLLBACK.value
ANALYSIS_GATES = (HookKind.CONFIRM_TRAFFIC_INCREASE.value, HookKind.CONFIRM_PROMOTION.value)


@dataclass(frozen=True)
class Gates:
    store: Store

    # -- decisions through the API ------------------------------------------------------------------

    def decide(self, namespace: str, name: str, state: GateState, request: GateRequest) -> GateStatus:
        """Approve or halt: the named hook's gate, or by default every gate of the moment (the open
        analysis's confirm-* gates, or the next rollout's confirm-rollout when no analysis is open)."""
        analysis = self.store.open_analysis(namespace, name)
        hooks = [request.hook] if request.hook else (list(ANALYSIS_GATES) if analysis else
                                                     [HookKind.CONFIRM_ROLLOUT.value])
        changed = []
        if state is GateState.APPROVED and analysis is not None and request.hook is None:
            self._lift_next_rollout_halt(namespace, name)
        for hook in hooks:
            if hook == HookKind.CONFIRM_ROLLOUT.value:
                owner = NEXT_ROLLOUT
            elif analysis is None:
                raise NotReadyError(f"no analysis of {namespace}/{name} is open, so there is no {hook} to "
                                    f"{_verb(state)}; approve the next rollout with hook confirm-rollout")
            else:
                owner = analysis.id
            gate = GateRecord(namespace=namespace, name=name, analysis=owner, hook=hook, state=state,
                              reason=request.reason, updated_at=now())
            self.store.set_gate(gate)
            changed.append(gate)
        log_event("gate", namespace=namespace, name=name, analysis=analysis.id if analysis else None,
                  state=state.value, hooks=",".join(hooks), reason=request.reason or None)
        what = ", ".join(hooks)
        return self.status(namespace, name, f"{_past(state)} {what} of {_scope(analysis, hooks)}")

    def _lift_next_rollout_halt(self, namespace: str, name: str) -> None:
        """An approval of the moment also lifts a halt set for the next rollout (it carried into this
        analysis), without approving the next rollout itself."""
        gate = self._gate(namespace, name, NEXT_ROLLOUT, HookKind.CONFIRM_ROLLOUT.value)
        if gate is not None and gate.state is GateState.HALTED:
            self.store.clear_gate(namespace, name, NEXT_ROLLOUT, HookKind.CONFIRM_ROLLOUT.value)

    def open_rollback(self, namespace: str, name: str, reason: str) -> GateStatus:
        analysis = self.store.open_analysis(namespace, name)
        if analysis is None:
            raise NotReadyError(f"no analysis of {namespace}/{name} is open: there is nothing to roll back")
        self.store.set_gate(GateRecord(namespace=namespace, name=name, analysis=analysis.id, hook=ROLLBACK,
                                       state=GateState.OPEN, reason=reason, updated_at=now()))
        log_event("gate", namespace=namespace, name=name, analysis=analysis.id, state="rollback-open",
                  reason=reason or None)
        return self.status(namespace, name, f"rollback opened for analysis {analysis.id}: Flagger rolls back at "
                                            "its next rollback hook call")

    def close_rollback(self, namespace: str, name: str) -> GateStatus:
        analysis = self.store.open_analysis(namespace, name)
        removed = analysis is not None and self.store.clear_gate(namespace, name, analysis.id, ROLLBACK)
        log_event("gate", namespace=namespace, name=name, analysis=analysis.id if analysis else None,
                  state="rollback-closed")
        return self.status(namespace, name, "rollback closed" if removed else "no rollback was open")

    def status(self, namespace: str, name: str, message: str = "") -> GateStatus:
        analysis = self.store.open_analysis(namespace, name)
        owners = (NEXT_ROLLOUT, analysis.id) if analysis else (NEXT_ROLLOUT,)
        return GateStatus(namespace=namespace, name=name, analysis=analysis,
                          gates=self.store.gates(namespace, name, owners), message=message)

    # -- what hooks ask -------------------------------------------------------------------------------

    def blocked(self, namespace: str, name: str, analysis: str, hook: HookKind, mode: GateMode) -> str:
        """Why a confirm-* hook must wait for a person ("" when it need not): a halt always holds;
        `manual` and `both` need an approval."""
        gate = self._gate(namespace, name, analysis, hook.value)
        canary = f"{namespace}/{name}"
        if gate is not None and gate.state is GateState.HALTED:
            why = f": {gate.reason}" if gate.reason else ""
            return f"halted by hand{why} (loadkit gate approve {canary} --hook {hook.value} lets it go on)"
        if mode is not GateMode.LOAD and (gate is None or gate.state is not GateState.APPROVED):
            return f"waiting for approval: loadkit gate approve {canary} --hook {hook.value}"
        return ""

    def rollback_open(self, namespace: str, name: str, analysis: str) -> GateRecord | None:
        gate = self._gate(namespace, name, analysis, ROLLBACK)
        return gate if gate is not None and gate.state is GateState.OPEN else None

    def _gate(self, namespace: str, name: str, analysis: str, hook: str) -> GateRecord | None:
        owner = NEXT_ROLLOUT if hook == HookKind.CONFIRM_ROLLOUT.value else analysis
        return next((g for g in self.store.gates(namespace, name, (owner,)) if g.hook == hook), None)


def check_hook(hook: str | None) -> None:
    if hook is not None and hook not in GATE_HOOKS:
        raise PayloadError(f"hook {hook!r} has no gate; use one of {', '.join(GATE_HOOKS)}")


def _verb(state: GateState) -> str:
    return "approve" if state is GateState.APPROVED else "halt"


def _past(state: GateState) -> str:
    return "approved" if state is GateState.APPROVED else "halted"


def _scope(analysis: AnalysisRecord | None, hooks: list[str]) -> str:
    if hooks == [HookKind.CONFIRM_ROLLOUT.value]:
        return "the next rollout"
    return f"analysis {analysis.id} (checksum {analysis.checksum})" if analysis else "the next rollout"
