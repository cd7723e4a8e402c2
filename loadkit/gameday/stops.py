"""Stop conditions: a thread that watches the game day a few times a second and halts it at once.

Each condition is one small checker returning why it fired, or None, run in its own thread at its
own interval: a Prometheus that hangs delays only its own condition, never the wall clock or the
load. The monitor never calls chaoslib (it must stay in the main thread): it records the firing
and pulls the `HaltSwitch`, which reaches the current chaos run with SIGALRM; the run rolls back
as for any early stop. A condition that cannot be read (a Prometheus or health URL that fails,
a Prometheus that refuses the query, an unexpected error in the check itself) three times
running halts too: a game day that cannot see its limits must not go on. No error ends a
checker's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from loadkit import httpcalls
from loadkit.chaos.live import LoadSession
from loadkit.chaos.signals import HaltSwitch
from loadkit.gameday.models import StopFiring, StopKind
from loadkit.gameday.plan import HttpStop, LoadStop, PrometheusStop, StopConditions
from loadkit.scoring import evaluate, observations_from_stats
from loadkit.units import fmt

TICK_S = 0.25  # how often the monitor looks
UNREADABLE_AFTER = 3  # consecutive read failures that halt a Prometheus or HTTP condition


@dataclass
class Checker:
    kind: StopKind
    condition: str
    interval_s: float
    check: Callable[[], str | None]
    failures: int = field(default=0)


    def run_once(self) -> str | None:
        """The check; an unexpected error counts as one failed read (UNREADABLE_AFTER of them halt)."""
        try:
            return self.check()
        except Exception as exc:  # a stop condition must never die silently
            self.failures += 1
            problem = f"{type(exc).__name__}: {exc}"[:200]
            return f"cannot be read ({self.failures} times running): {problem}" \
                if self.failures >= UNREADABLE_AFTER else None


class StopMonitor:
    """start() once the baseline load has settled; stop() at the end. `firings` says what fired.
    One thread per condition, so that a slow one (a hanging Prometheus) delays no other."""

    def __init__(self, conditions: StopConditions, session: LoadSession, halt: HaltSwitch, *, started: float,
                 prometheus_url: str | None, scenario: Callable[[], str | None]) -> None:
        self.halt = halt
        self.scenario = scenario
        self.firings: list[StopFiring] = []
        self.checkers = checkers(conditions, session, started=started, prometheus_url=prometheus_url)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(c,), name=f"loadkit-gameday-stop-{i}", daemon=True)
                         for i, c in enumerate(self.checkers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops every checker; one blocked in a read (bounded by its own timeout) is not waited for:
        it can no longer fire."""
        self._stop.set()
        deadline = time.monotonic() + 1.0
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self, checker: Checker) -> None:
        wait = min(TICK_S, checker.interval_s)  # the first look soon after the start, then at its interval
        while not self._stop.wait(wait):
            wait = checker.interval_s
            reason = checker.run_once()
            if reason is not None:
                self._fire(checker, reason)
                return

    def _fire(self, checker: Checker, reason: str) -> None:
        with self._lock:
            if self._stop.is_set() or self.halt.reason is not None:
                return  # the game day is over, or another condition fired first
            self.firings.append(StopFiring(kind=checker.kind, condition=checker.condition, at=datetime.now(UTC),
                                           reason=reason, scenario=self.scenario()))
            self._stop.set()
        self.halt.halt(f"{checker.kind.value} stop condition {checker.condition}: {reason}")


def checkers(conditions: StopConditions, session: LoadSession, *, started: float,
             prometheus_url: str | None) -> list[Checker]:
    found = [_load(stop, session) for stop in conditions.load]
    found += [_prometheus(stop, stop.url or prometheus_url) for stop in conditions.prometheus]
    found += [_http(stop) for stop in conditions.http]
    if conditions.max_duration is not None:
        limit = conditions.max_duration
        found.append(Checker(StopKind.WALL_CLOCK, f"max_duration {fmt(limit)}s", TICK_S,
                             lambda: f"the game day has run {fmt(time.time() - started)}s, over its limit"
                             if time.time() - started > limit else None))
    return found


def _load(stop: LoadStop, session: LoadSession) -> Checker:
    threshold, condition = stop.threshold(), stop.condition

    def check() -> str | None:
        now = time.time()
        stats = session.stats(since=now - stop.window)
        if stats.requests == 0 and (users := _hung(session, now, stop.window)):
            return (f"no request completed in the last {fmt(stop.window)}s while {users} users were waiting on "
                    "the target: it hangs (nothing to measure is the worst reading)")
        if stats.requests < stop.min_samples:
            return None  # too few requests to judge (and never a halt for a quiet second)
        card = evaluate([threshold], observations_from_stats(stats), stop.min_samples)
        judged = card.checks[0]
        if judged.passed or judged.observed is None:
            return None
        return f"{fmt(judged.observed)}{judged.unit} over the last {fmt(stop.window)}s ({stats.requests} requests)"

    return Checker(StopKind.LOAD, condition, TICK_S, check)


def _hung(session: LoadSession, now: float, window: float) -> int:
    """The users active all through the last `window` seconds, when the load's own reports cover that
    window (so a window that only looks empty, the load having just started, is not a hang); else 0.
    The load holds its users with no think time: a full window without one completed request means
    every user waits on a request that has been outstanding for about the window or more."""
    if not session.running or session.started_at == 0 or now - session.started_at < window:
        return 0
    parts = session.windows(since=now - window)
    covered = sum(p.snapshot.window.duration_s for p in parts)
    if not parts or covered < 0.8 * window or any(p.snapshot.users == 0 for p in parts):
        return 0
    return min(p.snapshot.users for p in parts)


def _prometheus(stop: PrometheusStop, url: str | None) -> Checker:
    checker = Checker(StopKind.PROMETHEUS, stop.query, stop.interval, lambda: None)

    def check() -> str | None:
        try:
            series = query(url or "", stop.query)
        except (PrometheusUnreadable, PrometheusRefused) as exc:
            checker.failures += 1
            what = "refused by Prometheus" if isinstance(exc, PrometheusRefused) else "cannot be read"
            return f"{what} ({checker.failures} times running): {exc}" \
                if checker.failures >= UNREADABLE_AFTER else None
        checker.failures = 0
        if not series:
            return None
        labels = series[0].get("metric")
        labels = labels if isinstance(labels, dict) else {}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "a value"
        return f"returned {len(series)} series (first: {shown})"

    checker.check = check
    return checker


def _http(stop: HttpStop) -> Checker:
    checker = Checker(StopKind.HTTP, f"GET {stop.url} == {stop.status}", stop.interval, lambda: None)

    def check() -> str | None:
        try:
            got: str = str(httpcalls.get(stop.url, timeout=stop.timeout).status_code)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            got = type(exc).__name__
        if got == str(stop.status):
            checker.failures = 0
            return None
        checker.failures += 1
        return f"answered {got} {checker.failures} times running" if checker.failures >= stop.failures else None

    checker.check = check
    return checker


class PrometheusUnreadable(Exception):
    pass


class PrometheusRefused(Exception):
    """Prometheus read the query and refused it (bad_data): the plan is wrong, not the system."""


def query(url: str, promql: str, timeout_s: float = 5.0) -> list[dict[str, object]]:
    """The instant vector of `promql`, or PrometheusRefused / PrometheusUnreadable."""
    if not url:
        raise PrometheusUnreadable("no Prometheus URL (set url: in the condition, or --prometheus)")
    try:
        response = httpcalls.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PrometheusUnreadable(f"{type(exc).__name__} from {httpx.URL(url).host}") from None
    try:
        body = response.json()
    except ValueError:
        raise PrometheusUnreadable(f"HTTP {response.status_code}, not Prometheus' JSON") from None
    if not isinstance(body, dict):
        raise PrometheusUnreadable(f"HTTP {response.status_code}, JSON that is not Prometheus' answer")
    if response.status_code == 400 or body.get("errorType") == "bad_data":
        raise PrometheusRefused(str(body.get("error") or "bad query"))
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusUnreadable(f"HTTP {response.status_code}: {body.get('error') or body.get('status')}")
    data = body.get("data")
    data = data if isinstance(data, dict) else {}
    result = data.get("result")
    if data.get("resultType") in ("vector", "matrix") and isinstance(result, list):
        return [r for r in result if isinstance(r, dict)]
    return [{"metric": {}, "value": result}] if _nonzero(result) else []


def _nonzero(value: object) -> bool:
    """A scalar (or string) result `[time, "v"]` fires when v is a number other than 0 (NaN does not):
    `scalar(x) > bool 0` style queries read as yes/no. Anything unreadable is unreadable."""
    if not isinstance(value, list) or len(value) != 2:
        if value in (None, [], ""):
            return False
        raise PrometheusUnreadable(f"a result Prometheus does not give: {str(value)[:80]}")
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        return bool(value[1])  # a string result: fires when not empty
    return number == number and number != 0
