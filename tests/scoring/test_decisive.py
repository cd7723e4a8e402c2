"""The decisive-breach rule: exact bounds, one rule per metric, and simulated runs showing that a
canary exactly at its thresholds is called decisive in at most 1 - confidence of runs, a healthy one
never, and a broken one quickly."""

from __future__ import annotations

import functools
import itertools
import math
import re
import tracemalloc
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np
import pytest
from scipy.special import betaincinv
from scipy.stats import beta, binom, binomtest

from loadkit.models.specs import CompareSpec, Threshold, ThresholdRange, default_thresholds
from loadkit.scoring import (
    Breach,
    DecisiveTracker,
    LatencyBound,
    Tally,
    decisive_breaches,
    latency_bounds,
    look_confidences,
    proportion_bounds,
)


def th(name: str, lo: float | None = None, hi: float | None = None, **kw: object) -> Threshold:
    return Threshold(name=name, thresholdRange=ThresholdRange(min=lo, max=hi), **kw)  # type: ignore[arg-type]


OVER_500 = LatencyBound(500.0, above=True)


# --- proportion_bounds ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("k", "n", "confidence", "lower", "upper"),
    [
        pytest.param(0, 100, 0.95, 0.0, 1 - 0.05 ** (1 / 100), id="none-of-100"),
        pytest.param(100, 100, 0.95, 0.05 ** (1 / 100), 1.0, id="all-of-100"),
        pytest.param(0, 10, 0.99, 0.0, 1 - 0.01 ** (1 / 10), id="none-of-10"),
        pytest.param(1, 1, 0.9, 0.1, 1.0, id="one-of-one"),
        pytest.param(5, 100, 0.975, 0.01643, 0.11284, id="five-of-100"),  # the textbook exact 95 % interval of 5/100
        pytest.param(0, 0, 0.99, 0.0, 1.0, id="no-requests"),
    ],
)
def test_proportion_bounds_known_values(k: int, n: int, confidence: float, lower: float, upper: float) -> None:
    assert proportion_bounds(k, n, confidence) == pytest.approx((lower, upper), abs=1e-5)


@pytest.mark.parametrize("confidence", [0.9, 0.99, 0.999])
@pytest.mark.parametrize(("k", "n"), [(1, 10), (3, 100), (12, 1200), (60, 1200), (999, 1000), (5000, 10000)])
def test_proportion_bounds_match_scipy(k: int, n: int, confidence: float) -> None:
    # one-sided at c on each side is the two-sided exact interval at 1 - 2 * (1 - c)
    two_sided = binomtest(k, n).proportion_ci(confidence_level=2 * confidence - 1, method="exact")
    lower, upper = proportion_bounds(k, n, confidence)
    assert (lower, upper) == pytest.approx((two_sided.low, two_sided.high), rel=1e-9)
    assert lower == pytest.approx(beta.ppf(1 - confidence, k, n - k + 1), rel=1e-12)
    assert lower < k / n < upper


@pytest.mark.parametrize(("k", "n", "confidence"), [
    pytest.param(5, 4, 0.99, id="k-above-n"),
    pytest.param(-1, 4, 0.99, id="negative-k"),
    pytest.param(1, 4, 0.5, id="confidence-one-half"),
    pytest.param(1, 4, 1.0, id="confidence-one"),
])
def test_proportion_bounds_refuse_nonsense(k: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        proportion_bounds(k, n, confidence)


# --- the rules, one metric at a time -------------------------------------------------------------

def counts(n: int, server_failures: int = 0, errors: int = 0, timed: int | None = None,
           **beyond: int) -> Tally:
    """A tally of n requests; beyond as over_500=30, under_5=990."""
    bounds = {LatencyBound(float(key.split("_")[1]), key.startswith("over")): v for key, v in beyond.items()}
    return Tally(n, server_failures, errors, n if timed is None else timed, bounds)


@pytest.mark.parametrize(
    ("threshold", "tally", "reason"),
    [
        pytest.param(
            th("request-success-rate", lo=99),
            counts(1200, server_failures=40),
            "request-success-rate: at most 97.8% of 1200 requests succeeded (99% confidence), below the minimum 99%",
            id="success-below-min"
        ),
        pytest.param(th("request-success-rate", lo=99), counts(1200, server_failures=18), None,
                     id="success-failing-but-not-certain"),
        pytest.param(
            th("request-success-rate", hi=50),
            counts(1000, server_failures=100),
            "request-success-rate: at least 87.5% of 1000 requests succeeded (99% confidence), above the maximum 50%",
            id="success-above-max"
        ),
        pytest.param(th("request-success-rate", hi=50), counts(1000, server_failures=480), None,
                     id="success-max-not-certain"),
        pytest.param(th("request-success-rate", lo=99), counts(1200, errors=1200), None,
                     id="success-ignores-4xx-errors"),
        pytest.param(
            th("error-rate", hi=1),
            counts(1200, errors=60),
            "error-rate: at least 3.6% of 1200 requests failed (99% confidence), above the maximum 1%",
            id="errors-above-max"
        ),
        pytest.param(th("error-rate", hi=1), counts(1200, errors=18), None, id="errors-failing-but-not-certain"),
        pytest.param(th("error-rate", hi=1), counts(1200, server_failures=1200), None,
                     id="errors-do-not-read-server-failures"),
        pytest.param(
            th("error-rate", hi=1),
            counts(100, errors=500),
            "error-rate: at least 95.4% of 100 requests failed (99% confidence), above the maximum 1%",
            id="errors-clamped-to-requests"
        ),
        pytest.param(
            th("error-rate", lo=5),
            counts(1000, errors=10),
            "error-rate: at most 2.1% of 1000 requests failed (99% confidence), below the minimum 5%",
            id="errors-below-min"
        ),
        pytest.param(th("error-rate", lo=5), counts(1000, errors=45), None, id="errors-min-not-certain"),
        pytest.param(
            th("request-duration", hi=500),
            counts(1180, over_500=30),
            "request-duration: at least 1.5% of 1180 requests took over 500 ms (99% confidence), "
            "so p99 is above 500 ms",
            id="p99-above-max"
        ),
        pytest.param(th("request-duration", hi=500), counts(1180, over_500=15), None, id="p99-failing-but-not-certain"),
        pytest.param(th("latency-p99", hi=500), counts(1180, over_500=30), "so p99 is above 500 ms",
                     id="latency-p99-is-request-duration"),
        pytest.param(
            th("latency-p50", hi=100),
            counts(1000, over_100=700),
            "latency-p50: at least 66.5% of 1000 requests took over 100 ms (99% confidence), so p50 is above 100 ms",
            id="p50-above-max"
        ),
        pytest.param(th("latency-p50", hi=100), counts(1000, over_100=520), None, id="p50-not-certain"),
        pytest.param(
            th("latency-p95", lo=5),
            counts(1000, under_5=990),
            "latency-p95: at least 97.9% of 1000 requests took under 5 ms (99% confidence), so p95 is below 5 ms",
            id="p95-below-min"
        ),
        pytest.param(th("latency-p95", lo=5), counts(1000, under_5=955), None, id="p95-min-not-certain"),
        pytest.param(th("latency-p95", hi=500), counts(1000, over_500=1000, timed=99), None,
                     id="latency-counts-timed-requests-only"),
        pytest.param(
            th("latency-max", hi=2000),
            counts(200, over_2000=1),
            "latency-max: 1 of 200 requests took over 2000 ms, so the slowest is above the maximum 2000 ms",
            id="one-slow-request-breaks-latency-max"
        ),
        pytest.param(th("latency-max", hi=2000), counts(200), None, id="latency-max-none-slower"),
        pytest.param(th("latency-max", lo=1), counts(200, under_1=200), None, id="latency-max-minimum-never-decisive"),
        pytest.param(
            th("checkout-p99", hi=500, metric="latency-p99"),
            counts(1180, over_500=30),
            "checkout-p99: at least 1.5%",
            id="custom-name-of-a-built-in-metric"
        ),
    ],
)
def test_one_rule_per_metric(threshold: Threshold, tally: Tally, reason: str | None) -> None:
    found = decisive_breaches([threshold], tally, min_samples=100, confidence=0.99)
    if reason is None:
        assert found == []
        return
    [breach] = found
    assert reason in breach.reason and breach.reason.startswith(f"{threshold.name}: ")
    assert (breach.check, breach.span) == (threshold.name, "run")
    assert breach.samples == (tally.timed if "took" in breach.reason else tally.requests)


def test_shown_bounds_are_rounded_to_the_safe_side_and_never_read_as_the_threshold() -> None:
    # 125 of 10009: the lower bound is 1.00497 %, which "1%" or "1.01%" would misstate
    [breach] = decisive_breaches([th("error-rate", hi=1)], counts(10009, errors=125), 100, 0.99)
    assert "at least 1.004% of 10009 requests failed" in breach.reason
    assert 1.004 < breach.bound < 1.005


@pytest.mark.parametrize(
    ("threshold", "tally"),
    [
        pytest.param(th("request-success-rate", lo=99), counts(1200, server_failures=40), id="success-min"),
        pytest.param(th("request-success-rate", hi=50), counts(1000, server_failures=100), id="success-max"),
        pytest.param(th("error-rate", hi=1), counts(1200, errors=60), id="errors-max"),
        pytest.param(th("error-rate", lo=5), counts(1000, errors=10), id="errors-min"),
        pytest.param(th("request-duration", hi=500), counts(1180, over_500=30), id="p99-max"),
        pytest.param(th("latency-p95", lo=5), counts(1000, under_5=990), id="p95-min"),
    ],
)
def test_the_number_in_the_reason_is_the_bound_rounded_to_the_safe_side(threshold: Threshold, tally: Tally) -> None:
    [breach] = decisive_breaches([threshold], tally, 100, 0.99)
    match = re.search(r"at (least|most) ([0-9.]+)%", breach.reason)
    assert match is not None, breach.reason
    shown = float(match.group(2))
    assert shown <= breach.bound if match.group(1) == "least" else shown >= breach.bound
    assert abs(shown - breach.bound) < 0.1


@pytest.mark.parametrize(
    ("threshold", "min_samples", "n", "decisive"),
    [
        pytest.param(th("error-rate", hi=1), 100, 99, False, id="one-short"),
        pytest.param(th("error-rate", hi=1), 100, 100, True, id="exactly-min-samples"),
        pytest.param(th("error-rate", hi=1, min_samples=10), 100, 10, True, id="per-check-min-samples"),
        pytest.param(th("error-rate", hi=1, min_samples=10), 100, 9, False, id="per-check-one-short"),
        pytest.param(th("error-rate", hi=1, min_samples=500), 100, 499, False, id="per-check-above-the-default"),
        pytest.param(th("error-rate", hi=1), 0, 0, False, id="no-requests-with-min-samples-0"),
    ],
)
def test_min_samples_gates_every_rule(threshold: Threshold, min_samples: int, n: int, decisive: bool) -> None:
    # every request failed: certain as soon as enough of them are counted
    assert bool(decisive_breaches([threshold], counts(n, errors=n), min_samples, 0.99)) is decisive


ALL_BAD = Tally(10_000, 10_000, 10_000, 10_000, {OVER_500: 10_000, LatencyBound(500.0, False): 10_000})


@pytest.mark.parametrize(
    "threshold",
    [
        pytest.param(th("request-duration", hi=500, source="prometheus"), id="prometheus-latency"),
        pytest.param(th("request-success-rate", lo=99, source="prometheus"), id="prometheus-success-rate"),
        pytest.param(th("istio-5xx", hi=1, query="sum(rate(x[1m]))"), id="custom-query"),
        pytest.param(Threshold(name="performance-impact", compare=CompareSpec()), id="compare"),
        pytest.param(th("rps", lo=50_000), id="rps"),
        pytest.param(th("availability", lo=100), id="availability"),
        pytest.param(th("recovery-time", hi=0.001), id="recovery-time"),
    ],
)
def test_checks_loadkit_cannot_count_are_never_decisive(threshold: Threshold) -> None:
    assert decisive_breaches([threshold], ALL_BAD, 1, 0.99) == []
    assert latency_bounds([threshold]) == []


@pytest.mark.parametrize(
    ("thresholds", "bounds"),
    [
        pytest.param(default_thresholds(), [OVER_500], id="defaults"),
        pytest.param([th("latency-p50", lo=5, hi=100)], [LatencyBound(5.0, False), LatencyBound(100.0, True)],
                     id="min-and-max"),
        pytest.param([th("latency-p99", hi=500), th("request-duration", hi=500), th("latency-max", hi=500)], [OVER_500],
                     id="one-count-serves-three-checks"),
        pytest.param([th("latency-max", lo=1, hi=2000)], [LatencyBound(2000.0, True)], id="no-count-for-a-minimum-max"),
        pytest.param([th("error-rate", hi=1), th("rps", lo=1)], [], id="no-latency"),
    ],
)
def test_latency_bounds(thresholds: list[Threshold], bounds: list[LatencyBound]) -> None:
    assert latency_bounds(thresholds) == bounds


def test_tallies_add_up_by_key() -> None:
    fast = LatencyBound(5.0, False)
    total = Tally(10, 1, 2, 9, {OVER_500: 1}) + Tally(20, 2, 3, 20, {OVER_500: 2, fast: 7}) + Tally()
    assert total == Tally(30, 3, 5, 29, {OVER_500: 3, fast: 7})


# --- the tracker ---------------------------------------------------------------------------------

def per_second(n: int, errors: int = 0, slow: int = 0) -> Tally:
    return Tally(n, errors, errors, n, {OVER_500: slow})


def test_the_trailing_window_holds_exactly_the_last_window_s_seconds() -> None:
    tracker = DecisiveTracker(default_thresholds(), min_samples=100, window_s=60.0)
    assert tracker.bounds == [OVER_500]
    for second in range(1, 601):
        tracker.add(float(second), per_second(20))
    assert tracker.breaches() == []
    for second in range(601, 661):
        tracker.add(float(second), per_second(20, errors=2))  # 10 % for a minute, 0.9 % of the run
    found = tracker.breaches()
    assert {b.check for b in found} == {"request-success-rate", "error-rate"}
    assert {(b.span, b.samples) for b in found} == {("last 60s", 1200)}
    assert "of 1200 requests in the last 60s failed (99% confidence over the run), above" in found[1].reason
    assert tracker.total == Tally(13200, 120, 120, 13200, {OVER_500: 0})


def test_the_whole_run_speaks_first() -> None:
    tracker = DecisiveTracker(default_thresholds(), min_samples=100)
    for second in range(1, 121):
        tracker.add(float(second), per_second(20, errors=2, slow=1))
    found = tracker.breaches()
    assert [b.check for b in found] == ["request-success-rate", "request-duration", "error-rate"]
    assert {(b.span, b.samples) for b in found} == {("run", 2400)}
    assert all("(99% confidence over the run)" in b.reason and "\n" not in b.reason for b in found)


def test_before_a_window_has_passed_the_window_is_the_run() -> None:
    tracker = DecisiveTracker([th("error-rate", hi=1)], min_samples=100, window_s=60.0)
    for second in range(1, 11):
        tracker.add(float(second), per_second(20, errors=20))
    assert [(b.span, b.samples) for b in tracker.breaches()] == [("run", 200)]


def test_memory_does_not_grow_with_the_length_of_the_run() -> None:
    tracker = DecisiveTracker(default_thresholds(), min_samples=100)
    window = per_second(20, errors=0, slow=0)
    tracemalloc.start()
    try:
        for second in range(1, 601):
            tracker.add(float(second), window)
        after_ten_minutes = tracemalloc.get_traced_memory()[0]
        for second in range(601, 3601):
            tracker.add(float(second), window)
        after_an_hour = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after_an_hour - after_ten_minutes < 20_000  # keeping 50 more minutes of windows would be ~500 kB
    assert tracker.total.requests == 3600 * 20


@pytest.mark.parametrize(("confidence", "window_s", "planned_s"),
                         [
                             pytest.param(0.5, 60.0, 600.0, id="confidence-one-half"),
                             pytest.param(1.0, 60.0, 600.0, id="confidence-one"),
                             pytest.param(0.99, 0.0, 600.0, id="no-window"),
                             pytest.param(0.99, 60.0, 0.0, id="no-plan"),
                         ])
def test_the_tracker_refuses_nonsense(confidence: float, window_s: float, planned_s: float) -> None:
    with pytest.raises(ValueError):
        DecisiveTracker(default_thresholds(), 100, confidence, window_s, planned_s=planned_s)


# --- per-look confidences --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("confidence", "planned_s", "window_s", "run", "window"),
    [
        pytest.param(0.99, 600.0, 60.0, 0.9998878, 0.9999651, id="10-min"),
        pytest.param(0.99, 1800.0, 60.0, 0.9999062, 0.9999906, id="30-min"),
        pytest.param(0.99, 3600.0, 60.0, 0.9999151, 0.9999957, id="an-hour"),
        pytest.param(0.99, 600.0, 10.0, 0.9998878, 0.9999957, id="10s-window"),
        pytest.param(0.999, 600.0, 60.0, 0.9999917, 0.9999973, id="confidence-0.999"),
        pytest.param(0.99, 30.0, 60.0, 0.9997716, 0.995,
                     id="shorter-than-the-window"),  # no look at a trailing window within the plan
    ],
)
def test_look_confidences(confidence: float, planned_s: float, window_s: float, run: float, window: float) -> None:
    assert look_confidences(confidence, planned_s, window_s) == pytest.approx((run, window), abs=2e-7)


def test_a_run_past_its_plan_looks_ever_more_strictly() -> None:
    at = [look_confidences(0.99, 600.0, 60.0, elapsed) for elapsed in (0, 600, 601, 1200, 1201, 2401, 7200)]
    stretches = list(dict.fromkeys(at))  # the plan, its first doubling (601-1200 s), 1201 s, 2401 s, 7200 s
    assert len(stretches) == 5
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(stretches)), stretches
    tracker = DecisiveTracker(default_thresholds(), 100, planned_s=600.0)
    for second in range(1, 1202):
        tracker.add(float(second), per_second(20))
    assert (tracker.run_look_confidence, tracker.window_look_confidence) == at[4]


# --- Monte-Carlo: runs at 20 req/s, a look every second, the plan's defaults -----------------------
# The simulation is the tracker's rule, vectorised over runs with numpy: per look, the fewest counted
# requests that are decisive (critical counts, from the same betaincinv bound); the first two tests
# show it matches decisive_breaches and DecisiveTracker exactly.

RATE, MIN_SAMPLES, CONFIDENCE = 20, 100, 0.99
DEFAULTS = default_thresholds()  # success rate >= 99 %, request-duration (p99) <= 500 ms, error rate <= 1 %
LIMIT = 0.01  # for all three, the share (of 5xx, of slow requests, of errors) may be at most 1 %
SIGMA = 0.5
MU = math.log(250.0) - NormalDist().inv_cdf(0.99) * SIGMA  # healthy latency: lognormal with p99 = 250 ms
P_SLOW = 1.0 - NormalDist(MU, SIGMA).cdf(math.log(500.0))  # healthy share over 500 ms: about 1e-4


@functools.cache
def critical_counts(confidence: float, n_max: int) -> np.ndarray:
    """For each n <= n_max, the smallest count k of n that a look at `confidence` calls decisive
    against LIMIT (n + 1 when none is): k whose Clopper-Pearson lower bound is above LIMIT."""
    n = np.arange(n_max + 1)
    alpha = 1.0 - confidence  # as proportion_bounds computes it

    def decisive(k: np.ndarray) -> np.ndarray:
        inside = (k >= 1) & (k <= n)
        return inside & (betaincinv(np.where(inside, k, 1), np.where(inside, n - k + 1, 1), alpha) > LIMIT)

    # P(X >= k) < alpha for X ~ Binomial(n, LIMIT) exactly when the lower bound of k is above LIMIT;
    # binom.isf finds that k, betaincinv (what proportion_bounds calls) settles float ties
    k = np.minimum(binom.isf(alpha, n, LIMIT).astype(np.int64) + 1, n + 1)
    for _ in range(10):
        more, fewer = ~decisive(k) & (k <= n), decisive(k - 1)
        if not (more.any() or fewer.any()):
            k.flags.writeable = False  # shared by the cache
            return k
        k = k + more - fewer
    raise AssertionError("critical counts did not settle")


def simulate(rng: np.random.Generator, runs: int, seconds: int, share: float | np.ndarray,
             rate: int = RATE) -> tuple[np.ndarray, np.ndarray]:
    """Per-second requests (Poisson arrivals) and how many of them are counted (failed, or slow):
    arrays of shape (runs, seconds); `share` may vary by second or by run (it is broadcast)."""
    requests = rng.poisson(rate, (runs, seconds))
    return requests, rng.binomial(requests, np.broadcast_to(share, (runs, seconds)))


def first_alarms(requests: np.ndarray, counted: np.ndarray, planned_s: float, window_s: int = 60,
                 spans: tuple[str, ...] = ("run", "window")) -> np.ndarray:
    """The second of each run's first decisive look (inf: none), as DecisiveTracker.breaches() decides
    it for one threshold with LIMIT: the whole run, or once window_s seconds have passed the window."""
    seconds = requests.shape[1]
    n_run, k_run = requests.cumsum(axis=1, dtype=np.int32), counted.cumsum(axis=1, dtype=np.int32)
    n_win, k_win = n_run.copy(), k_run.copy()
    n_win[:, window_s:] -= n_run[:, :-window_s]
    k_win[:, window_s:] -= k_run[:, :-window_s]
    alarm = np.zeros(requests.shape, dtype=bool)
    start, end = 0, planned_s  # the plan, then each doubling of it, has its own per-look confidences
    while start < seconds:
        run_c, window_c = look_confidences(CONFIDENCE, planned_s, window_s, end)
        cols = slice(start, min(int(end), seconds))
        if "run" in spans:
            critical = critical_counts(run_c, int(n_run.max()))
            alarm[:, cols] |= _decisive(n_run[:, cols], k_run[:, cols], critical)
        if "window" in spans:
            trimmed = np.arange(seconds)[cols] >= window_s  # second (column + 1) > window_s
            critical = critical_counts(window_c, int(n_win.max()))
            alarm[:, cols] |= trimmed & _decisive(n_win[:, cols], k_win[:, cols], critical)
        start, end = int(end), 2 * end
    return np.where(alarm.any(axis=1), alarm.argmax(axis=1) + 1.0, math.inf)


def _decisive(n: np.ndarray, k: np.ndarray, critical: np.ndarray) -> np.ndarray:
    return (n >= MIN_SAMPLES) & (k >= critical[n])


def tracker_first_alarm(requests: Iterable[int], errors: Iterable[int], slow: Iterable[int], planned_s: float,
                        window_s: float = 60.0, thresholds: list[Threshold] = DEFAULTS) -> tuple[float, list[Breach]]:
    """The same through a DecisiveTracker, one Tally a second: every error is a 5xx (it counts for both
    request-success-rate and error-rate) and every request is timed."""
    t = DecisiveTracker(thresholds, MIN_SAMPLES, CONFIDENCE, window_s=window_s, planned_s=planned_s)
    for second, (n, e, s) in enumerate(zip(requests, errors, slow, strict=True), start=1):
        t.add(float(second), Tally(n, e, e, n, {OVER_500: s}))
        if found := t.breaches():
            return float(second), found
    return math.inf, []


def share_of(first: np.ndarray, within: float = math.inf) -> float:
    """The share of runs with an alarm, or with one within `within` seconds."""
    return float(np.mean(np.isfinite(first) & (first <= within)))


def describe(first: np.ndarray) -> str:
    caught = first[np.isfinite(first)]
    if caught.size == 0:
        return f"none of {first.size} runs"
    return (f"{caught.size} of {first.size} runs ({caught.size / first.size:.2%}); median {np.median(caught):g} s, "
            f"95th percentile {np.percentile(caught, 95):g} s")


@pytest.mark.parametrize("confidence", [0.99, 0.9999])
def test_critical_counts_are_the_rule(confidence: float) -> None:
    critical = critical_counts(confidence, 20_000)
    for n in [*range(100, 130), *range(1_000, 20_001, 999)]:
        k = int(critical[n])
        assert decisive_breaches([th("error-rate", hi=1)], counts(n, errors=k), MIN_SAMPLES, confidence), (n, k)
        assert not decisive_breaches([th("error-rate", hi=1)], counts(n, errors=k - 1), MIN_SAMPLES, confidence)


def test_the_simulation_is_the_tracker() -> None:
    rng = np.random.default_rng(1)
    # a plan of 60 s and its first doublings: errors from 1.2 % to 2.5 %, 1 % over 500 ms
    requests, errors = simulate(rng, 16, 300, np.linspace(0.012, 0.025, 16)[:, None])
    slow = rng.binomial(requests, LIMIT)
    by_errors, by_slow = first_alarms(requests, errors, 60.0), first_alarms(requests, slow, 60.0)
    expected = np.minimum(by_errors, by_slow)
    stretches = [int(((expected > a) & (expected <= b)).sum()) for a, b in [(0, 60), (60, 120), (120, 240)]]
    assert min(stretches) >= 2 and not np.isfinite(expected).all(), (stretches, describe(expected))
    for run in range(len(requests)):
        second, found = tracker_first_alarm(requests[run], errors[run], slow[run], 60.0)
        assert second == expected[run], (run, found)
        if found:
            assert {b.check for b in found} <= {"request-success-rate", "error-rate", "request-duration"}


@pytest.mark.parametrize(
    ("minutes", "runs", "rate"),
    [
        pytest.param(10, 1500, RATE, id="10-min"),
        pytest.param(30, 800, RATE, id="30-min"),
        pytest.param(5, 400, 100, id="5-min-at-100-rps"),
    ],
)
def test_at_the_threshold_false_alarms_stay_within_one_minus_confidence(minutes: int, runs: int, rate: int) -> None:
    # 1 % errors against a maximum of 1 %, and 1 % of requests over 500 ms (p99 exactly at 500 ms)
    rng = np.random.default_rng(minutes + rate)
    requests, errors = simulate(rng, runs, 60 * minutes, LIMIT, rate)
    slow = rng.binomial(requests, LIMIT)
    by_errors = first_alarms(requests, errors, 60.0 * minutes)
    by_latency = first_alarms(requests, slow, 60.0 * minutes)
    both = np.minimum(by_errors, by_latency)
    summary = (f"decisive at 1 % errors: {describe(by_errors)}; at p99 = 500 ms: {describe(by_latency)}; "
               f"at both at once: {share_of(both):.2%}")
    assert share_of(by_errors) <= 1 - CONFIDENCE and share_of(by_latency) <= 1 - CONFIDENCE, summary
    assert share_of(both) <= 2 * (1 - CONFIDENCE), summary  # the guarantee is per threshold


def test_a_run_past_its_plan_spends_at_most_twice_the_budget() -> None:
    rng = np.random.default_rng(5)
    requests, errors = simulate(rng, 800, 800, LIMIT)  # four times its plan of 200 s
    first = first_alarms(requests, errors, 200.0)
    summary = f"at 1 % errors, within the plan {share_of(first, 200):.2%}, in all {describe(first)}"
    assert share_of(first, 200) <= 1 - CONFIDENCE and share_of(first) <= 2 * (1 - CONFIDENCE), summary


@pytest.mark.parametrize(("minutes", "runs"), [(10, 1000), (30, 200)])
def test_a_healthy_canary_never_raises_a_false_alarm(minutes: int, runs: int) -> None:
    rng = np.random.default_rng(100 + minutes)
    requests, errors = simulate(rng, runs, 60 * minutes, 0.005)  # 0.5 % errors, p99 at 250 ms
    slow = rng.binomial(requests, P_SLOW)
    first = np.minimum(first_alarms(requests, errors, 60.0 * minutes), first_alarms(requests, slow, 60.0 * minutes))
    assert not np.isfinite(first).any(), f"false alarms: {describe(first)}"


@pytest.mark.parametrize("minutes", [10, 30, 60])
def test_a_broken_canary_is_decisive_within_30_seconds(minutes: int) -> None:
    rng = np.random.default_rng(200 + minutes)
    requests, errors = simulate(rng, 2000, 31, 0.05)
    first = first_alarms(requests, errors, 60.0 * minutes)
    assert share_of(first, 30) >= 0.99, f"5 % errors in a {minutes}-minute run: decisive in {describe(first)}"


def test_a_canary_that_breaks_at_minute_8_is_caught_within_a_minute_by_the_trailing_window() -> None:
    rng = np.random.default_rng(3)
    fault, seconds = 480, 541
    requests, errors = simulate(rng, 1000, seconds, np.where(np.arange(seconds) >= fault, 0.05, 0.005))
    caught = first_alarms(requests, errors, 600.0) - fault
    whole_run_alone = first_alarms(requests, errors, 600.0, spans=("run",)) - fault
    summary = f"caught {describe(caught)}; the whole-run tally alone: {describe(whole_run_alone)}"
    assert not (caught <= 0).any(), summary
    assert share_of(caught, 60) >= 0.95, summary
    assert share_of(whole_run_alone, 60) <= 0.05, summary


@pytest.mark.parametrize(("rate", "within"), [
    pytest.param(20, 60, id="20-rps"),
    pytest.param(50, 20, id="50-rps"),
])
def test_a_10s_window_catches_a_mid_run_fault(rate: int, within: int) -> None:
    # 200 requests a window at 20 req/s (2 errors expected at the threshold) are too few to be sure
    # of 5 % within 20 s and stay quiet at 1 % for 10 minutes (70 % are caught by then)
    rng = np.random.default_rng(rate)
    fault, seconds = 300, 300 + within + 1
    requests, errors = simulate(rng, 1000, seconds, np.where(np.arange(seconds) >= fault, 0.05, 0.005), rate)
    caught = first_alarms(requests, errors, 600.0, window_s=10) - fault
    summary = f"10 s window, {rate} req/s, 5 % errors from minute 5 of 10: caught {describe(caught)}"
    assert not (caught <= 0).any() and share_of(caught, within) >= 0.95, summary


def test_a_slow_canary_breaks_request_duration() -> None:
    rng = np.random.default_rng(4)
    # no errors, so that only latency can speak (error false alarms are the healthy test's business)
    requests, slow = simulate(rng, 200, 120, 0.03 + 0.97 * P_SLOW)
    runs = [tracker_first_alarm(requests[run], [0] * 120, slow[run], 600.0) for run in range(200)]
    first = np.array([second for second, _ in runs])
    assert {b.check for _, found in runs for b in found} == {"request-duration"}
    assert share_of(first, 90) >= 0.98, f"3 % slower than 500 ms: decisive in {describe(first)}"
