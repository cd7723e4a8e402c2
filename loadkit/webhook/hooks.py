"""One handler per Flagger hook kind: the store and the running runs in, a HookAnswer out.

Flagger treats only 200/201/202 as success. A failed check is a 4xx with a one-line reason and
the run's URL (Flagger keeps 4xx bodies in its events and drops 5xx ones); 5xx/429 mean
"transient, try again". Never 204. What each answer means to Flagger: docs/webhook.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from loadkit.config import Config
from loadkit.errors import ConfigError, PayloadError, UsageError
from loadkit.load.runner import STARTUP_ALLOWANCE_S, STOP_GRACE_S, LoadPlan
from loadkit.load.session import plan_run
from loadkit.webhook.models import EventRecord, HookAnswer, HookKind, RunRecord, RunStatus
from loadkit.webhook.policy import HookCall
from loadkit.webhook.runs import RunManager
from loadkit.webhook.store import Store, now

POLL_S = 0.05


def has_failed(run: RunRecord) -> bool:
    """Finished with a fail verdict, or still running with a breach over enough samples."""
    if run.status is RunStatus.RUNNING:
        return run.live is not None and run.live.verdict == "fail"
    return run.verdict == "fail"


def has_passed(run: RunRecord) -> bool:
    """Only a run that ran and was scored can pass: interrupted or errored runs never do."""
    return run.status in (RunStatus.COMPLETED, RunStatus.STOPPED) and run.verdict == "pass"


def describe(run: RunRecord) -> str:
    """`run <id> (<profile>, <status>): <reason> <url>` for one-line answers."""
    reason = run.live.reason if run.status is RunStatus.RUNNING and run.live else run.reason
    return f"run {run.id} ({run.profile} {run.hook.value}, {run.status.value}): {reason or 'starting'} {run.url}"


class Hooks:
    def __init__(self, manager: RunManager, store: Store, config: Config) -> None:
        self.manager = manager
        self.store = store
        self.config = config
        self._handlers: dict[HookKind, Callable[[HookCall], Awaitable[HookAnswer]]] = {
            HookKind.CONFIRM_ROLLOUT: self.confirm_rollout,
            HookKind.PRE_ROLLOUT: self.pre_rollout,
            HookKind.ROLLOUT: self.rollout,
            HookKind.CONFIRM_TRAFFIC_INCREASE: self.confirm_traffic_increase,
            HookKind.CONFIRM_PROMOTION: self.confirm_promotion,
            HookKind.ROLLBACK: self.rollback,
            HookKind.POST_ROLLOUT: self.post_rollout,
            HookKind.EVENT: self.event,
        }

    async def handle(self, call: HookCall) -> HookAnswer:
        return await self._handlers[call.kind](call)

    # -- hooks that run load ------------------------------------------------------------------------

    async def pre_rollout(self, call: HookCall) -> HookAnswer:
        """Blocking: run the profile, answer 200 on pass, 412 naming the failing check on fail."""
        plan = self._plan(call)
        record, _ = self.manager.start(call, plan)
        deadline = time.monotonic() + STARTUP_ALLOWANCE_S + plan.duration_s + 2 * STOP_GRACE_S
        while not self.manager.is_done(record.id) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        run = self.store.get_run(record.id) or record
        if run.status is RunStatus.RUNNING:
            return HookAnswer(status=503, message=f"pre-rollout still running, retry: {describe(run)}", run=run.id)
        if has_passed(run):
            return HookAnswer(status=200, message=f"pre-rollout passed: {describe(run)}", run=run.id, verdict="pass")
        if run.verdict == "fail":
            return HookAnswer(status=412, message=f"pre-rollout failed: {describe(run)}", run=run.id, verdict="fail")
        return HookAnswer(status=503, message=f"pre-rollout could not be judged, retry: {describe(run)}",
                          run=run.id)

    async def rollout(self, call: HookCall) -> HookAnswer:
        """Ensure running: 202 when started, then 200 while within thresholds, 412 once breached."""
        profile = call.profile.name if call.profile else ""
        latest = self._latest(call, hook=HookKind.ROLLOUT, profile=profile)
        if latest is None or latest.status in (RunStatus.INTERRUPTED, RunStatus.ERROR):
            # Nothing yet, or the last attempt was cut off or could not run: (re)start. A target that
            # could not be reached still costs Flagger one failed check, reported now.
            record, started = self.manager.start(call, self._plan(call))
            if started and latest is not None and latest.verdict == "fail":
                return HookAnswer(status=412, message=f"rollout load failed ({describe(latest)}); retrying as "
                                  f"run {record.id}", run=record.id, verdict="fail")
            if started:
                return HookAnswer(status=202, message=f"rollout load started: {describe(record)}", run=record.id)
            latest = self._with_live(record)
        if has_failed(latest):
            return HookAnswer(status=412, message=f"rollout load breached thresholds: {describe(latest)}",
                              run=latest.id, verdict="fail")
        verdict = "pass" if has_passed(latest) else None
        return HookAnswer(status=200, message=f"rollout load ok: {describe(latest)}", run=latest.id, verdict=verdict)

    # -- gates ----------------------------------------------------------------------------------------

    async def confirm_traffic_increase(self, call: HookCall) -> HookAnswer:
        """200 while the live score is within thresholds over enough samples; 403 otherwise (Flagger waits)."""
        latest = self._latest(call)
        if latest is None:
            return HookAnswer(status=403, message=f"no load run for {_canary(call)} yet: holding traffic")
        if latest.status is RunStatus.RUNNING:
            within = latest.live is not None and latest.live.verdict == "pass"
        else:
            within = has_passed(latest)
        if within:
            return HookAnswer(status=200, message=f"within thresholds: {describe(latest)}", run=latest.id)
        return HookAnswer(status=403, message=f"not (yet) within thresholds: {describe(latest)}", run=latest.id)

    async def confirm_promotion(self, call: HookCall) -> HookAnswer:
        """200 only when the latest finished run for this checksum passed; 403 while running, missing, failed."""
        runs = self._runs(call)
        running = [r for r in runs if r.status is RunStatus.RUNNING]
        if running:
            return HookAnswer(status=403, message=f"still running: {describe(running[0])}", run=running[0].id)
        if not runs:
            return HookAnswer(status=403, message=f"no load run for {_canary(call)}: nothing to promote on")
        if has_passed(runs[0]):
            return HookAnswer(status=200, message=f"promote: {describe(runs[0])}", run=runs[0].id, verdict="pass")
        return HookAnswer(status=403, message=f"do not promote: {describe(runs[0])}", run=runs[0].id,
                          verdict=runs[0].verdict)

    async def rollback(self, call: HookCall) -> HookAnswer:
        """200 means "roll back now": only when the current run for this checksum has failed."""
        latest = self._latest(call)
        if latest is None:
            return HookAnswer(status=404, message=f"no rollback: no load run for {_canary(call)}")
        if has_failed(latest):
            return HookAnswer(status=200, message=f"roll back: {describe(latest)}", run=latest.id, verdict="fail")
        return HookAnswer(status=409, message=f"no rollback: {describe(latest)}", run=latest.id)

    async def confirm_rollout(self, call: HookCall) -> HookAnswer:
        freeze = self.store.freeze_for(call.namespace, call.name)
        if freeze is not None:
            return HookAnswer(status=403, message=f"rollouts are frozen for {freeze.namespace}/{freeze.name}: "
                              f"{freeze.reason}")
        return HookAnswer(status=200, message=f"rollout of {_canary(call)} confirmed")

    # -- bookkeeping ------------------------------------------------------------------------------------

    async def post_rollout(self, call: HookCall) -> HookAnswer:
        """Stop this canary's background load, finalise and store the results."""
        stopped = self.manager.request_stop(call.namespace, call.name)
        deadline = time.monotonic() + 2 * STOP_GRACE_S
        while any(not self.manager.is_done(r) for r in stopped) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        summary = ", ".join(describe(r) for r in (self.store.get_run(i) for i in stopped) if r) or "none running"
        return HookAnswer(status=200, message=f"post-rollout ({call.payload.phase}): stopped {len(stopped)} "
                          f"run(s): {summary}")

    async def event(self, call: HookCall) -> HookAnswer:
        meta = call.payload.metadata or {}
        self.store.insert_event(EventRecord(
            namespace=call.namespace, name=call.name, phase=call.payload.phase, checksum=call.checksum,
            event_type=meta.get("eventType", ""), message=meta.get("eventMessage", ""),
            timestamp=meta.get("timestamp", ""), received_at=now(),
        ))
        return HookAnswer(status=200, message="event stored")

    # -- helpers ------------------------------------------------------------------------------------

    def _plan(self, call: HookCall) -> LoadPlan:
        assert call.profile is not None  # resolved for run hooks
        try:
            return plan_run(call.profile, target=call.target, users=call.users, spawn_rate=call.spawn_rate,
                            duration_s=call.duration_s, headers=call.headers,
                            base_dir=self.config.path.parent if self.config.path else None)
        except (ConfigError, UsageError) as exc:
            raise PayloadError(exc.message.replace("\n", " ")) from None

    def _runs(self, call: HookCall) -> list[RunRecord]:
        """Runs for this revision, newest first, with the live state of running ones."""
        runs = self.store.runs_for(call.namespace, call.name, call.checksum)
        if call.profile is not None:
            runs = [r for r in runs if r.profile == call.profile.name]
        return [self._with_live(r) for r in runs]

    def _latest(self, call: HookCall, hook: HookKind | None = None, profile: str | None = None) -> RunRecord | None:
        for run in self._runs(call):
            if (hook is None or run.hook is hook) and (profile is None or run.profile == profile):
                return run
        return None

    def _with_live(self, run: RunRecord) -> RunRecord:
        if run.status is RunStatus.RUNNING:
            live = self.manager.live(run.id)
            if live is not None:
                return run.model_copy(update={"live": live})
        return run


def _canary(call: HookCall) -> str:
    return f"{call.namespace}/{call.name} checksum {call.checksum or '(none)'}"
