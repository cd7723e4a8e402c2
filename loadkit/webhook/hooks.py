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
from loadkit.models import Verdict
from loadkit.webhook.models import EventRecord, HookAnswer, HookKind, LiveVerdict, RunRecord, RunStatus
from loadkit.webhook.policy import HookCall
from loadkit.webhook.runs import RunManager
from loadkit.webhook.store import Store, now

POLL_S = 0.05


def has_failed(run: RunRecord) -> bool:
    """Judged as failing: finished (or stopped) with a fail, or running with a breach over enough
    samples. Runs that could not run (error) or were cut off (interrupted) are not judged."""
    if run.status is RunStatus.RUNNING:
        return run.live is not None and run.live.verdict is LiveVerdict.FAIL
    return run.status in (RunStatus.COMPLETED, RunStatus.STOPPED) and run.verdict is Verdict.FAIL


def has_passed(run: RunRecord) -> bool:
    """Only a run that ran to its end and was scored can pass: stopped, interrupted or errored
    runs never do."""
    return run.status is RunStatus.COMPLETED and run.verdict is Verdict.PASS


def is_within(run: RunRecord) -> bool:
    """Within thresholds now: a pass, or running with a passing live score over enough samples."""
    if run.status is RunStatus.RUNNING:
        return run.live is not None and run.live.verdict is LiveVerdict.PASS
    return has_passed(run)


def current(runs: list[RunRecord]) -> list[RunRecord]:
    """The newest run of each (hook, profile) among a revision's runs (given newest first)."""
    seen: set[tuple[str, str]] = set()
    latest = []
    for run in runs:
        if (run.hook.value, run.profile) not in seen:
            seen.add((run.hook.value, run.profile))
            latest.append(run)
    return latest


def describe(run: RunRecord) -> str:
    """`run <id> (<profile> <hook>, <status>): <reason> <url>` for one-line answers."""
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
        """Blocking: run the profile, answer 200 on pass, 412 naming the failing check on fail.

        A pass already recorded for this revision and profile is reused, so a Flagger retry (or a
        webhook timeout shorter than the profile) does not start the check over.
        """
        latest = self._latest(call, hook=HookKind.PRE_ROLLOUT)
        if latest is not None and has_passed(latest):
            return HookAnswer(status=200, message=f"pre-rollout passed: {describe(latest)}", run=latest.id,
                              verdict=Verdict.PASS)
        plan = self._plan(call)
        record, _ = self.manager.start(call, plan)
        deadline = time.monotonic() + STARTUP_ALLOWANCE_S + plan.duration_s + 2 * STOP_GRACE_S
        while not self.manager.is_done(record.id) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        run = self.store.get_run(record.id) or record
        if has_passed(run):
            return HookAnswer(status=200, message=f"pre-rollout passed: {describe(run)}", run=run.id,
                              verdict=Verdict.PASS)
        if has_failed(run):
            return HookAnswer(status=412, message=f"pre-rollout failed: {describe(run)}", run=run.id,
                              verdict=Verdict.FAIL)
        return _unjudged("pre-rollout", run)

    async def rollout(self, call: HookCall) -> HookAnswer:
        """Ensure running: 202 when started, then 200 while within thresholds, 412 once breached."""
        latest = self._latest(call, hook=HookKind.ROLLOUT)
        if latest is None or (latest.finished and not has_passed(latest) and not has_failed(latest)):
            # Nothing yet, or the last attempt was cut off, stopped or could not run: (re)start.
            record, started = self.manager.start(call, self._plan(call))
            if started and latest is not None and latest.status is RunStatus.ERROR:
                return HookAnswer(status=424, message=f"rollout load could not run ({describe(latest)}); "
                                  f"retrying as run {record.id}", run=record.id)
            if started:
                return HookAnswer(status=202, message=f"rollout load started: {describe(record)}", run=record.id)
            latest = record
        if has_failed(latest):
            return HookAnswer(status=412, message=f"rollout load breached thresholds: {describe(latest)}",
                              run=latest.id, verdict=Verdict.FAIL)
        verdict = Verdict.PASS if has_passed(latest) else None
        return HookAnswer(status=200, message=f"rollout load ok: {describe(latest)}", run=latest.id,
                          verdict=verdict)

    # -- gates ----------------------------------------------------------------------------------------

    async def confirm_traffic_increase(self, call: HookCall) -> HookAnswer:
        """200 while every current run is within thresholds over enough samples; 403 otherwise
        (Flagger holds the weight, no penalty)."""
        runs = current(self._runs(call))
        if not runs:
            return HookAnswer(status=403, message=f"no load run for {_canary(call)} yet: holding traffic")
        blocking = [r for r in runs if not is_within(r)]
        if blocking:
            return HookAnswer(status=403, message=f"not (yet) within thresholds: {describe(blocking[0])}",
                              run=blocking[0].id)
        return HookAnswer(status=200, message=f"within thresholds: {describe(runs[0])}", run=runs[0].id)

    async def confirm_promotion(self, call: HookCall) -> HookAnswer:
        """200 only when this revision's latest runs all finished and passed; 403 while running,
        missing, failed, stopped, interrupted or errored (Flagger waits, no penalty)."""
        runs = current(self._runs(call))
        if not runs:
            return HookAnswer(status=403, message=f"no load run for {_canary(call)}: nothing to promote on")
        running = [r for r in runs if r.status is RunStatus.RUNNING]
        if running:
            return HookAnswer(status=403, message=f"still running: {describe(running[0])}", run=running[0].id)
        not_passed = [r for r in runs if not has_passed(r)]
        if not_passed:
            return HookAnswer(status=403, message=f"do not promote: {describe(not_passed[0])}",
                              run=not_passed[0].id, verdict=not_passed[0].verdict)
        return HookAnswer(status=200, message=f"promote: {describe(runs[0])}", run=runs[0].id, verdict=Verdict.PASS)

    async def rollback(self, call: HookCall) -> HookAnswer:
        """200 means "roll back now": only when a current run of this revision has failed."""
        runs = current(self._runs(call))
        if not runs:
            return HookAnswer(status=404, message=f"no rollback: no load run for {_canary(call)}")
        failed = [r for r in runs if has_failed(r)]
        if failed:
            return HookAnswer(status=200, message=f"roll back: {describe(failed[0])}", run=failed[0].id,
                              verdict=Verdict.FAIL)
        return HookAnswer(status=409, message=f"no rollback: {describe(runs[0])}", run=runs[0].id)

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

    def _latest(self, call: HookCall, hook: HookKind) -> RunRecord | None:
        """The newest run of this hook and the call's profile, for this revision."""
        for run in self._runs(call):
            if run.hook is hook:
                return run
        return None

    def _with_live(self, run: RunRecord) -> RunRecord:
        if run.status is RunStatus.RUNNING:
            live = self.manager.live(run.id)
            if live is not None:
                return run.model_copy(update={"live": live})
        return run


def _unjudged(hook: str, run: RunRecord) -> HookAnswer:
    """A run that could not be judged: 424 (a failed check, with the reason visible in Flagger's
    events, but no rollback signal) when it could not run; 503 (retry) when the server stopped."""
    if run.status is RunStatus.INTERRUPTED or run.status is RunStatus.RUNNING:
        return HookAnswer(status=503, message=f"{hook} was cut off, retry: {describe(run)}", run=run.id)
    return HookAnswer(status=424, message=f"{hook} could not run: {describe(run)}", run=run.id)


def _canary(call: HookCall) -> str:
    return f"{call.namespace}/{call.name} checksum {call.checksum or '(none)'}"
