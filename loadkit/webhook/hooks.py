"""One handler per Flagger hook kind: the call and its analysis in, a HookAnswer out.

Flagger treats only 200/201/202 as success. A failed check is a 4xx with a one-line reason and
the run's URL (Flagger keeps 4xx bodies in its events and drops 5xx ones); 5xx/429 mean
"transient, try again". Never 204. What each answer means to Flagger: docs/webhook.md.

Every verdict comes from the current analysis (see analyses.py): a run of a closed analysis, or
of another revision with the same checksum, is history and never an answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable, Callable

from loadkit.config import Config, RollbackOn, WorkersSpec
from loadkit.errors import ConfigError, PayloadError, UsageError
from loadkit.load.plan import plan_run
from loadkit.load.runner import STARTUP_ALLOWANCE_S, STOP_GRACE_S, LoadPlan
from loadkit.load.shapes import RateStage, Stage
from loadkit.models.results import Verdict
from loadkit.webhook.analyses import Lifecycle, outcome_of
from loadkit.webhook.gates import Gates
from loadkit.webhook.models import (
    AnalysisOutcome,
    AnalysisRecord,
    EventRecord,
    GateMode,
    HookAnswer,
    HookKind,
    LiveVerdict,
    RunRecord,
    RunStatus,
)
from loadkit.webhook.policy import HookCall
from loadkit.webhook.runs import RunManager
from loadkit.webhook.store import Store, now

POLL_S = 0.05
RETRY_SOON_S = 5


def has_failed(run: RunRecord) -> bool:
    """Judged as failing: running with a breach over enough samples, or finished, judged, and failed."""
    if run.status is RunStatus.RUNNING:
        return run.live is not None and run.live.verdict is LiveVerdict.FAIL
    return run.judged and run.verdict is Verdict.FAIL


def has_passed(run: RunRecord) -> bool:
    """Only a run that ran to its end with enough samples, and passed. Never a stopped, superseded,
    interrupted or errored run."""
    return run.judged and run.verdict is Verdict.PASS


def is_within(run: RunRecord) -> bool:
    """Within thresholds now: a pass, or running with a passing live score over enough samples."""
    if run.status is RunStatus.RUNNING:
        return run.live is not None and run.live.verdict is LiveVerdict.PASS
    return has_passed(run)


def is_promotable(run: RunRecord) -> bool:
    """A pass; or a continuous run (it ends with the analysis) passing now over enough samples."""
    return has_passed(run) or (run.continuous and run.status is RunStatus.RUNNING and is_within(run))


def current(runs: list[RunRecord]) -> list[RunRecord]:
    """The newest run of each (hook, plan) among an analysis's runs (given newest first)."""
    seen: set[tuple[str, str]] = set()
    latest = []
    for run in runs:
        if (run.hook.value, run.plan_key) not in seen:
            seen.add((run.hook.value, run.plan_key))
            latest.append(run)
    return latest


def describe(run: RunRecord) -> str:
    """`run <id> (<profile> <hook>, <status>): <reason> <url>` for one-line answers."""
    reason = run.live.reason if run.status is RunStatus.RUNNING and run.live else run.reason
    return f"run {run.id} ({run.profile} {run.hook.value}, {run.status.value}): {reason or 'starting'} {run.url}"


def plan_key(plan: LoadPlan, call: HookCall, min_samples: int) -> str:
    """A hash of everything that decides what a run does and how it is judged."""
    data = {
        "profile": plan.profile, "target": plan.target, "baseline": call.baseline, "locustfile": str(plan.locustfile),
        "stages": [dataclasses.asdict(s) for s in plan.stages], "headers": sorted(plan.headers.items()),
        **({"rate_stages": [dataclasses.asdict(s) for s in plan.rate_stages], "max_in_flight": plan.max_in_flight}
           if plan.open_model else {}),
        "processes": plan.processes, "thresholds": call.thresholds_name, "min_samples": min_samples,
        "checks": [t.model_dump(mode="json") for t in call.thresholds], "continuous": call.continuous,
        "workload": call.names.workload,
        **({"workers": plan.workers} if plan.workers else {}),  # only when distributed: older keys stay
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def on_workers(plan: LoadPlan, workers: WorkersSpec | None) -> LoadPlan:
    """A big run (peak >= server.workers.min_users) loads from the worker pods, this server's Locust
    their master; a smaller one, or none configured, from this server alone. A worker run is always
    pinned to its target (the worker pods' --pin refuses any other plan)."""
    if workers is None or max(s.users for s in plan.stages) < workers.min_users:
        return plan
    return dataclasses.replace(plan, workers=workers.expect, master_bind=workers.address,
                               workers_wait_s=workers.wait, pin_to_target=True)


class Hooks:
    def __init__(self, manager: RunManager, store: Store, config: Config) -> None:
        self.manager = manager
        self.store = store
        self.config = config
        self.lifecycle = Lifecycle(store, manager)
        self.gates = Gates(store)
        self._in_analysis: dict[HookKind, Callable[[HookCall, AnalysisRecord], Awaitable[HookAnswer]]] = {
            HookKind.PRE_ROLLOUT: self.pre_rollout,
            HookKind.ROLLOUT: self.rollout,
            HookKind.CONFIRM_TRAFFIC_INCREASE: self.confirm_traffic_increase,
            HookKind.CONFIRM_PROMOTION: self.confirm_promotion,
            HookKind.ROLLBACK: self.rollback,
        }
        self._between: dict[HookKind, Callable[[HookCall], Awaitable[HookAnswer]]] = {
            HookKind.CONFIRM_ROLLOUT: self.confirm_rollout,
            HookKind.POST_ROLLOUT: self.post_rollout,
            HookKind.EVENT: self.event,
        }

    async def handle(self, call: HookCall) -> HookAnswer:
        if call.kind in self._in_analysis:
            analysis = self.lifecycle.enter(call)
            answer = await self._in_analysis[call.kind](call, analysis)
            return answer.model_copy(update={"analysis": analysis.id})
        return await self._between[call.kind](call)

    # -- hooks that run load ------------------------------------------------------------------------

    async def pre_rollout(self, call: HookCall, analysis: AnalysisRecord) -> HookAnswer:
        """Blocking: run the profile, answer 200 on pass, 412 naming the failing check on fail.

        A pass already recorded in this analysis for the same plan is reused, so a Flagger retry (or
        a webhook timeout shorter than the profile) does not start the check over. A failure is
        run again on the next call: Flagger's `threshold` decides how often.
        """
        plan, key = self._plan(call)
        latest = self._latest(analysis, HookKind.PRE_ROLLOUT, key)
        if latest is not None and has_passed(latest):
            return HookAnswer(status=200, message=f"pre-rollout passed: {describe(latest)}", run=latest.id,
                              verdict=Verdict.PASS)
        record, _ = self.manager.start(call, plan, analysis.id, key)
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

    async def rollout(self, call: HookCall, analysis: AnalysisRecord) -> HookAnswer:
        """Ensure running: 202 when started, then 200 while within thresholds, 412 once breached."""
        plan, key = self._plan(call)
        latest = self._latest(analysis, HookKind.ROLLOUT, key)
        if latest is None or (latest.finished and not latest.judged):
            # Nothing yet, or the last attempt was not judged (stopped, cut off, could not run): (re)start.
            record, started = self.manager.start(call, plan, analysis.id, key)
            if started and latest is not None and _costs_a_check(latest):
                return HookAnswer(status=424, message=f"rollout load was not judged ({describe(latest)}); "
                                  f"restarted as run {record.id}", run=record.id)
            if started:
                again = f" (the last run was not judged: {latest.reason})" if latest is not None else ""
                return HookAnswer(status=202, message=f"rollout load started{again}: {describe(record)}",
                                  run=record.id)
            latest = record
        if has_failed(latest):
            return HookAnswer(status=412, message=f"rollout load breached thresholds: {describe(latest)}",
                              run=latest.id, verdict=Verdict.FAIL)
        if latest.live is not None and latest.live.verdict is LiveVerdict.NOT_JUDGED:
            return HookAnswer(status=424, message=f"rollout load cannot be judged: {describe(latest)}",
                              run=latest.id)
        verdict = Verdict.PASS if has_passed(latest) else None
        return HookAnswer(status=200, message=f"rollout load ok: {describe(latest)}", run=latest.id,
                          verdict=verdict)

    # -- gates ----------------------------------------------------------------------------------------

    async def confirm_traffic_increase(self, call: HookCall, analysis: AnalysisRecord) -> HookAnswer:
        """200 while every current run of the analysis is within thresholds over enough samples (and no
        halt; with `gate: manual|both`, after an approval); 403 otherwise (Flagger holds, no penalty)."""
        return self._gate(call, analysis, is_within, "not (yet) within thresholds", "within thresholds")

    async def confirm_promotion(self, call: HookCall, analysis: AnalysisRecord) -> HookAnswer:
        """200 only when the analysis's current runs all passed (a continuous run: passing over enough
        samples); 403 while running, missing, failed or not judged (Flagger waits, no penalty)."""
        return self._gate(call, analysis, is_promotable, "do not promote", "promote")

    def _gate(self, call: HookCall, analysis: AnalysisRecord, ok: Callable[[RunRecord], bool], no: str,
              yes: str) -> HookAnswer:
        mode = call.gate or GateMode.LOAD
        held = self.gates.blocked(call.namespace, call.name, analysis.id, call.kind, mode)
        if held:
            return HookAnswer(status=403, message=f"{call.kind.value} of {_canary(call)}: {held}")
        if mode is GateMode.MANUAL:
            return HookAnswer(status=200, message=f"{yes}: approved by hand for analysis {analysis.id}")
        runs = current(self._runs(analysis, call))
        if not runs and call.kind is HookKind.CONFIRM_TRAFFIC_INCREASE:
            # Flagger runs rollout hooks only once the canary has traffic: holding the first step would
            # wait forever. The rollout hook's load decides every later step.
            return HookAnswer(status=200, message=f"no load run in analysis {analysis.id} yet: the first step goes "
                                                  "ahead (rollout load starts once the canary has traffic)")
        if not runs:
            return HookAnswer(status=403, message=f"no load run in analysis {analysis.id} of {_canary(call)}: "
                                                  "nothing to promote on")
        blocking = [r for r in runs if not ok(r)]
        if blocking:
            return HookAnswer(status=403, message=f"{no}: {describe(blocking[0])}", run=blocking[0].id,
                              verdict=blocking[0].verdict)
        return HookAnswer(status=200, message=f"{yes}: {describe(runs[0])}", run=runs[0].id, verdict=Verdict.PASS)

    async def rollback(self, call: HookCall, analysis: AnalysisRecord) -> HookAnswer:
        """200 means "roll back now": only on purpose. A manual rollback opened for this analysis, or,
        where enabled, a rollout run of this analysis whose breach was statistically certain. A failed
        pre-rollout is left to Flagger's `threshold`; stopped, errored and too-short runs never count."""
        manual = self.gates.rollback_open(call.namespace, call.name, analysis.id)
        if manual is not None:
            why = f": {manual.reason}" if manual.reason else ""
            return HookAnswer(status=200, message=f"roll back: a manual rollback was opened for analysis "
                                                  f"{analysis.id}{why}")
        policy = call.rollback_on or self.config.server.rollback.policy
        runs = self._runs(analysis, call)
        if policy is RollbackOn.DECISIVE_BREACH:
            decisive = [r for r in runs if r.hook is HookKind.ROLLOUT and r.decisive
                        and r.status in (RunStatus.RUNNING, RunStatus.COMPLETED)]
            if decisive:
                run = decisive[0]
                return HookAnswer(status=200, message=f"roll back: run {run.id} breached a threshold decisively: "
                                                      f"{run.decisive} {run.url}", run=run.id, verdict=Verdict.FAIL)
        signals = "a manual rollback" + (" or a decisive breach" if policy is RollbackOn.DECISIVE_BREACH else "")
        if not runs:
            return HookAnswer(status=404, message=f"no rollback: no load run in analysis {analysis.id} "
                                                  f"(rolls back only on {signals})")
        return HookAnswer(status=409, message=f"no rollback (rolls back only on {signals}): {describe(runs[0])}",
                          run=runs[0].id)

    async def confirm_rollout(self, call: HookCall) -> HookAnswer:
        """Flagger calls it only between analyses: an analysis still open has ended. 403 while a freeze
        covers the canary or (with `gate: manual`) until the next rollout is approved."""
        self.lifecycle.close(call, AnalysisOutcome.ENDED, "Flagger asked to confirm a new rollout, so this "
                                                          "analysis was over (no post-rollout reached loadkit)")
        freeze = self.store.freeze_for(call.namespace, call.name)
        if freeze is not None:
            return HookAnswer(status=403, message=f"rollouts are frozen for {freeze.namespace}/{freeze.name}: "
                              f"{freeze.reason}")
        held = self.gates.blocked(call.namespace, call.name, "", call.kind, call.gate or GateMode.LOAD)
        if held:  # a halt holds whatever the gate mode; `gate: manual` also needs an approval
            return HookAnswer(status=403, message=f"rollout of {call.namespace}/{call.name}: {held}")
        return HookAnswer(status=200, message=f"rollout of {call.namespace}/{call.name} confirmed")

    # -- bookkeeping ------------------------------------------------------------------------------------

    async def post_rollout(self, call: HookCall) -> HookAnswer:
        """The analysis is over: close it, end its load (a continuous run completes), store the results."""
        phase = call.payload.phase
        closed, stopped = self.lifecycle.close(call, outcome_of(phase), f"post-rollout ({phase or 'no phase'})")
        deadline = time.monotonic() + 2 * STOP_GRACE_S
        while any(not self.manager.is_done(r) for r in stopped) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        if closed is None:
            return HookAnswer(status=200, message=f"post-rollout ({phase}): no analysis of {_canary(call)} was open")
        summary = ", ".join(describe(r) for r in (self.store.get_run(i) for i in stopped) if r) or "none running"
        return HookAnswer(status=200, analysis=closed.id,
                          message=f"post-rollout ({phase}): analysis {closed.id} closed; ended {len(stopped)} "
                                  f"run(s): {summary}")

    async def event(self, call: HookCall) -> HookAnswer:
        meta = call.payload.metadata or {}
        analysis = self.store.open_analysis(call.namespace, call.name)
        owner = analysis.id if analysis is not None and analysis.checksum == call.checksum else ""
        self.store.insert_event(EventRecord(
            namespace=call.namespace, name=call.name, phase=call.payload.phase, checksum=call.checksum,
            event_type=meta.get("eventType", ""), message=meta.get("eventMessage", ""),
            timestamp=meta.get("timestamp", ""), received_at=now(), analysis=owner,
        ))
        return HookAnswer(status=200, message="event stored", analysis=owner or None)

    # -- helpers ------------------------------------------------------------------------------------

    def _plan(self, call: HookCall) -> tuple[LoadPlan, str]:
        """The whole resolved plan, within this server's limits (built-in profiles too), and its key."""
        assert call.profile is not None  # resolved for run hooks
        limits = self.config.server
        if call.rate is not None and call.rate > limits.max_rate:
            raise PayloadError(f"metadata rate {call.rate:.15g} iterations/s is more than this server's max_rate "
                               f"({limits.max_rate:.15g})")
        try:
            plan = plan_run(call.profile, target=call.target, users=call.users, spawn_rate=call.spawn_rate,
                            duration_s=call.duration_s, headers=call.headers, rate=call.rate,
                            base_dir=self.config.path.parent if self.config.path else None)
        except (ConfigError, UsageError) as exc:
            raise PayloadError(exc.message.replace("\n", " ")) from None
        overridden = call.users or call.duration_s or call.rate
        what = f"profile {plan.profile!r}" + (" with the metadata overrides" if overridden else "")
        if plan.duration_s > limits.max_duration:
            raise PayloadError(f"{what} runs {plan.duration_s:g}s, longer than this server's max_duration "
                               f"({limits.max_duration:g}s)")
        if plan.peak_rate > limits.max_rate:
            raise PayloadError(f"{what} peaks at {plan.peak_rate:.15g} iterations/s, more than this server's max_rate "
                               f"({limits.max_rate:.15g})")
        peak = max(s.users for s in plan.stages)
        if peak > limits.max_users:
            raise PayloadError(f"{what} peaks at {peak} users, more than this server's max_users ({limits.max_users})")
        if call.continuous:
            plan = _until(plan, limits.max_duration)
        plan = on_workers(dataclasses.replace(plan, pin_to_target=True), limits.workers)
        return plan, plan_key(plan, call, self.manager.min_samples)

    def _runs(self, analysis: AnalysisRecord, call: HookCall) -> list[RunRecord]:
        """The analysis's runs, newest first, with the live state of running ones (a gate's `profile`
        metadata narrows them to that profile)."""
        runs = self.store.runs_of(analysis.id)
        if call.kind not in (HookKind.PRE_ROLLOUT, HookKind.ROLLOUT) and call.profile is not None:
            runs = [r for r in runs if r.profile == call.profile.name]
        return [self._with_live(r) for r in runs]

    def _latest(self, analysis: AnalysisRecord, hook: HookKind, key: str) -> RunRecord | None:
        return next((self._with_live(r) for r in self.store.runs_of(analysis.id)
                     if r.hook is hook and r.plan_key == key), None)

    def _with_live(self, run: RunRecord) -> RunRecord:
        if run.status is RunStatus.RUNNING:
            live = self.manager.live(run.id)
            if live is not None:
                return run.model_copy(update={"live": live, "decisive": live.decisive or run.decisive})
        return run


def _until(plan: LoadPlan, limit_s: float) -> LoadPlan:
    """A continuous run: the profile, then its last stage held until the analysis ends (at most `limit_s`)."""
    extra = max(0.0, limit_s - plan.duration_s)
    *head, last = plan.stages
    held = Stage(last.duration_s + extra, last.users, last.spawn_rate)
    if plan.open_model:  # the last rate stage's end rate, held
        end = plan.rate_stages[-1].end
        return dataclasses.replace(plan, stages=[held], rate_stages=[*plan.rate_stages, RateStage(extra, end, end)]
                                   if extra > 0 else plan.rate_stages)
    return dataclasses.replace(plan, stages=[*head, held])


def _costs_a_check(run: RunRecord) -> bool:
    """Not judged for a reason Flagger should see as a failed check: it could not run, or had too few samples."""
    return run.status is RunStatus.ERROR or (run.status is RunStatus.COMPLETED and run.verdict is None)


def _unjudged(hook: str, run: RunRecord) -> HookAnswer:
    """A run that could not be judged: 424 when it could not run or had too few samples (a failed
    check whose reason Flagger shows, but no rollback signal); 409 when it was stopped or superseded;
    503 (retry) when the server stopped meanwhile."""
    if run.status in (RunStatus.INTERRUPTED, RunStatus.RUNNING):
        return HookAnswer(status=503, message=f"{hook} was cut off, retry: {describe(run)}", run=run.id,
                          retry_after_s=RETRY_SOON_S)
    if run.status in (RunStatus.STOPPED, RunStatus.SUPERSEDED):
        return HookAnswer(status=409, message=f"{hook} was stopped before it could be judged: {describe(run)}",
                          run=run.id)
    return HookAnswer(status=424, message=f"{hook} could not be judged: {describe(run)}", run=run.id)


def _canary(call: HookCall) -> str:
    return f"{call.namespace}/{call.name} checksum {call.checksum or '(none)'}"
