"""Decisive breaches: a threshold that is certainly broken, not one noisy window failing it.

Pure: counts in, breaches out. Used to send Flagger a rollback before the analysis ends, so it must
never fire on a healthy canary. (`loadkit run --abort-on-fail` asks another question, whether the
run's whole-run verdict is certain to fail: scoring/_failfast.py.)

Every rule tests one share of requests with a one-sided exact Clopper-Pearson bound at `confidence`
and breaches when even the bound is past the threshold (both bounds of a threshold are inclusive, so
"past" is strict):

- request-success-rate >= S: the share of server failures (5xx, no answer) is above 1 - S/100;
- error-rate <= E: the share of failed requests (Locust failures + task exceptions) is above E/100;
- latency pQ (request-duration = p99) <= B ms: more than 1 - Q of the timed requests are slower
  than B, since the Q-quantile is above B exactly then; >= A ms: more than Q are faster than A;
- latency-max <= B: one request slower than B is enough (Q = 1); a minimum is never decisive.

A max on the success rate and a min on the error rate are the mirror images. Only client-side
range checks can be decisive; Prometheus, compare, rps, availability and recovery-time never are.
With fewer requests (timed requests for latency) than min_samples nothing is decisive.

`decisive_breaches` is one look, and its `confidence` holds for that look. A run looked at once a
second is many looks: at 0.99 each, a canary exactly at a threshold (1 % errors against a maximum of
1 %) would be called decisive in about 28 % of 10-minute runs at 20 req/s. So `DecisiveTracker` takes
`confidence` for the whole run: a canary exactly at a threshold is called decisive in at most
1 - confidence of runs of planned_s seconds. `look_confidences` makes it a stricter confidence per
look, a Bonferroni correction over the looks that count as independent (about 0.9999 per look for
0.99 over 10 minutes), and the tracker's reasons say "(99% confidence over the run)".

    >>> from loadkit.models.specs import default_thresholds
    >>> [b.reason for b in decisive_breaches(default_thresholds(), Tally(1200, 0, 60, 1200), 100, 0.99)]
    ['error-rate: at least 3.6% of 1200 requests failed (99% confidence), above the maximum 1%']
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

from loadkit.models.specs import Metric, Threshold
from loadkit.units import fmt, with_unit

# The quantile each latency metric names; latency-max is the 1-quantile.
QUANTILES: dict[Metric, float] = {
    Metric.LATENCY_P50: 0.5,
    Metric.LATENCY_P95: 0.95,
    Metric.LATENCY_P99: 0.99,
    Metric.REQUEST_DURATION: 0.99,
    Metric.LATENCY_MAX: 1.0,
}


@dataclass(frozen=True)
class LatencyBound:
    """A latency count to collect: requests strictly slower (above) or strictly faster than bound_ms.

    >>> LatencyBound(500.0, above=True)
    LatencyBound(bound_ms=500.0, above=True)
    """

    bound_ms: float
    above: bool


@dataclass(frozen=True)
class Tally:
    """Counts over a span of requests, enough to test every client-side threshold.

    server_failures: 5xx answers and no answer (status 0), what request-success-rate counts as failed
    (Flagger's definition); errors: failed requests plus task exceptions, what error-rate counts;
    timed: requests that got an HTTP answer (they have a latency); beyond: per LatencyBound, how many
    timed requests were certainly beyond it. A bound missing from `beyond` counts as none.

    >>> Tally(100, 1, 2, 99) + Tally(50, 0, 0, 50)
    Tally(requests=150, server_failures=1, errors=2, timed=149, beyond={})
    """

    requests: int = 0
    server_failures: int = 0
    errors: int = 0
    timed: int = 0
    beyond: Mapping[LatencyBound, int] = field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.requests + other.requests, self.server_failures + other.server_failures,
                     self.errors + other.errors, self.timed + other.timed, _merged(self.beyond, other.beyond))


def _merged(a: Mapping[LatencyBound, int], b: Mapping[LatencyBound, int]) -> dict[LatencyBound, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


# Inside, a tally is a vector: these four counts, then one count per LatencyBound of the caller's list
# (the tracker adds one every second, and lists of ints are several times cheaper than Tallies).
_REQUESTS, _SERVER_FAILURES, _ERRORS, _TIMED = range(4)


def _vector(tally: Tally, bounds: Sequence[LatencyBound]) -> list[int]:
    beyond = tally.beyond
    return [tally.requests, tally.server_failures, tally.errors, tally.timed, *[beyond.get(b, 0) for b in bounds]]


def _tally(vector: Sequence[int], bounds: Sequence[LatencyBound]) -> Tally:
    return Tally(vector[_REQUESTS], vector[_SERVER_FAILURES], vector[_ERRORS], vector[_TIMED],
                 dict(zip(bounds, vector[_TIMED + 1:], strict=True)))


@dataclass(frozen=True)
class Breach:
    """A threshold that is broken at the stated confidence, and the sentence that says so.

    bound is the confidence bound that crossed the threshold (at the look's own confidence, which a
    DecisiveTracker makes stricter than its run-level one), in percent: for request-success-rate
    and error-rate a bound on the rate itself (compare it with the threshold: "at most 96.9 %" against
    a minimum of 99); for latency checks the lower bound of the share of timed requests beyond the
    latency limit (compare it with 100 - Q: more than 1 % slower than 500 ms means p99 > 500 ms).
    samples: requests (timed requests for latency) behind it; span: "run" or "last 60s".
    """

    check: str
    reason: str
    bound: float
    samples: int
    span: str


_Side = Literal["min", "max"]


@dataclass(frozen=True)
class _Rule:
    """One bound of one threshold, as a test: is the counted share of `of` certainly above `limit`?"""

    check: str
    metric: Metric
    side: _Side
    value: float  # the threshold's own number (% or ms)
    needed: int
    limit: float
    counted: int  # index in the vector
    of: int  # _REQUESTS or _TIMED
    rest: bool = False  # count the others: n - vector[counted]
    latency: LatencyBound | None = None


def proportion_bounds(k: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided exact Clopper-Pearson bounds at `confidence`: (lower, upper) of the true proportion.

    Each bound alone holds with probability `confidence` (the pair is a 2*confidence - 1 interval).

    >>> [round(b, 4) for b in proportion_bounds(0, 100, 0.95)]  # the "rule of three": 3 / n
    [0.0, 0.0295]
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    # Imported here: scipy costs start-up time. betaincinv(a, b, q) is what beta.ppf(q, a, b)
    # computes, without rv_continuous's per-call argument checks (~5 us instead of ~190 us).
    from scipy.special import betaincinv

    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))
    upper = 1.0 if k == n else float(betaincinv(k + 1, n - k, confidence))
    return lower, upper


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0.5 and 1 (e.g. 0.99), got {confidence}")


def look_confidences(confidence: float, planned_s: float, window_s: float,
                     elapsed_s: float = 0.0) -> tuple[float, float]:
    """Per-look confidences (whole run, trailing window) for a look `elapsed_s` into a run of planned_s
    seconds looked at once a second, so that a share exactly at its limit breaches in at most
    1 - confidence of such runs (by the approximation below, which simulation bears out).

    Half of 1 - confidence goes to the whole-run tally, half to the trailing window, each divided
    among its effective number of looks (Bonferroni). Looks a second apart are far from independent;
    Pickands' asymptotic for a Gaussian process whose correlation falls linearly, 1 - C|dt|, says a
    level z (one-sided tail Q(z)) is crossed somewhere in a span S with probability about
    Q(z) * (1 + C * S * z**2), looking continuously, which is more often than looking once a second.
    The trailing share has C = 1 / window_s over the span from window_s to planned_s; the whole-run
    share, in log-time, C = 1/2 over ln(planned_s / 1 s). z solves Q(z) * looks(z) = budget.
    This errs on the safe side: at 0.99, simulated runs exactly at the threshold breach in 0.3-0.7 %
    of runs (20 and 100 req/s, 10 to 60 minutes; DecisiveTracker has the figures), not 1 %.

    A run that goes on past its plan is not left unguarded: each doubling of its length (to 2, 4, 8 ...
    times planned_s) gets half the budget of the one before, so however long it goes it spends at most
    2 * (1 - confidence) in all.

    >>> [round(c, 6) for c in look_confidences(0.99, planned_s=600, window_s=60)]
    [0.999888, 0.999965]
    """
    _check_confidence(confidence)
    if not (0 < planned_s < math.inf and window_s > 0):
        raise ValueError(f"planned_s and window_s must be positive, got {planned_s} and {window_s}")
    budget, start, end = 1.0 - confidence, 0.0, float(planned_s)
    while elapsed_s > end:
        budget, start, end = budget / 2, end, 2 * end
    log_span = math.log(max(end, 1.0))  # from the first second on, even past the plan: never looser
    window_span = max(end - max(start, window_s), 0.0) / window_s
    run = _look_alpha(budget / 2, lambda z2: 1.0 + z2 / 2 * log_span)
    window = _look_alpha(budget / 2, lambda z2: 1.0 + z2 * window_span)
    return 1.0 - run, 1.0 - window


def _look_alpha(budget: float, looks: Callable[[float], float]) -> float:
    """The per-look alpha = Q(z) with Q(z) * looks(z**2) = budget: z rises to it from Q^-1(budget)."""
    normal, alpha = NormalDist(), budget
    for _ in range(100):  # a falling sequence; about 15 steps to converge
        z = -normal.inv_cdf(alpha)
        alpha, before = budget / looks(z * z), alpha
        if before - alpha <= 1e-12 * alpha:
            break
    return alpha


def latency_bounds(thresholds: Sequence[Threshold]) -> list[LatencyBound]:
    """Which latency counts the caller must collect from its histograms for these thresholds.

    >>> from loadkit.models.specs import default_thresholds
    >>> latency_bounds(default_thresholds())
    [LatencyBound(bound_ms=500.0, above=True)]
    """
    found = (_latency_bound(t.resolved_metric, side, value) for t, side, value in _bounds_of(thresholds))
    return list(dict.fromkeys(b for b in found if b is not None))


def _latency_bound(metric: Metric, side: _Side, value: float) -> LatencyBound | None:
    q = QUANTILES.get(metric)
    if q is None or (side == "min" and q == 1.0):
        return None  # not a latency check, or a minimum on the slowest request: never decisive
    return LatencyBound(value, above=side == "max")


def _bounds_of(thresholds: Sequence[Threshold]) -> list[tuple[Threshold, _Side, float]]:
    """Each min and max of the client-side range checks: the only ones that can be decisive."""
    found: list[tuple[Threshold, _Side, float]] = []
    for t in thresholds:
        if t.is_client_range and t.thresholdRange is not None:
            if t.thresholdRange.min is not None:
                found.append((t, "min", t.thresholdRange.min))
            if t.thresholdRange.max is not None:
                found.append((t, "max", t.thresholdRange.max))
    return found


def _rules(thresholds: Sequence[Threshold], min_samples: int, bounds: Sequence[LatencyBound]) -> list[_Rule]:
    rules = []
    for t, side, value in _bounds_of(thresholds):
        rule = _rule(t.name, t.resolved_metric, side, value, max(t.min_samples or min_samples, 1), bounds)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(check: str, metric: Metric, side: _Side, value: float, needed: int,
          bounds: Sequence[LatencyBound]) -> _Rule | None:
    limit = value / 100.0 if side == "max" else 1.0 - value / 100.0
    if metric is Metric.REQUEST_SUCCESS_RATE:  # >= S: server failures; <= M: successes
        return _Rule(check, metric, side, value, needed, limit, _SERVER_FAILURES, _REQUESTS, rest=side == "max")
    if metric is Metric.ERROR_RATE:  # <= E: errors; >= E: requests without error
        return _Rule(check, metric, side, value, needed, limit, _ERRORS, _REQUESTS, rest=side == "min")
    latency = _latency_bound(metric, side, value)
    if latency is None:
        return None  # rps, availability, recovery-time; a minimum on latency-max
    q = QUANTILES[metric]
    return _Rule(check, metric, side, value, needed, 1.0 - q if latency.above else q,
                 _TIMED + 1 + list(bounds).index(latency), _TIMED, latency=latency)


def _judge(rules: Sequence[_Rule], vector: Sequence[int], confidence: float, span: str,
           stated: str) -> list[Breach]:
    """The rules `vector` breaks at `confidence` (one look); reasons say `stated` for it."""
    breaches = []
    for rule in rules:
        n = vector[rule.of]
        if n < rule.needed:
            continue
        k = vector[rule.counted]
        k = n if k > n else max(k, 0)  # counts from outside may overshoot
        if rule.rest:
            k = n - k
        # With confidence > 0.5 the lower bound is below k/n, so a share at or under the limit can
        # never be decisive: skip scipy (the common, healthy case).
        if k <= rule.limit * n:
            continue
        lower = proportion_bounds(k, n, confidence)[0]
        if lower > rule.limit:
            breaches.append(_breach(rule, k, n, lower, stated, span))
    return breaches


def decisive_breaches(thresholds: Sequence[Threshold], tally: Tally, min_samples: int,
                      confidence: float, span: str = "run") -> list[Breach]:
    """The thresholds `tally` breaks at `confidence`, each with a reason a person can read.

    One look: `confidence` holds for this call alone (a run of looks wants a DecisiveTracker).

    span names what the tally covers ("run", or e.g. "last 60s", which the reason then mentions).
    A LatencyBound missing from `tally.beyond` counts as no request beyond it.
    """
    _check_confidence(confidence)
    bounds = latency_bounds(thresholds)
    return _judge(_rules(thresholds, min_samples, bounds), _vector(tally, bounds), confidence, span,
                  f"({100 * confidence:.6g}% confidence)")


def _breach(rule: _Rule, k: int, n: int, lower: float, sure: str, span: str) -> Breach:
    requests = f"{n} requests" if span == "run" else f"{n} requests in the {span}"
    if rule.latency is None:
        limit = with_unit(rule.value, "%")
        what = "succeeded" if rule.metric is Metric.REQUEST_SUCCESS_RATE else "failed"
        if rule.side == "max":
            bound = 100.0 * lower
            text = f"at least {_toward(bound, rule.value, down=True)}% of {requests} {what} {sure}, " \
                   f"above the maximum {limit}"
        else:
            bound = 100.0 * (1.0 - lower)
            text = f"at most {_toward(bound, rule.value, down=False)}% of {requests} {what} {sure}, " \
                   f"below the minimum {limit}"
        return Breach(rule.check, f"{rule.check}: {text}", bound, n, span)
    bound, limit = 100.0 * lower, with_unit(rule.value, "ms")
    took = f"took {'over' if rule.side == 'max' else 'under'} {limit}"
    q = QUANTILES[rule.metric]
    if q == 1.0:
        text = f"{k} of {requests} {took}, so the slowest is above the maximum {limit}"
    else:
        share = _toward(bound, 100.0 * rule.limit, down=True)
        text = f"at least {share}% of {requests} {took} {sure}, so p{fmt(100 * q)} is " \
               f"{'above' if rule.side == 'max' else 'below'} {limit}"
    return Breach(rule.check, f"{rule.check}: {text}", bound, n, span)


def _toward(value: float, limit: float, *, down: bool) -> str:
    """`value` rounded towards the safe side (down for "at least", up for "at most"), with enough
    digits that it still reads as past `limit`: 1.004 against 1 is '1.004', never '1'."""
    for digits in range(1, 10):
        scale = 10.0**digits
        shown = math.floor(value * scale) / scale if down else math.ceil(value * scale) / scale
        if (shown > limit) if down else (shown < limit):
            return f"{shown:.{digits}f}".rstrip("0").rstrip(".")
    return repr(value)


class DecisiveTracker:
    """Per-second tallies of one run: decisive over the whole run, or over the trailing window.

    The whole run catches a canary that was always bad with the most samples; the trailing window
    catches one that turned bad late, which a long healthy history would otherwise hide. Memory is
    the windows inside window_s plus a running total, whatever the length of the run.

    `confidence` holds for the run: a canary exactly at a threshold is called decisive in at most
    1 - confidence of runs of planned_s seconds looked at once a second; a run that overruns its plan
    spends at most as much again, however long it goes. The looks use the stricter confidences of
    `look_confidences` (run_look_confidence, window_look_confidence, which tighten as the run passes
    planned_s, 2 * planned_s ...): 0.99 over 10 minutes with a 60 s window is 0.99989 per look at
    the whole run and 0.999965 at the window. It holds per threshold: a canary exactly at two
    independent thresholds at once (errors and p99) may be called decisive up to twice as often.

    Simulated at 0.99 with a 60 s window (2000 to 10 000 runs; tests/scoring/test_decisive.py checks
    the same with fewer): exactly at a threshold (1 % errors against a maximum of 1 %, or p99 exactly
    at its bound), decisive in 0.3-0.4 % of runs at 20 req/s, whether 10, 30 or 60 minutes long, and
    0.7 % at 100 req/s (at both thresholds at once: 0.7-0.8 %, and 1.35 %); a 10-minute plan run on
    to 40 minutes: 0.5 %. At 0.5 % errors: in none. At 20 req/s, 5 % errors from the start: decisive
    within 30 s in 99.6 % of runs (median 9 s); from minute 8 of 10: caught within 60 s in all
    (median 26 s; the whole-run tally alone: none); 3 % of requests over 500 ms: p99 decisive within
    60 s in 95 %, within 90 s in all (median 23 s). A 10 s window holds few requests at 20 req/s
    (200; 2 errors expected at the threshold): a 5 % fault at minute 5 of 10 is caught within 20 s
    in 70 % of runs, 40 s in 94 %, 60 s in 99 % (median 14 s); at 50 req/s, within 20 s in 99.6 %.

        tracker = DecisiveTracker(thresholds, min_samples=100, planned_s=600)
        every second: tracker.add(elapsed_s, tally_of(window_stats, window_histogram, tracker.bounds))
                      if tracker.breaches(): roll back / stop the run
    """

    def __init__(self, thresholds: Sequence[Threshold], min_samples: int, confidence: float = 0.99,
                 window_s: float = 60.0, *, planned_s: float = 600.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.confidence = confidence
        self.window_s = window_s
        self.planned_s = planned_s
        self.run_look_confidence, self.window_look_confidence = look_confidences(confidence, planned_s, window_s)
        self._plan_end = float(planned_s)  # doubled each time the run overruns it
        self._stated = f"({100 * confidence:.6g}% confidence over the run)"
        self.bounds: list[LatencyBound] = latency_bounds(thresholds)
        self._rules = _rules(thresholds, min_samples, self.bounds)
        self._span = f"last {fmt(window_s)}s"
        self._total = [0] * (4 + len(self.bounds))
        self._recent = [0] * (4 + len(self.bounds))
        self._windows: deque[tuple[float, list[int]]] = deque()
        self._latest = -math.inf
        self._trimmed = False  # until a window leaves the trailing span, it is the whole run

    def add(self, elapsed_s: float, window: Tally) -> None:
        """One window (about one second) of requests, ending `elapsed_s` seconds into the run."""
        counts = _vector(window, self.bounds)
        self._total = list(map(operator.add, self._total, counts))
        self._recent = list(map(operator.add, self._recent, counts))
        self._windows.append((elapsed_s, counts))
        if elapsed_s > self._latest:
            self._latest = elapsed_s
        start = self._latest - self.window_s
        while self._windows and self._windows[0][0] <= start:
            self._recent = list(map(operator.sub, self._recent, self._windows.popleft()[1]))
            self._trimmed = True
        if self._latest > self._plan_end:
            while self._latest > self._plan_end:
                self._plan_end *= 2
            self.run_look_confidence, self.window_look_confidence = look_confidences(
                self.confidence, self.planned_s, self.window_s, self._latest)

    def breaches(self) -> list[Breach]:
        """Decisive over the whole run so far, else over the last window_s seconds."""
        run = _judge(self._rules, self._total, self.run_look_confidence, "run", self._stated)
        if run or not self._trimmed:
            return run
        return _judge(self._rules, self._recent, self.window_look_confidence, self._span, self._stated)

    def recent_breaches(self) -> list[str]:
        """The thresholds the trailing window breaks as measured (a point estimate, as Flagger's own
        metric checks judge their interval), once the run is longer than the window: what a long
        healthy history would hide from the whole run's numbers. Not a rollback signal."""
        if not self._trimmed:
            return []
        return [_point_reason(rule, self._recent, self._span) for rule in self._rules
                if _point_breaks(rule, self._recent)]

    @property
    def total(self) -> Tally:
        """Everything added so far (`beyond` holds the counts of `bounds`)."""
        return _tally(self._total, self.bounds)


def _point_breaks(rule: _Rule, vector: Sequence[int]) -> bool:
    n = vector[rule.of]
    if n < rule.needed:
        return False
    k = min(max(vector[rule.counted], 0), n)
    return (n - k if rule.rest else k) > rule.limit * n


def _point_reason(rule: _Rule, vector: Sequence[int], span: str) -> str:
    n = vector[rule.of]
    k = min(max(vector[rule.counted], 0), n)
    k = n - k if rule.rest else k
    share = 100.0 * k / n
    if rule.latency is None:
        what = "succeeded" if rule.metric is Metric.REQUEST_SUCCESS_RATE else "failed"
        shown = 100.0 - share if rule.metric is Metric.REQUEST_SUCCESS_RATE and rule.side == "min" else share
        word = "below the minimum" if rule.side == "min" else "above the maximum"
        return f"{rule.check}: {fmt(shown)}% of {n} requests in the {span} {what}, {word} {with_unit(rule.value, '%')}"
    took = "over" if rule.side == "max" else "under"
    return (f"{rule.check}: {fmt(share)}% of {n} requests in the {span} took {took} {with_unit(rule.value, 'ms')} "
            f"(more than {fmt(100 * rule.limit)}%)")
