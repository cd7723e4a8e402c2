"""Load runs started by hooks: one thread each, watching its own Locust process.

The webhook process never imports locust; every run is a Locust child process (see
loadkit.load.runner) with a hard timeout, pinned to its target (no redirect or absolute URL can
send a request anywhere else). Runs are keyed by (analysis, hook, resolved plan), so Flagger's
retries join the run already going, and nothing else does.

A run's end is written to the store and the run leaves the manager under one lock, so a hook
never sees a run as running in memory after the store says it ended.

Which runs count (docs/webhook.md): only a run that ran to its end with enough samples is
*judged* (pass or fail). Stopped, superseded, interrupted and errored runs, and runs with too few
samples, are "not judged": never a pass, never a rollback signal.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from loadkit.analysis import ServerSide, as_planned_end, run_scored, tally_of, timeline_point
from loadkit.config import PrometheusSpec, RollbackSpec
from loadkit.errors import BusyError, Interrupted, LoadkitError, TargetError
from loadkit.load._window import REFUSED_KIND
from loadkit.load.runner import LoadPlan
from loadkit.models.results import CheckStatus, RunResult, StageInfo, TimelinePoint, Verdict
from loadkit.models.specs import Threshold
from loadkit.models.wire import Snapshot
from loadkit.prometheus import Workload
from loadkit.scoring import DecisiveTracker, client_thresholds, evaluate, observations_from_stats
from loadkit.webhook.logs import log_event
from loadkit.webhook.models import LiveState, LiveVerdict, RunRecord, RunStatus
from loadkit.webhook.policy import HookCall
from loadkit.webhook.store import Store, now

if TYPE_CHECKING:
    from loadkit.prometheus.source import PrometheusSource

log = logging.getLogger(__name__)

RunKey = tuple[str, str, str]  # (analysis, hook, plan key)
SHUTDOWN_WAIT_S = 20.0
MAX_RETRY_AFTER_S = 30  # Flagger sleeps Retry-After inside its scheduler loop: keep it short
MAX_LIVE_POINTS = 7200  # a live timeline keeps its last 2 h at one point a second
STARTUP_ESTIMATE_S = 3.0  # a Locust start, for when a slot frees
INTERRUPTED_REASON = "the server shut down during the run"
NOT_JUDGED = "not judged"


@dataclass
class _Active:
    record: RunRecord
    key: RunKey
    plan: LoadPlan
    thresholds: list[Threshold]
    tracker: DecisiveTracker
    planned_end: float  # time.monotonic() when it should be done
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stop_status: RunStatus = RunStatus.STOPPED
    stop_reason: str = ""
    live: LiveState | None = None
    decisive: str = ""
    server: ServerSide = field(default_factory=ServerSide)
    timeline: list[TimelinePoint] = field(default_factory=list)  # the live charts of /ui; bounded


@dataclass(frozen=True)
class Progress:
    """A running run's charts so far: its origin, its timeline, thresholds and planned stages. The origin
    is the run's creation, a moment before the load driver's start that its result's `started_at` will
    be (the pre-flight apart), so the live charts and the result's share their time axis."""

    started_at: datetime
    timeline: list[TimelinePoint]
    thresholds: list[Threshold]
    stages: list[StageInfo]


@dataclass(frozen=True)
class _Ending:
    status: RunStatus
    verdict: Verdict | None
    score: float | None
    reason: str
    result: RunResult | None = None


def live_state(snapshot: Snapshot, thresholds: list[Threshold], min_samples: int, decisive: str = "",
               recent: Sequence[str] = ()) -> LiveState:
    """The verdict so far: 'collecting' until min_samples, then 'fail' when the whole run so far, the
    trailing window (`recent`: what the run's numbers would hide once it has a long healthy history)
    or a decisive breach says so, else 'pass'. Requests that left the target make it not judged."""
    cumulative = snapshot.cumulative
    refused = cumulative.failures_by_kind.get(REFUSED_KIND, 0)
    if refused:
        return LiveState(verdict=LiveVerdict.NOT_JUDGED, snapshot=snapshot,
                         reason=f"{NOT_JUDGED}: {refused} request(s) left the target and were refused "
                                "(a redirect or an absolute URL to another host)")
    if cumulative.requests < min_samples:
        return LiveState(verdict=LiveVerdict.COLLECTING, snapshot=snapshot, decisive=decisive,
                         reason=f"collecting: {cumulative.requests} of {min_samples} requests")
    live = client_thresholds(thresholds)  # Prometheus and compare checks are judged when the run ends
    if not live:
        return LiveState(verdict=LiveVerdict.COLLECTING, snapshot=snapshot, decisive=decisive,
                         reason="its checks read Prometheus or compare with the primary: judged when the run ends")
    card = evaluate(live, observations_from_stats(cumulative), min_samples)
    failing = [c for c in card.checks if not c.passed]
    reasons = [f"{c.name}: {c.reason}" for c in failing] + list(recent) + ([decisive] if decisive else [])
    verdict = LiveVerdict.FAIL if reasons else LiveVerdict.PASS
    names = [c.name for c in failing] + [r.split(":", 1)[0] for r in recent]
    return LiveState(verdict=verdict, failing=sorted(set(names)), reason="; ".join(reasons) or
                     "every threshold met so far", snapshot=snapshot, decisive=decisive)


def left_target(result: RunResult) -> str:
    """Why a run's requests say nothing about the canary: some left its target (refused), or ""."""
    refused = result.stats.failures_by_kind.get(REFUSED_KIND, 0)
    if not refused:
        return ""
    return (f"{refused} of {result.stats.requests} requests left the target and were refused (a redirect or an "
            "absolute URL to another host): fix the profile or the target")


def too_few_samples(result: RunResult) -> str:
    """Why a finished run cannot be judged for lack of samples, or ""."""
    for threshold in client_thresholds(result.thresholds):
        needed = threshold.min_samples or result.min_samples
        if result.stats.requests < needed:
            return f"too few samples: {result.stats.requests} requests, need {needed} (min_samples)"
    return ""


class RunManager:
    """Starts, tracks and stops runs; writes their live and final state to the store."""

    def __init__(self, store: Store, min_samples: int, max_concurrent: int,
                 url_for: Callable[[str], str] = lambda run_id: f"/runs/{run_id}",
                 prometheus: PrometheusSpec | None = None, rollback: RollbackSpec | None = None,
                 idle_timeout_s: float = 600.0) -> None:
        self.store = store
        self.idle_timeout_s = idle_timeout_s
        self._seen: dict[str, float] = {}  # analysis -> time.monotonic() of its last hook call
        self.prometheus_spec = prometheus or PrometheusSpec()
        self.rollback = rollback or RollbackSpec()
        self._prometheus: PrometheusSource | None = None  # made on first use, shared by the runs
        self.min_samples = min_samples
        self.max_concurrent = max_concurrent
        self.url_for = url_for
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._by_key: dict[RunKey, str] = {}
        self._closing = False

    # -- starting and looking -----------------------------------------------------------------------

    def start(self, call: HookCall, plan: LoadPlan, analysis: str, plan_key: str) -> tuple[RunRecord, bool]:
        """The running run for this key, or a new one: (record, started_now)."""
        key = (analysis, call.kind.value, plan_key)
        with self._lock:
            running = self._by_key.get(key)
            if running is not None:
                active = self._active[running]
                return active.record.model_copy(update={"live": active.live}), False
            if self._closing:
                raise BusyError("the server is shutting down; retry against the new instance", retry_after_s=5)
            if len(self._active) >= self.max_concurrent:
                raise BusyError(f"{self.max_concurrent} runs are already going (--max-concurrent-runs); retry later",
                                retry_after_s=self._retry_after())
            active = self._new(call, plan, key)
            self._active[active.record.id] = active
            self._by_key[key] = active.record.id
        log_event("run_start", run=active.record.id, analysis=analysis, namespace=call.namespace, name=call.name,
                  checksum=call.checksum, hook=call.kind.value, profile=plan.profile, target=plan.target,
                  continuous=call.continuous, planned_s=round(plan.duration_s, 1))
        threading.Thread(target=self._execute, args=(active,), name=f"run-{active.record.id}", daemon=True).start()
        return active.record, True

    def _retry_after(self) -> int:
        """Seconds until the first run is due to end (a slot frees), within 1..MAX_RETRY_AFTER_S."""
        soonest = min((a.planned_end for a in self._active.values()), default=time.monotonic() + 5)
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(soonest - time.monotonic()))))

    def _new(self, call: HookCall, plan: LoadPlan, key: RunKey) -> _Active:
        run_id = uuid.uuid4().hex[:12]
        record = RunRecord(
            id=run_id, analysis=key[0], namespace=call.namespace, name=call.name, checksum=call.checksum,
            profile=plan.profile, hook=call.kind, thresholds=call.thresholds_name, target=plan.target,
            plan_key=key[2], continuous=call.continuous, status=RunStatus.RUNNING, created_at=now(),
            url=self.url_for(run_id),
        )
        self.store.insert_run(record)
        tracker = DecisiveTracker(call.thresholds, self.min_samples, confidence=self.rollback.confidence,
                                  window_s=self.rollback.window, planned_s=plan.duration_s)
        return _Active(record=record, key=key, plan=plan, thresholds=call.thresholds, tracker=tracker,
                       planned_end=time.monotonic() + STARTUP_ESTIMATE_S + plan.duration_s,
                       server=self._server(call))

    def _server(self, call: HookCall) -> ServerSide:
        """Prometheus checks query the canary's workload; compare runs against its primary."""
        spec = self.prometheus_spec
        if spec.url is not None and self._prometheus is None:
            from loadkit.prometheus.source import PrometheusSource

            self._prometheus = PrometheusSource(spec.url)
        return ServerSide(prometheus=self._prometheus, workload=Workload(call.namespace, call.names.workload),
                          baseline_url=call.baseline, settle_s=spec.settle)

    def seen(self, analysis: str) -> None:
        """A hook of this analysis came: Flagger is still analysing (continuous runs go on)."""
        with self._lock:
            self._seen[analysis] = time.monotonic()
            if len(self._seen) > 10_000:  # forget the oldest: bounded whatever the traffic
                for key in sorted(self._seen, key=self._seen.__getitem__)[:1000]:
                    del self._seen[key]

    def is_done(self, run_id: str) -> bool:
        with self._lock:
            return run_id not in self._active

    def live(self, run_id: str) -> LiveState | None:
        with self._lock:
            active = self._active.get(run_id)
            return active.live if active else None

    def progress(self, run_id: str) -> Progress | None:
        """A running run's charts so far, or None once it ended."""
        with self._lock:
            active = self._active.get(run_id)
            if active is None:
                return None
            stages = [StageInfo(duration_s=s.duration_s, users=s.users, spawn_rate=s.spawn_rate)
                      for s in active.plan.stages]
            return Progress(active.record.created_at, list(active.timeline), list(active.thresholds), stages)

    def active_runs(self) -> list[RunRecord]:
        with self._lock:
            return [a.record.model_copy(update={"live": a.live}) for a in self._active.values()]

    # -- stopping -----------------------------------------------------------------------------------

    def request_stop(self, namespace: str, name: str, run_id: str | None = None) -> list[str]:
        """Ask this canary's runs (or one run) to stop: status `stopped`, not judged. Returns at once."""
        return self._stop(lambda a: (a.record.namespace, a.record.name) == (namespace, name)
                          and (run_id is None or a.record.id == run_id), lambda _a: RunStatus.STOPPED)

    def end_analysis(self, analysis: str, superseded: bool) -> list[str]:
        """The analysis ended: its continuous runs completed; fixed-length ones still going were stopped.
        Superseded by a new revision: every run is `superseded`. Returns at once; poll `is_done`."""
        def status(active: _Active) -> RunStatus:
            if superseded:
                return RunStatus.SUPERSEDED
            return RunStatus.COMPLETED if active.record.continuous else RunStatus.STOPPED
        return self._stop(lambda a: a.record.analysis == analysis, status)

    def _stop(self, which: Callable[[_Active], bool], status: Callable[[_Active], RunStatus]) -> list[str]:
        with self._lock:
            targets = [a for a in self._active.values() if which(a)]
            for active in targets:
                if active.stop_status is not RunStatus.INTERRUPTED:  # a shutdown wins over a stop
                    active.stop_status = status(active)
                active.stop.set()
        return [a.record.id for a in targets]

    def begin_shutdown(self) -> None:
        """SIGTERM, first step: refuse new runs and ask every run to stop; returns at once."""
        with self._lock:
            self._closing = True
            for active in self._active.values():
                active.stop_status = RunStatus.INTERRUPTED
                active.stop.set()

    def shutdown(self, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """Stop every run (all at once), mark it interrupted (never a pass), leave nothing running."""
        self.begin_shutdown()
        with self._lock:
            waiting = list(self._active.values())
        deadline = time.monotonic() + timeout_s
        for active in waiting:
            active.done.wait(max(0.0, deadline - time.monotonic()))
        self.store.interrupt_unfinished(f"{NOT_JUDGED}: {INTERRUPTED_REASON}")

    # -- the run thread ---------------------------------------------------------------------------

    def _execute(self, active: _Active) -> None:
        try:
            result = run_scored(active.plan, active.thresholds, self.min_samples,
                                on_snapshot=lambda snap: self._on_snapshot(active, snap), stop=active.stop,
                                server=active.server)
            ending = self._judge(active, result)
        except Interrupted:  # stopped before Locust started: nothing was measured
            status = active.stop_status if active.stop.is_set() else RunStatus.ERROR
            status = RunStatus.STOPPED if status is RunStatus.COMPLETED else status
            why = _STOP_REASONS.get(status, "stopped")
            ending = _Ending(status, None, None, f"{NOT_JUDGED}: {why}, before the load started")
        except TargetError as exc:  # not judged: it could be loadkit's side (egress, a wrong target)
            ending = _Ending(RunStatus.ERROR, None, None, f"{NOT_JUDGED}: cannot reach the target: {exc.message}")
        except LoadkitError as exc:
            ending = _Ending(RunStatus.ERROR, None, None, f"{NOT_JUDGED}: {exc.message}")
        except Exception as exc:  # never leave a run marked running
            log.exception("run %s failed", active.record.id)
            ending = _Ending(RunStatus.ERROR, None, None, f"{NOT_JUDGED}: internal error: {type(exc).__name__}: {exc}")
        with self._lock:  # the store and the manager change together: no window where they disagree
            self.store.finish_run(active.record.id, ending.status, verdict=ending.verdict, score=ending.score,
                                  reason=ending.reason, result=ending.result, decisive=active.decisive)
            self._active.pop(active.record.id, None)
            if self._by_key.get(active.key) == active.record.id:
                del self._by_key[active.key]
        record = active.record
        log_event("run_end", run=record.id, analysis=record.analysis, namespace=record.namespace, name=record.name,
                  hook=record.hook.value, profile=record.profile, status=ending.status.value,
                  verdict=ending.verdict.value if ending.verdict else None, score=ending.score,
                  decisive=active.decisive or None, reason=ending.reason)
        active.done.set()

    def _on_snapshot(self, active: _Active, snapshot: Snapshot) -> None:
        tracker = active.tracker
        tracker.add(snapshot.elapsed_s, tally_of(snapshot.window, snapshot.window_histogram, tracker.bounds))
        left = snapshot.cumulative.failures_by_kind.get(REFUSED_KIND, 0)
        if not active.decisive and not left and (breaches := tracker.breaches()):
            active.decisive = "; ".join(b.reason for b in breaches)
        live = live_state(snapshot.model_copy(update={"window_histogram": ""}), active.thresholds, self.min_samples,
                          active.decisive, tracker.recent_breaches())
        with self._lock:
            active.live = live
            active.timeline.append(timeline_point(snapshot))
            del active.timeline[:-MAX_LIVE_POINTS]
            idle = time.monotonic() - self._seen.get(active.record.analysis, time.monotonic())
            if active.record.continuous and idle > self.idle_timeout_s and not active.stop.is_set():
                active.stop_reason = (f"no hook of its analysis came for {idle:.0f}s (more than server.idle_timeout): "
                                      "Flagger stopped calling, so the load stopped")
                active.stop.set()
        self.store.update_live(active.record.id, live)

    @staticmethod
    def _judge(active: _Active, result: RunResult) -> _Ending:
        stopped_as = active.stop_status if result.interrupted else RunStatus.COMPLETED
        if stopped_as is RunStatus.COMPLETED and result.interrupted:  # a continuous run at its analysis' end
            result = as_planned_end(result, "ran until its analysis ended")
        why = active.stop_reason or _STOP_REASONS.get(stopped_as) or left_target(result) or too_few_samples(result)
        shown = [c.rejudged() for c in result.checks]  # what each check showed, judged or not
        failing = "; ".join(f"{c.name}: {c.reason}" for c in shown if c.status is CheckStatus.FAILED)
        measured = failing or result.reason or f"every threshold met over {result.stats.requests} requests"
        if why:
            # Keep what was measured, but its verdict must read as neither a pass nor a fail anywhere.
            verdict = Verdict.INTERRUPTED if result.interrupted else (
                Verdict.ERROR if left_target(result) else Verdict.NOT_JUDGED)
            unjudged = result.model_copy(update={"verdict": verdict, "reason": f"{NOT_JUDGED}: {why}", "warnings": [
                *result.warnings, f"{NOT_JUDGED}: {why}"], "checks": [c.unjudged(why) for c in shown]})
            if left_target(result):
                active.decisive = ""  # refused requests are not the canary's errors
            return _Ending(stopped_as, None, None, f"{NOT_JUDGED}: {why} (measured: {measured})", unjudged)
        return _Ending(RunStatus.COMPLETED, result.verdict, result.score, measured, result)


_STOP_REASONS = {
    RunStatus.INTERRUPTED: INTERRUPTED_REASON,
    RunStatus.SUPERSEDED: "a new revision replaced its analysis",
    RunStatus.STOPPED: "stopped before its end",
}
