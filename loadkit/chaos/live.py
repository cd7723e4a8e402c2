"""The load that runs under a chaos experiment, and the live numbers probes read.

One LoadSession per process (Chaos Toolkit runs one experiment per process): Locust runs in its
own child process, driven from a background thread; every snapshot is stamped with the wall-clock
time it arrived, so load can be matched to the experiment's phases.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from loadkit.config import Config
from loadkit.errors import DriverError, LoadkitError
from loadkit.load._window import merge_summaries
from loadkit.load.plan import plan_run
from loadkit.load.preflight import preflight
from loadkit.load.profiles import get_profile
from loadkit.load.runner import LoadOutcome, LoadPlan, LocustDriver
from loadkit.load.shapes import Stage, constant_rate
from loadkit.models.specs import Threshold
from loadkit.models.wire import Snapshot, Stats

CHAOS_MAX_S = 3600.0  # the load holds until the experiment ends; this is only its upper bound


def hold_plan(config: Config, profile_name: str, target: str, users: int | None = None,
              rate: float | None = None) -> LoadPlan:
    """A profile's journey and peak users, held steady for as long as the experiment runs; with `rate`
    (or an arrival-rate profile) its peak rate, as an open model."""
    profile = get_profile(profile_name, config.profiles)
    plan = plan_run(profile, target=target, users=users, base_dir=config.path.parent if config.path else None,
                    rate=rate)
    if plan.open_model:
        return LoadPlan(target=plan.target, locustfile=plan.locustfile, headers=plan.headers, profile=plan.profile,
                        stages=[Stage(CHAOS_MAX_S, 0, 1.0)], rate_stages=constant_rate(plan.peak_rate, CHAOS_MAX_S),
                        max_in_flight=plan.max_in_flight)
    peak = users or max(s.users for s in plan.stages)
    return LoadPlan(target=plan.target, locustfile=plan.locustfile, headers=plan.headers, profile=plan.profile,
                    stages=[Stage(CHAOS_MAX_S, peak, max(profile.spawn_rate, float(peak)))])


@dataclass(frozen=True)
class Stamped:
    """A snapshot and when it arrived (time.time()); its window covers about the second before."""

    at: float
    snapshot: Snapshot


_NO_TOTAL = Stats()


class LoadSession:
    """Background load for the length of an experiment: start(), windows(), stop()."""

    def __init__(self, plan: LoadPlan, thresholds: list[Threshold], min_samples: int) -> None:
        self.plan = plan
        self.thresholds = thresholds
        self.min_samples = min_samples
        self.started_at = 0.0
        self._stamped: list[Stamped] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._outcome: LoadOutcome | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loadkit-chaos-load", daemon=True)

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Pre-flight the target, start Locust, and wait until the load has settled: every user
        started and two full windows at that level (the spawn burst is not the steady state)."""
        preflight(self.plan.target, self.plan.headers)
        self.started_at = time.time()
        self._thread.start()
        deadline = time.monotonic() + ready_timeout_s
        while not self._settled():
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise DriverError("the load stopped before it settled (Locust exited without an error)",
                                  hint=f"run the profile alone to see Locust's log: loadkit run --target "
                                  f"{self.plan.target} --profile {self.plan.profile}")
            if time.monotonic() > deadline:
                self.stop()
                load = f"{self.plan.peak_rate:g} iterations/s" if self.plan.open_model else \
                    f"{max(s.users for s in self.plan.stages)} users"
                raise DriverError(f"the load did not reach its {load} within {ready_timeout_s:g}s",
                                  hint="use fewer --users or a lower --rate, or check that the target answers "
                                  "quickly")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 60.0) -> LoadOutcome | None:
        self._stop.set()
        self._thread.join(timeout_s)
        return self._outcome

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def error(self) -> str | None:
        """Why the load stopped on its own (Locust crashed, the driver failed), or None."""
        if self._error is None:
            return None
        if isinstance(self._error, LoadkitError):
            return self._error.message.splitlines()[0]
        return f"{type(self._error).__name__}: {self._error}"

    def windows(self, since: float | None = None, until: float | None = None) -> list[Stamped]:
        with self._lock:
            return [s for s in self._stamped if (since is None or s.at > since) and (until is None or s.at <= until)]

    def stats(self, since: float | None = None, until: float | None = None) -> Stats:
        """Exact stats of the windows that arrived in (since, until]."""
        parts = self.windows(since, until)
        merged = merge_summaries([(p.snapshot.window.model_dump(), p.snapshot.window_histogram) for p in parts],
                                 duration_s=sum(p.snapshot.window.duration_s for p in parts))
        return Stats.model_validate(merged)

    def recent(self, seconds: float) -> Stats:
        return self.stats(since=time.time() - seconds)

    def _settled(self) -> bool:
        with self._lock:
            if self.plan.open_model:  # arrivals start at the rate from the first second: two windows of them
                return sum(1 for s in self._stamped if s.snapshot.window.iterations) >= 2
            peak = max(s.users for s in self.plan.stages)
            at_peak = [s for s in self._stamped if s.snapshot.users >= peak]
        return len(at_peak) >= 2

    def _record(self, snapshot: Snapshot) -> None:
        # Phases merge the windows exactly (their histograms); the run's running totals are not needed
        # per second, so they are not kept for the length of the experiment.
        kept = snapshot.model_copy(update={"cumulative": _NO_TOTAL})
        with self._lock:
            self._stamped.append(Stamped(time.time(), kept))

    def _run(self) -> None:
        try:
            self._outcome = LocustDriver().run(self.plan, on_snapshot=self._record, stop=self._stop)
        except BaseException as exc:  # reported by start() or the driver
            self._error = exc


_current: LoadSession | None = None
_current_lock = threading.Lock()


def set_current(session: LoadSession | None) -> None:
    global _current
    with _current_lock:
        _current = session


def current() -> LoadSession | None:
    with _current_lock:
        return _current


def summary(session: LoadSession) -> dict[str, Any]:
    """A JSON-safe digest of the whole load, for the journal's extensions."""
    return {"target": session.plan.target, "profile": session.plan.profile,
            "stats": session.stats().model_dump(mode="json")}
