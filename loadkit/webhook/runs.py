"""Load runs started by hooks: one thread each, watching its own Locust process.

The webhook process never imports locust; every run is a Locust child process (see
loadkit.load.runner) with a hard timeout. Runs are keyed by (namespace, name, checksum, profile,
hook), so Flagger's retries join the run already going instead of starting a second one.

A run's end is written to the store and the run leaves the manager under one lock, so a hook
never sees a run as running in memory after the store says it ended.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loadkit.config import PrometheusSpec
from loadkit.errors import BusyError, LoadkitError, TargetError
from loadkit.load.runner import LoadPlan
from loadkit.load.session import run_scored
from loadkit.models import RunResult, Snapshot, Threshold, Verdict
from loadkit.prometheus import Workload
from loadkit.scoring import client_thresholds, evaluate, observations_from_stats
from loadkit.serverside import ServerSide
from loadkit.webhook.models import LiveState, LiveVerdict, RunRecord, RunStatus
from loadkit.webhook.policy import HookCall
from loadkit.webhook.store import Store, now

if TYPE_CHECKING:
    from loadkit.prometheus.source import PrometheusSource

log = logging.getLogger(__name__)

RunKey = tuple[str, str, str, str, str]
SHUTDOWN_WAIT_S = 20.0
INTERRUPTED_REASON = "the server shut down during the run: not judged, never a pass"


@dataclass
class _Active:
    record: RunRecord
    key: RunKey
    plan: LoadPlan
    thresholds: list[Threshold]
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stop_status: RunStatus = RunStatus.STOPPED
    live: LiveState | None = None
    server: ServerSide = field(default_factory=ServerSide)


@dataclass(frozen=True)
class _Ending:
    status: RunStatus
    verdict: Verdict | None
    score: float | None
    reason: str
    result: RunResult | None = None


def run_key(call: HookCall) -> RunKey:
    profile = call.profile.name if call.profile else ""
    return (call.namespace, call.name, call.checksum, profile, call.kind.value)


def live_state(snapshot: Snapshot, thresholds: list[Threshold], min_samples: int) -> LiveState:
    """The verdict so far: 'collecting' until min_samples, then 'pass' or 'fail' on cumulative stats."""
    cumulative = snapshot.cumulative
    if cumulative.requests < min_samples:
        return LiveState(verdict=LiveVerdict.COLLECTING, snapshot=snapshot,
                         reason=f"collecting: {cumulative.requests} of {min_samples} requests")
    live = client_thresholds(thresholds)  # Prometheus and compare checks are judged when the run ends
    if not live:
        return LiveState(verdict=LiveVerdict.COLLECTING, snapshot=snapshot,
                         reason="its checks read Prometheus or compare with the primary: judged when the run ends")
    card = evaluate(live, observations_from_stats(cumulative), min_samples)
    failing = [c for c in card.checks if not c.passed]
    reason = "; ".join(f"{c.name}: {c.reason}" for c in failing) or "every threshold met so far"
    verdict = LiveVerdict.PASS if card.verdict is Verdict.PASS else LiveVerdict.FAIL
    return LiveState(verdict=verdict, failing=[c.name for c in failing], reason=reason, snapshot=snapshot)


class RunManager:
    """Starts, tracks and stops runs; writes their live and final state to the store."""

    def __init__(self, store: Store, min_samples: int, max_concurrent: int,
                 url_for: Callable[[str], str] = lambda run_id: f"/runs/{run_id}",
                 prometheus: PrometheusSpec | None = None) -> None:
        self.store = store
        self.prometheus_spec = prometheus or PrometheusSpec()
        self._prometheus: PrometheusSource | None = None  # made on first use, shared by the runs
        self.min_samples = min_samples
        self.max_concurrent = max_concurrent
        self.url_for = url_for
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._by_key: dict[RunKey, str] = {}
        self._closing = False

    # -- starting and looking -----------------------------------------------------------------------

    def start(self, call: HookCall, plan: LoadPlan) -> tuple[RunRecord, bool]:
        """The running run for this key, or a new one: (record, started_now)."""
        key = run_key(call)
        with self._lock:
            running = self._by_key.get(key)
            if running is not None:
                active = self._active[running]
                return active.record.model_copy(update={"live": active.live}), False
            if self._closing:
                raise BusyError("the server is shutting down; retry against the new instance", retry_after_s=30)
            if len(self._active) >= self.max_concurrent:
                raise BusyError(f"{self.max_concurrent} runs are already going (--max-concurrent-runs); retry later",
                                retry_after_s=max(5, int(plan.duration_s // 4)))
            active = self._new(call, plan, key)
            self._active[active.record.id] = active
            self._by_key[key] = active.record.id
        threading.Thread(target=self._execute, args=(active,), name=f"run-{active.record.id}", daemon=True).start()
        return active.record, True

    def _new(self, call: HookCall, plan: LoadPlan, key: RunKey) -> _Active:
        run_id = uuid.uuid4().hex[:12]
        record = RunRecord(
            id=run_id, namespace=call.namespace, name=call.name, checksum=call.checksum, profile=plan.profile,
            hook=call.kind, thresholds=call.thresholds_name, target=plan.target, status=RunStatus.RUNNING,
            created_at=now(), url=self.url_for(run_id),
        )
        self.store.insert_run(record)
        return _Active(record=record, key=key, plan=plan, thresholds=call.thresholds, server=self._server(call))

    def _server(self, call: HookCall) -> ServerSide:
        """Prometheus checks query the payload's canary (name, namespace); compare runs against its primary."""
        spec = self.prometheus_spec
        if spec.url is not None and self._prometheus is None:
            from loadkit.prometheus.source import PrometheusSource

            self._prometheus = PrometheusSource(spec.url)
        return ServerSide(prometheus=self._prometheus, workload=Workload(call.namespace, call.name),
                          baseline_url=call.baseline, settle_s=spec.settle)

    def is_done(self, run_id: str) -> bool:
        with self._lock:
            return run_id not in self._active

    def live(self, run_id: str) -> LiveState | None:
        with self._lock:
            active = self._active.get(run_id)
            return active.live if active else None

    def active_runs(self) -> list[RunRecord]:
        with self._lock:
            return [a.record.model_copy(update={"live": a.live}) for a in self._active.values()]

    # -- stopping -----------------------------------------------------------------------------------

    def request_stop(self, namespace: str, name: str, run_id: str | None = None) -> list[str]:
        """Ask this canary's runs (or one run) to stop; they are scored on what they collected
        (status `stopped`, which never counts as a pass). Returns at once; poll `is_done`."""
        with self._lock:
            targets = [a for a in self._active.values()
                       if (a.record.namespace, a.record.name) == (namespace, name)
                       and (run_id is None or a.record.id == run_id)]
            for active in targets:
                if active.stop_status is not RunStatus.INTERRUPTED:  # a shutdown wins over a stop
                    active.stop_status = RunStatus.STOPPED
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
        self.store.interrupt_unfinished(INTERRUPTED_REASON)

    # -- the run thread ---------------------------------------------------------------------------

    def _execute(self, active: _Active) -> None:
        try:
            result = run_scored(active.plan, active.thresholds, self.min_samples,
                                on_snapshot=lambda snap: self._on_snapshot(active, snap), stop=active.stop,
                                server=active.server)
            ending = self._judge(active, result)
        except TargetError as exc:  # not judged: it could be loadkit's side (egress, a wrong target)
            ending = _Ending(RunStatus.ERROR, None, None, f"cannot reach the target: {exc.message}")
        except LoadkitError as exc:
            ending = _Ending(RunStatus.ERROR, None, None, exc.message)
        except Exception as exc:  # never leave a run marked running
            log.exception("run %s failed", active.record.id)
            ending = _Ending(RunStatus.ERROR, None, None, f"internal error: {type(exc).__name__}: {exc}")
        with self._lock:  # the store and the manager change together: no window where they disagree
            self.store.finish_run(active.record.id, ending.status, verdict=ending.verdict, score=ending.score,
                                  reason=ending.reason, result=ending.result)
            self._active.pop(active.record.id, None)
            if self._by_key.get(active.key) == active.record.id:
                del self._by_key[active.key]
        active.done.set()

    def _on_snapshot(self, active: _Active, snapshot: Snapshot) -> None:
        live = live_state(snapshot.model_copy(update={"window_histogram": ""}), active.thresholds, self.min_samples)
        with self._lock:
            active.live = live
        self.store.update_live(active.record.id, live)

    @staticmethod
    def _judge(active: _Active, result: RunResult) -> _Ending:
        if result.interrupted and active.stop_status is RunStatus.INTERRUPTED:
            # Keep what was measured, but its verdict must not read as a pass anywhere.
            unjudged = result.model_copy(update={"verdict": Verdict.FAIL, "warnings": [
                *result.warnings, f"not judged: {INTERRUPTED_REASON}"]})
            return _Ending(RunStatus.INTERRUPTED, None, None, INTERRUPTED_REASON, unjudged)
        status = RunStatus.STOPPED if result.interrupted else RunStatus.COMPLETED
        failing = "; ".join(f"{c.name}: {c.reason}" for c in result.failed_checks)
        reason = failing or f"every threshold met over {result.stats.requests} requests"
        if status is RunStatus.STOPPED:
            reason = f"stopped before its end ({reason})"
        return _Ending(status, result.verdict, result.score, reason, result)
