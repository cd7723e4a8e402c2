"""Fail fast: when to stop a run whose failure is already certain (`loadkit run --abort-on-fail`).

Pure, and not a second rule: it is the webhook's decisive-breach rule (`DecisiveTracker`, the same
confidence over the run and the same trailing window), asked once a second, over the thresholds
that may stop the run. A threshold may stop it when it says `abort_on_fail: true` or the caller
turns it on for all (`every=True`, the CLI flag), and only from `delay_abort_eval` seconds into
the run (k6's delayAbortEval). k6 aborts on its point estimate, so a short delay can stop a healthy
run on early noise; here a healthy canary is stopped in at most 1 - confidence of runs even at its
threshold exactly, and far less often below it (tests/scoring/test_failfast.py).

    watch = FailFast(thresholds, min_samples=100, planned_s=60, every=True)
    every second: stop = watch.add(elapsed_s, tally_of(window, window_histogram, watch.bounds))
                  if stop: end the run, judged FAIL, saying stop.reason at stop.at_s
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadkit.models.specs import Threshold
from loadkit.scoring._decisive import Breach, DecisiveTracker, LatencyBound, Tally, _rules, latency_bounds


@dataclass(frozen=True)
class Stop:
    """The breach that stopped a run, `at_s` seconds into it."""

    at_s: float
    breach: Breach

    @property
    def check(self) -> str:
        return self.breach.check

    @property
    def reason(self) -> str:
        return self.breach.reason


def can_abort(threshold: Threshold) -> bool:
    """Whether the decisive-breach rule can ever call this threshold certainly failed.

    >>> from loadkit.models.specs import ThresholdRange
    >>> can_abort(Threshold(name="rps", thresholdRange=ThresholdRange(min=10)))
    False
    """
    return bool(threshold.is_client_range and _rule_count([threshold]))


def _rule_count(thresholds: Sequence[Threshold]) -> int:
    return len(_rules(thresholds, 1, latency_bounds(thresholds)))


def abortable(thresholds: Sequence[Threshold], every: bool) -> list[Threshold]:
    """The thresholds that may stop the run: those with abort_on_fail (all that can be, with `every`).

    Raises ValueError naming a threshold that asks for abort_on_fail but can never be decisive.
    """
    chosen = []
    for t in thresholds:
        if t.abort_on_fail and not can_abort(t):
            raise ValueError(f"threshold {t.name!r}: abort_on_fail needs a check the decisive-breach rule can "
                             "call certainly failed (request-success-rate, error-rate, a latency maximum or "
                             "minimum other than a minimum on latency-max); drop abort_on_fail there")
        if (t.abort_on_fail or every) and can_abort(t):
            chosen.append(t)
    return chosen


class FailFast:
    """Per-second tallies in, the first decisive breach of an abortable threshold out (once)."""

    def __init__(self, thresholds: Sequence[Threshold], min_samples: int, confidence: float = 0.99,
                 window_s: float = 60.0, *, planned_s: float, every: bool = False) -> None:
        self.thresholds = abortable(thresholds, every)
        self.confidence = confidence
        self.planned_s = planned_s
        self._delay = {t.name: t.delay_abort_eval or 0.0 for t in self.thresholds}
        self._tracker = DecisiveTracker(self.thresholds, min_samples, confidence, window_s, planned_s=planned_s)
        self.stopped: Stop | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.thresholds)

    @property
    def bounds(self) -> list[LatencyBound]:
        """The latency counts each tally must carry (see `tally_of`)."""
        return self._tracker.bounds

    def add(self, elapsed_s: float, window: Tally) -> Stop | None:
        """One window ending `elapsed_s` into the run; the Stop when the run must stop now, else None.
        Once stopped, it stays stopped on the first breach (later windows change nothing)."""
        if self.stopped is not None or not self.thresholds:
            return None
        self._tracker.add(elapsed_s, window)
        due = [b for b in self._tracker.breaches() if elapsed_s >= self._delay.get(b.check, 0.0)]
        if not due:
            return None
        self.stopped = Stop(round(elapsed_s, 3), due[0])
        return self.stopped
