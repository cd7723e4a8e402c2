"""Stop conditions: a thread that watches the game day a few times a second and halts it at once.

Each condition is one small checker returning why it fired, or None. The monitor never calls
chaoslib (it must stay in the main thread): it records the firing and pulls the `HaltSwitch`,
which reaches the current chaos run with SIGALRM; the run rolls back as for any early stop.
A Prometheus query or a health URL that cannot be read three times running halts too: a game day
that cannot see its limits must not go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

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
    due: float = 0.0
    failures: int = field(default=0)


class StopMonitor:
    """start() once the baseline load has settled; stop() at the end. `firings` says what fired."""

    def __init__(self, conditions: StopConditions, session: LoadSession, halt: HaltSwitch, *, started: float,
                 prometheus_url: str | None, scenario: Callable[[], str | None]) -> None:
        self.halt = halt
        self.scenario = scenario
        self.firings: list[StopFiring] = []
        self.checkers = checkers(conditions, session, started=started, prometheus_url=prometheus_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadkit-gameday-stops", daemon=True)

    def start(self) -> None:
        if self.checkers:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            for checker in self.checkers:
                if now < checker.due:
                    continue
                checker.due = now + checker.interval_s
                reason = checker.check()
                if reason is not None:
                    self._fire(checker, reason)
                    return

    def _fire(self, checker: Checker, reason: str) -> None:
        self.firings.append(StopFiring(kind=checker.kind, condition=checker.condition, at=datetime.now(UTC),
                                       reason=reason, scenario=self.scenario()))
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
    threshold = stop.threshold()
    bounds = " and ".join(f"{word} {fmt(v)}" for word, v in (("min", stop.thresholdRange.min),
                                                             ("max", stop.thresholdRange.max)) if v is not None)
    condition = f"{stop.name} ({bounds}, over {fmt(stop.window)}s)"

    def check() -> str | None:
        stats = session.recent(stop.window)
        if stats.requests < stop.min_samples:
            return None  # too few requests to judge (and never a halt for a quiet second)
        card = evaluate([threshold], observations_from_stats(stats), stop.min_samples)
        judged = card.checks[0]
        if judged.passed or judged.observed is None:
            return None
        return f"{fmt(judged.observed)}{judged.unit} over the last {fmt(stop.window)}s ({stats.requests} requests)"

    return Checker(StopKind.LOAD, condition, TICK_S, check)


def _prometheus(stop: PrometheusStop, url: str | None) -> Checker:
    checker = Checker(StopKind.PROMETHEUS, stop.query, stop.interval, lambda: None)

    def check() -> str | None:
        try:
            series = query(url or "", stop.query)
        except PrometheusUnreadable as exc:
            checker.failures += 1
            return f"cannot be read ({checker.failures} times running): {exc}" \
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
            got: str = str(httpx.get(stop.url, timeout=stop.timeout).status_code)
        except httpx.HTTPError as exc:
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
        response = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PrometheusUnreadable(f"{type(exc).__name__} from {httpx.URL(url).host}") from None
    try:
        body = response.json()
    except ValueError:
        raise PrometheusUnreadable(f"HTTP {response.status_code}, not Prometheus' JSON") from None
    if response.status_code == 400 or body.get("errorType") == "bad_data":
        raise PrometheusRefused(str(body.get("error") or "bad query"))
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusUnreadable(f"HTTP {response.status_code}: {body.get('error') or body.get('status')}")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") in ("vector", "matrix") and isinstance(result, list):
        return [r for r in result if isinstance(r, dict)]
    return [{"metric": {}, "value": result}] if result else []  # a scalar or a string is a value
