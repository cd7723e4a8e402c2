"""Fail fast (`--abort-on-fail`): a run stops only when its whole-run verdict is certain to fail with
the rest of the planned run perfect. Simulated runs through FailFast itself: a broken canary stops
within a fraction of its run; a warm-up burst, a cold start, periodic spikes and a run exactly at its
threshold never stop a run whose final verdict passes; every stopped run's final verdict fails."""

from __future__ import annotations

import numpy as np
import pytest

from loadkit.models.specs import Threshold, ThresholdRange, default_thresholds
from loadkit.scoring import DEFAULT_HOLD_S, FailFast, LatencyBound, Tally, abortable, can_abort

OVER_500 = LatencyBound(500.0, above=True)


def th(name: str, lo: float | None = None, hi: float | None = None, **kw: object) -> Threshold:
    return Threshold(name=name, thresholdRange=ThresholdRange(min=lo, max=hi), **kw)  # type: ignore[arg-type]


def first_stop(watch: FailFast, requests: np.ndarray, errors: np.ndarray, slow: np.ndarray,
               load: np.ndarray | None = None) -> float | None:
    """Feed one run, a window a second (every error a 5xx, every request timed): when it stopped."""
    for second, (n, e, s) in enumerate(zip(requests.tolist(), errors.tolist(), slow.tolist(), strict=True), 1):
        users = None if load is None else float(load[second - 1])
        if (stop := watch.add(float(second), Tally(n, e, e, n, {OVER_500: s}), load=users)) is not None:
            return stop.at_s
    return None


def final_fails(requests: np.ndarray, errors: np.ndarray, slow: np.ndarray) -> bool:
    """The whole run's verdict on the default thresholds (success >= 99 %, p99 <= 500 ms, errors <= 1 %)."""
    n = int(requests.sum())
    return bool(errors.sum() > 0.01 * n or slow.sum() > 0.01 * n)


def simulate(runs: int, seconds: int, rate: np.ndarray | float, error_share: np.ndarray | float,
             slow_share: np.ndarray | float, seed: int, min_samples: int = 100,
             thresholds: list[Threshold] | None = None) -> tuple[list[float], int]:
    """(stop times of the stopped runs, how many runs' final verdicts fail). Asserts the rule that
    matters most: no run is stopped whose final verdict passes."""
    rng = np.random.default_rng(seed)
    shape = (runs, seconds)
    requests = rng.poisson(np.broadcast_to(rate, shape))
    errors = rng.binomial(requests, np.broadcast_to(error_share, shape))
    slow = rng.binomial(requests, np.broadcast_to(slow_share, shape))
    found, failing = [], 0
    for r in range(runs):
        watch = FailFast(thresholds or default_thresholds(), min_samples, planned_s=seconds, every=True)
        at = first_stop(watch, requests[r], errors[r], slow[r])
        fails = final_fails(requests[r], errors[r], slow[r])
        failing += fails
        if at is not None:
            assert fails, f"run {r} stopped at {at}s but its final verdict passes"
            found.append(at)
    return found, failing


def test_a_broken_canary_stops_within_a_fraction_of_its_run() -> None:
    found, _ = simulate(200, 60, 100, 0.05, 0.0, seed=1)  # 5 % errors at 100 req/s in a 60 s run
    # certain once 5 % of t seconds exceed 1 % of the rest at 1.5 times the rate: about 18 s
    assert len(found) == 200 and max(found) <= 25, sorted(found)[-5:]
    found, _ = simulate(50, 600, 100, 0.05, 0.0, seed=5)  # a 10-minute run: in its first 40 %
    assert len(found) == 50 and max(found) <= 240


def test_a_healthy_canary_is_never_stopped() -> None:
    found, _ = simulate(300, 300, 100, 0.005, 0.0001, seed=2)
    assert found == []


def test_exactly_at_the_threshold_no_passing_run_is_stopped() -> None:
    found, failing = simulate(400, 60, 100, 0.01, 0.0, seed=3)
    assert failing > 50  # about half the runs end above 1 %: none of them is certain early
    assert len(found) <= failing


def test_a_warm_up_error_burst_the_run_dilutes_never_stops_it() -> None:
    # finding 1: 8 % of the first 200 requests fail, at 50 req/s for 60 s; the run ends at ~0.5 %
    seconds = 60
    errors = np.where(np.arange(seconds) < 4, 0.08, 0.0)
    found, failing = simulate(300, seconds, 50, errors, 0.0, seed=6, min_samples=20)
    assert failing == 0 and found == []
    # a burst the run cannot dilute (every request of the first 10 s fails: 16 % of the run) stops it
    errors = np.where(np.arange(seconds) < 10, 1.0, 0.0)
    found, failing = simulate(50, seconds, 50, errors, 0.0, seed=7, min_samples=20)
    assert failing == 50 and len(found) == 50 and max(found) <= 10


def test_a_cold_start_with_small_min_samples_never_stops_the_run() -> None:
    # finding 2: the first 6 requests take 700 ms, min_samples 5, 50 req/s for 30 s: p99 is 25 ms
    seconds = 30
    slow = np.where(np.arange(seconds) == 0, 6 / 50, 0.0)
    found, failing = simulate(300, seconds, 50, 0.0, slow, seed=8, min_samples=5)
    assert failing == 0 and found == []
    # a closed model's rate follows latency: 3 s at 700 ms (6 req/s, all slow), then 48 req/s fast for
    # 57 s. The run ends at 0.7 % slow: the slow seconds' rate must not stand for the rest.
    rate = np.where(np.arange(60) < 3, 6.25, 47.5)
    found, failing = simulate(300, 60, rate, 0.0, np.where(np.arange(60) < 3, 1.0, 0.0), seed=12, min_samples=5)
    assert failing < 30 and found == []  # (the few that end above 1 % by chance are not certain early either)


def test_periodic_spikes_that_the_whole_run_absorbs_never_stop_it() -> None:
    # finding 3: 200 req/s for 600 s, every 100 s a second where 90 % take over 500 ms: 0.9 % slow overall
    seconds = 600
    slow = np.where(np.arange(1, seconds + 1) % 100 == 0, 0.9, 0.0)
    found, failing = simulate(20, seconds, 200, 0.0, slow, seed=9)
    assert failing == 0 and found == []
    # ... and a late, lasting fault is stopped as soon as the whole run cannot pass any more
    slow = np.where(np.arange(seconds) >= 300, 0.2, 0.0)
    found, failing = simulate(20, seconds, 200, 0.0, slow, seed=10)
    assert failing == 20 and len(found) == 20 and all(300 < t < 360 for t in found), found


def test_a_ramp_counts_the_load_still_to_come() -> None:
    # 1 user a second up to 60, 2 req/s per user, for 120 s; 5 % errors in the first 20 s only: the
    # run ends at ~0.3 % errors. Without the plan's peak load the early rate would make it look certain.
    seconds, users = 120, np.minimum(np.arange(1, 121), 60)
    rng = np.random.default_rng(11)
    for _ in range(100):
        requests = rng.poisson(2 * users)
        errors = rng.binomial(requests, np.where(np.arange(seconds) < 20, 0.05, 0.0))
        watch = FailFast(default_thresholds(), 20, planned_s=seconds, every=True, peak_load=60)
        assert first_stop(watch, requests, errors, np.zeros(seconds, dtype=int), load=users) is None
        assert not final_fails(requests, errors, np.zeros(seconds, dtype=int))


def test_a_latency_maximum_is_certain_at_its_first_slow_request() -> None:
    watch = FailFast([th("latency-max", hi=500)], 10, planned_s=60, every=True)
    assert [watch.add(float(s), Tally(100, 0, 0, 100, {OVER_500: int(s == 12)})) is not None
            for s in range(1, 15)].index(True) == 11
    assert watch.stopped is not None and "slowest is above the maximum 500 ms" in watch.stopped.reason


def test_delay_abort_eval_holds_the_stop_back() -> None:
    thresholds = [th("error-rate", hi=1, abort_on_fail=True, delay_abort_eval="10s")]
    watch = FailFast(thresholds, 100, planned_s=60)
    at = [second for second in range(1, 30) if watch.add(float(second), Tally(200, 200, 200, 200)) is not None]
    assert at == [10]  # certain from second 1, held back until 10 s, and stopped once
    assert watch.stopped is not None and watch.stopped.check == "error-rate"
    assert "above the maximum 1%" in watch.stopped.reason and "still planned" in watch.stopped.reason
    default = FailFast([th("error-rate", hi=1)], 100, planned_s=60, every=True)
    at = [second for second in range(1, 30) if default.add(float(second), Tally(200, 200, 200, 200)) is not None]
    assert at == [DEFAULT_HOLD_S]


def test_each_threshold_is_held_back_on_its_own() -> None:
    # finding 5: a long delay on error-rate never blocks request-duration's stop
    thresholds = [th("error-rate", hi=1, abort_on_fail=True, delay_abort_eval="590s"),
                  th("request-duration", hi=500, abort_on_fail=True)]
    watch = FailFast(thresholds, 100, planned_s=60)
    stops = [watch.add(float(s), Tally(200, 20, 20, 200, {OVER_500: 100})) for s in range(1, 20)]
    found = next(s for s in stops if s is not None)
    assert found.check == "request-duration" and found.at_s == DEFAULT_HOLD_S


def test_requests_the_generator_refused_never_stop_the_run() -> None:
    # finding 6: a worker with no plan yet refuses its requests (status 0): not the target's failures
    watch = FailFast(default_thresholds(), 100, planned_s=60, every=True)
    assert watch.add(1.0, Tally(100, 100, 100, 0), refused=100) is None
    assert all(watch.add(float(s), Tally(100, 100, 100, 0)) is None for s in range(2, 30))


def test_without_the_flag_only_thresholds_that_ask_may_stop_the_run() -> None:
    thresholds = [th("request-success-rate", lo=99), th("request-duration", hi=500, abort_on_fail=True)]
    watch = FailFast(thresholds, 100, planned_s=60)
    assert [t.name for t in watch.thresholds] == ["request-duration"]
    for second in range(1, 20):  # every request fails (5xx), none is slow: only success rate breaches
        assert watch.add(float(second), Tally(200, 200, 200, 200, {OVER_500: 0})) is None
    assert not FailFast(default_thresholds(), 100, planned_s=60).enabled


@pytest.mark.parametrize(
    ("threshold", "can"),
    [
        pytest.param(th("request-success-rate", lo=99), True, id="success-rate"),
        pytest.param(th("error-rate", hi=1), True, id="error-rate"),
        pytest.param(th("latency-p95", hi=300), True, id="latency-max-bound"),
        pytest.param(th("latency-max", lo=1), False, id="minimum-on-latency-max"),
        pytest.param(th("rps", lo=10), False, id="rps"),
        pytest.param(th("request-success-rate", lo=99, source="prometheus"), False, id="prometheus"),
    ],
)
def test_which_thresholds_can_stop_a_run(threshold: Threshold, can: bool) -> None:
    assert can_abort(threshold) is can
    assert [t.name for t in abortable([threshold], every=True)] == ([threshold.name] if can else [])
