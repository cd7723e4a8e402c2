"""Fail fast: when to stop a run whose final verdict is already certain to fail (`loadkit run --abort-on-fail`).

Pure. `loadkit run` is judged once, on the whole run's numbers (a success rate, an error rate, a
p99 over every request), so a run may stop only when that whole-run judgement is certain to fail
whatever the rest of the planned run brings: the requests so far already break the threshold even
if every request still to come is perfect. For a share with limit L (1 % errors, 1 - 99 % server
failures, 1 % of timed requests over a p99 bound, none over a latency maximum) the run stops at the
first second where

    bad requests so far  >  L * (requests so far + the requests still planned)

The requests still planned are bounded from above, never guessed low: the fastest second seen
so far (per user, or per scheduled iteration of an open-model run, scaled to the plan's peak
load), times HEADROOM, over the planned time left plus STOP_ALLOWANCE_S. A warm-up burst, a cold
start or a periodic spike that the whole run dilutes never stops a run; a trailing window is never
looked at (that is the webhook's rollback rule for a live canary, `DecisiveTracker`, which asks
"is the canary bad now", not "will this run's verdict fail"). Nothing is decided before a
threshold's `delay_abort_eval` (default DEFAULT_HOLD_S, so the rate has been seen), and nothing
while the run has requests the load generator refused itself (they are not the target's failures).

The bound assumes the target cannot get more than HEADROOM times faster per user than at its
fastest second so far (a closed-model run's rate follows its latency); a run that breaks it is
still judged on its own numbers when it ends, only it would not have been stopped.

    watch = FailFast(thresholds, min_samples=100, planned_s=60, every=True, peak_load=20)
    every second: stop = watch.add(elapsed_s, tally_of(window, window_histogram, watch.bounds), load=users)
                  if stop: end the run, judged FAIL, saying stop.reason at stop.at_s
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from loadkit.models.specs import Metric, Threshold
from loadkit.scoring._decisive import (
    _REQUESTS,
    QUANTILES,
    Breach,
    LatencyBound,
    Tally,
    _Rule,
    _rules,
    _tally,
    _toward,
    _vector,
    latency_bounds,
)
from loadkit.units import fmt, with_unit

HEADROOM = 1.5  # the rest of the run may send this many times the fastest rate seen so far
STOP_ALLOWANCE_S = 5.0  # requests that still count while the run stops
DEFAULT_HOLD_S = 10.0  # no stop before this far into the run unless delay_abort_eval says otherwise
MIN_WINDOW_S = 0.5  # a shorter window (the last, while stopping) is rated as this long
STEADY_S = 5.0  # seconds at a steady load after which only those seconds' rates count


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
    """Whether a run's requests can ever make this threshold certainly failed before the run ends.

    >>> from loadkit.models.specs import ThresholdRange
    >>> can_abort(Threshold(name="rps", thresholdRange=ThresholdRange(min=10)))
    False
    """
    return bool(threshold.is_client_range and _rules([threshold], 1, latency_bounds([threshold])))


def abortable(thresholds: Sequence[Threshold], every: bool) -> list[Threshold]:
    """The thresholds that may stop the run: those with abort_on_fail (all that can be, with `every`).

    Raises ValueError naming a threshold that asks for abort_on_fail but can never be decisive
    (the config's own validation refuses it first, with its file and line).
    """
    chosen = []
    for t in thresholds:
        if t.abort_on_fail and not can_abort(t):
            raise ValueError(f"threshold {t.name!r}: abort_on_fail needs a check whose failure can be certain "
                             "before the run ends (request-success-rate, error-rate, a latency maximum or "
                             "minimum other than a minimum on latency-max); drop abort_on_fail there")
        if (t.abort_on_fail or every) and can_abort(t):
            chosen.append(t)
    return chosen


class FailFast:
    """Per-second tallies in, the first threshold whose whole-run failure is certain out (once)."""

    def __init__(self, thresholds: Sequence[Threshold], min_samples: int, *, planned_s: float,
                 every: bool = False, peak_load: float | None = None) -> None:
        self.thresholds = abortable(thresholds, every)
        self.planned_s = planned_s
        self.peak_load = peak_load if peak_load and peak_load > 0 else None
        self.bounds: list[LatencyBound] = latency_bounds(self.thresholds)
        self._rules = _rules(self.thresholds, min_samples, self.bounds)
        held = {t.name: DEFAULT_HOLD_S if t.delay_abort_eval is None else t.delay_abort_eval for t in self.thresholds}
        self._hold = [held[r.check] for r in self._rules]
        self._total = [0] * (4 + len(self.bounds))
        self._peak_rate = 0.0  # requests per second, at the plan's peak load
        self._last_s = 0.0
        self._last_load: float | None = None
        self._peak_any = self._peak_steady = self._steady_s = 0.0
        self._refused = 0
        self.stopped: Stop | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.thresholds)

    @property
    def total(self) -> Tally:
        """Everything added so far (`beyond` holds the counts of `bounds`)."""
        return _tally(self._total, self.bounds)

    def add(self, elapsed_s: float, window: Tally, *, load: float | None = None, refused: int = 0) -> Stop | None:
        """One window ending `elapsed_s` into the run; the Stop when the run must stop now, else None.

        `load`: the users (an open-model run: the scheduled iterations per second) at the window's
        end, to scale its rate to `peak_load`; `refused`: requests the load generator refused itself
        in it. Once stopped, it stays stopped on the first breach (later windows change nothing)."""
        if self.stopped is not None or not self._rules:
            return None
        counts = _vector(window, self.bounds)
        self._total = list(map(operator.add, self._total, counts))
        self._refused += max(refused, 0)
        self._rate(elapsed_s, counts[_REQUESTS], load)
        if self._refused:
            return None  # not the target's failures: the run is judged on them at its end, not stopped
        future = HEADROOM * self._peak_rate * (max(self.planned_s - elapsed_s, 0.0) + STOP_ALLOWANCE_S)
        for rule, hold in zip(self._rules, self._hold, strict=True):
            if elapsed_s >= hold and (breach := _certain(rule, self._total, future, elapsed_s)) is not None:
                self.stopped = Stop(round(elapsed_s, 3), breach)
                return self.stopped
        return None

    def _rate(self, elapsed_s: float, requests: int, load: float | None) -> None:
        """The fastest one-second rate so far, at the plan's peak load: the window's mean load (the
        mean of its start and end: a ramp's users rise through it) scaled to peak_load. While the
        load changes (users spawning, each firing its first request at once, or spawned faster than
        the mean assumes) the rate per user reads high; once STEADY_S of windows at a steady load
        were seen, the fastest of those is used instead (a ramp that never holds keeps the higher
        figure). The fastest second, not an average: a cold start's slow seconds must not hide how
        fast the target answers once warm."""
        span = max(elapsed_s - self._last_s, MIN_WINDOW_S)
        rate, steady = requests / span, True
        if self.peak_load is not None and load is not None:
            steady = self._last_load == load
            mean = (load + (self._last_load if self._last_load is not None else 0.0)) / 2
            rate = rate * self.peak_load / mean if mean > 0 else rate
            self._last_load = load
        self._peak_any = max(self._peak_any, rate)
        if steady:
            self._steady_s += span
            self._peak_steady = max(self._peak_steady, rate)
        self._peak_rate = self._peak_steady if self._steady_s >= STEADY_S else self._peak_any
        self._last_s = max(self._last_s, elapsed_s)


def _needed(rule: _Rule) -> int:
    """min_samples, and for a quantile at least the requests that make it more than one request."""
    if rule.latency is not None and 0 < rule.limit < 1:
        return max(rule.needed, math.ceil(1 / min(rule.limit, 1 - rule.limit)))
    return rule.needed


def _certain(rule: _Rule, total: Sequence[int], future: float, elapsed_s: float) -> Breach | None:
    """The breach when `total` fails `rule` even if `future` more requests all pass it."""
    n = total[rule.of]
    if n < _needed(rule):
        return None
    k = min(max(total[rule.counted], 0), n)
    if rule.rest:
        k = n - k
    final_n = n + future
    if not k > rule.limit * final_n:
        return None
    share = 100.0 * k / final_n  # the least share the whole run can end with
    return Breach(rule.check, _reason(rule, k, n, future, share, elapsed_s), share, n, "run")


def _reason(rule: _Rule, k: int, n: int, future: float, share: float, elapsed_s: float) -> str:
    so_far = f"in the first {fmt(round(elapsed_s))}s"
    still = f"~{math.ceil(future)} requests still planned"
    if rule.latency is not None:
        limit = with_unit(rule.value, "ms")
        took = f"took {'over' if rule.side == 'max' else 'under'} {limit}"
        q = QUANTILES[rule.metric]
        if q == 1.0:
            return f"{rule.check}: {k} of {n} timed requests {so_far} {took}, so the run's slowest is above " \
                   f"the maximum {limit}"
        return (f"{rule.check}: {k} of {n} timed requests {so_far} {took}; even if the {still} do not, at least "
                f"{_toward(share, 100 * rule.limit, down=True)}% of the run's requests {took}, so its p{fmt(100 * q)}"
                f" is {'above' if rule.side == 'max' else 'below'} {limit}")
    limit = with_unit(rule.value, "%")
    success = rule.metric is Metric.REQUEST_SUCCESS_RATE
    bad = ("failed (5xx or no answer)" if rule.side == "min" else "succeeded") if success else \
        ("failed" if rule.side == "max" else "succeeded")
    good = "succeed" if bad.startswith("failed") else "fail"
    # the run's rate itself: for a minimum the share counted is its complement
    rate = share if rule.side == "max" else 100.0 - share
    word = "at least" if rule.side == "max" else "at most"
    name = "success rate" if success else "error rate"
    return (f"{rule.check}: {k} of {n} requests {so_far} {bad}; even if the {still} all {good}, the run's {name} "
            f"is {word} {_toward(rate, rule.value, down=rule.side == 'max')}%, "
            f"{'above the maximum' if rule.side == 'max' else 'below the minimum'} {limit}")
