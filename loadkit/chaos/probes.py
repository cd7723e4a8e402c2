"""Chaos Toolkit probes over loadkit's live load: numbers, and "are the thresholds met?".

Use them in a steady-state hypothesis:

    - type: probe
      name: load-thresholds-met
      tolerance: true
      provider: {type: python, module: loadkit.chaos.probes, func: thresholds_met,
                 arguments: {window_s: 10}}
    - type: probe
      name: p99-under-500ms
      tolerance: {type: range, range: [0, 500]}
      provider: {type: python, module: loadkit.chaos.probes, func: p99_ms}

Each probe looks at the last `window_s` seconds of load and waits (up to `wait_s`) until that
window holds `min_samples` requests, so a hypothesis right after the load starts is not judged
on three requests. The load comes from `loadkit chaos run` or the `loadkit.chaos.control` control.
"""

from __future__ import annotations

import time

from chaoslib.exceptions import ActivityFailed

from loadkit.chaos.live import LoadSession, current
from loadkit.models.wire import Stats
from loadkit.scoring import client_thresholds, evaluate, observations_from_stats

__all__ = ["error_rate", "p95_ms", "p99_ms", "rps", "success_rate", "thresholds_met"]


def _window(window_s: float, min_samples: int, wait_s: float) -> tuple[Stats, LoadSession]:
    session = current()
    if session is None:
        raise ActivityFailed("no loadkit load is running: use `loadkit chaos run`, or add the "
                             "loadkit.chaos.control control to the experiment")
    from loadkit.chaos import guards

    deadline = time.monotonic() + min(float(wait_s), guards.active().max_fault_s)  # never a wait longer than a fault
    while True:
        stats = session.recent(window_s)
        if stats.requests >= min_samples or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    if stats.requests < min_samples:
        raise ActivityFailed(f"insufficient data: {stats.requests} requests in the last {window_s:g}s, "
                             f"need {min_samples}")
    return stats, session


def success_rate(window_s: float = 10, min_samples: int = 20, wait_s: float = 30) -> float:
    """% of requests in the window answered without a 5xx or a connection error (Flagger's rule)."""
    stats, _ = _window(window_s, min_samples, wait_s)
    return float(stats.success_rate_pct or 0.0)


def error_rate(window_s: float = 10, min_samples: int = 20, wait_s: float = 30) -> float:
    """% of requests in the window that failed (4xx, 5xx, connection errors, task exceptions)."""
    stats, _ = _window(window_s, min_samples, wait_s)
    return float(stats.error_rate_pct or 0.0)


def p99_ms(window_s: float = 10, min_samples: int = 20, wait_s: float = 30) -> float:
    stats, _ = _window(window_s, min_samples, wait_s)
    return float(stats.p99_ms or 0.0)


def p95_ms(window_s: float = 10, min_samples: int = 20, wait_s: float = 30) -> float:
    stats, _ = _window(window_s, min_samples, wait_s)
    return float(stats.p95_ms or 0.0)


def rps(window_s: float = 10, min_samples: int = 1, wait_s: float = 30) -> float:
    stats, _ = _window(window_s, min_samples, wait_s)
    return float(stats.rps)


def thresholds_met(window_s: float = 10, min_samples: int = 20, wait_s: float = 30) -> bool:
    """True when every load threshold (request-success-rate, request-duration, error-rate, or the
    config's) is met over the window: the steady state, as loadkit scores it."""
    stats, session = _window(window_s, min_samples, wait_s)
    card = evaluate(client_thresholds(session.thresholds), observations_from_stats(stats), min_samples)
    return all(c.passed for c in card.checks)
