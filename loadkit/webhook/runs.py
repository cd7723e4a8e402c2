"""Load runs started by hooks: one thread each, watching its own Locust process.

The webhook process never imports locust; every run is a Locust child process (see
loadkit.load.runner) with a hard timeout. Runs are keyed by (namespace, name, checksum, profile,
hook), so Flagger's retries join the run already going instead of starting a second one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from loadkit.errors import DriverError, LoadkitError, TargetError
from loadkit.load.runner import LoadPlan
from loadkit.load.session import run_scored
from loadkit.models import RunResult, Snapshot, Threshold, Verdict
from loadkit.scoring import evaluate, observations_from_stats
from loadkit.webhook.models import LiveState, RunRecord, RunStatus
from loadkit.webhook.policy import HookCall
from loadkit.webhook.store import Store, now

log = logging.getLogger(__name__)

RunKey = tuple[str, str, str, str, str]


class Busy(LoadkitError):
    """Too many runs at once: the webhook answers 429 with Retry-After."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"{limit} runs are already going (--max-concurrent-runs); retry later")
        self.retry_after_s = retry_after_s


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


def run_key(call: HookCall) -> RunKey:
    profile = call.profile.name if call.profile else ""
    return (call.namespace, call.name, call.checksum, profile, call.kind.value)


def live_state(snapshot: Snapshot, thresholds: list[Threshold], min_samples: int) -> LiveState:
    """The verdict so far: 'collecting' until min_samples, then 'pass' or 'fail' on cumulative stats."""
    cumulative = snapshot.cumulative
    if cumulative.requests < min_samples:
        return LiveState(verdict="collecting", snapshot=snapshot,
                         reason=f"collecting: {cumulative.requests} of {min_samples} requests")
    card = evaluate(thresholds, observations_from_stats(cumulative), min_samples)
    failing = [c for c in card.checks if not c.passed]
    reason = "; ".join(f"{c.name}: {c.reason}" for c in failing) or "every threshold met so far"
    return LiveState(verdict=card.verdict.value, failing=[c.name for c in failing], reason=reason,
                     snapshot=snapshot)


class RunManager:
    """Starts, tracks and stops runs; writes their live and final state to the store."""

    def __init__(self, store: Store, min_samples: int, max_concurrent: int,
                 url_for: Callable[[str], str] = lambda run_id: f"/runs/{run_id}") -> None:
        self.store = store
        self.min_samples = min_samples
        self.max_concurrent = max_concurrent
        self.url_for = url_for
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._by_key: dict[RunKey, str] = {}
        self._closing = False

    # -- starting and waiting ---------------------------------------------------------------------

    def start(self, call: HookCall, plan: LoadPlan) -> tuple[RunRecord, bool]:
        """The running run for this key, or a new one: (record, started_now)."""
        key = run_key(call)
        with self._lock:
            running = self._by_key.get(key)
            if running is not None:
                return self._active[running].record, False
            if self._closing:
                raise Busy(self.max_concurrent, retry_after_s=30)
            if len(self._active) >= self.max_concurrent:
                raise Busy(self.max_concurrent, retry_after_s=max(5, int(plan.duration_s // 4)))
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
        return _Active(record=record, key=key, plan=plan, thresholds=call.thresholds)

    def wait(self, run_id: str, timeout_s: float) -> bool:
        with self._lock:
            active = self._active.get(run_id)
        return True if active is None else active.done.wait(timeout_s)

    def live(self, run_id: str) -> LiveState | None:
        with self._lock:
            active = self._active.get(run_id)
        return active.live if active else None

    def active_runs(self) -> list[RunRecord]:
        with self._lock:
            return [a.record.model_copy(update={"live": a.live}) for a in self._active.values()]

    # -- stopping -----------------------------------------------------------------------------------

    def is_done(self, run_id: str) -> bool:
        with self._lock:
            return run_id not in self._active

    def request_stop(self, namespace: str, name: str, run_id: str | None = None) -> list[str]:
        """Ask this canary's runs (or one run) to stop; they are scored on what they collected.

        Returns at once; poll `is_done` for each id returned.
        """
        with self._lock:
            targets = [a for a in self._active.values()
                       if (a.record.namespace, a.record.name) == (namespace, name)
                       and (run_id is None or a.record.id == run_id)]
        for active in targets:
            active.stop_status = RunStatus.STOPPED
            active.stop.set()
        return [a.record.id for a in targets]

    def begin_shutdown(self) -> list[str]:
        """SIGTERM, first step: refuse new runs and ask every run to stop; returns at once."""
        with self._lock:
            self._closing = True
            targets = list(self._active.values())
        for active in targets:
            active.stop_status = RunStatus.INTERRUPTED
            active.stop.set()
        return [a.record.id for a in targets]

    def shutdown(self, timeout_s: float = 20.0) -> None:
        """Stop every run, mark it interrupted (never a pass), leave nothing running."""
        self.begin_shutdown()
        with self._lock:
            targets = list(self._active.values())
        for active in targets:
            active.done.wait(timeout_s)
        self.store.interrupt_unfinished("the server shut down during the run")

    # -- the run thread ---------------------------------------------------------------------------

    def _execute(self, active: _Active) -> None:
        run_id = active.record.id
        try:
            result = run_scored(active.plan, active.thresholds, self.min_samples,
                                on_snapshot=lambda snap: self._on_snapshot(active, snap), stop=active.stop)
            self._finish(active, result)
        except TargetError as exc:  # the canary cannot be reached: a failed check, not a glitch
            self.store.finish_run(run_id, RunStatus.ERROR, verdict=Verdict.FAIL.value, score=0.0,
                                  reason=exc.message, result=None)
        except (DriverError, LoadkitError) as exc:
            self.store.finish_run(run_id, RunStatus.ERROR, verdict=None, score=None, reason=exc.message,
                                  result=None)
        except Exception as exc:  # never leave a run marked running
            log.exception("run %s failed", run_id)
            self.store.finish_run(run_id, RunStatus.ERROR, verdict=None, score=None,
                                  reason=f"internal error: {type(exc).__name__}: {exc}", result=None)
        finally:
            with self._lock:
                self._active.pop(run_id, None)
                if self._by_key.get(active.key) == run_id:
                    del self._by_key[active.key]
            active.done.set()

    def _on_snapshot(self, active: _Active, snapshot: Snapshot) -> None:
        active.live = live_state(snapshot, active.thresholds, self.min_samples)
        self.store.update_live(active.record.id, active.live)

    def _finish(self, active: _Active, result: RunResult) -> None:
        if result.interrupted and active.stop_status is RunStatus.INTERRUPTED:
            self.store.finish_run(active.record.id, RunStatus.INTERRUPTED, verdict=None, score=None,
                                  reason="the server shut down during the run", result=result)
            return
        status = RunStatus.STOPPED if result.interrupted else RunStatus.COMPLETED
        failing = "; ".join(f"{c.name}: {c.reason}" for c in result.failed_checks)
        reason = failing or f"every threshold met over {result.stats.requests} requests"
        self.store.finish_run(active.record.id, status, verdict=result.verdict.value, score=result.score,
                              reason=reason, result=result)
