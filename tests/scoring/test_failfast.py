"""Fail fast (`--abort-on-fail`): the decisive-breach rule asked once a second, over the thresholds
that may stop the run, after their delay. Simulated runs through FailFast itself show it stops a
broken canary in seconds, a healthy one never, and one exactly at its threshold within 1 - confidence."""

from __future__ import annotations

import numpy as np
import pytest

from loadkit.models.specs import Threshold, ThresholdRange, default_thresholds
from loadkit.scoring import DecisiveTracker, FailFast, LatencyBound, Tally, abortable, can_abort

OVER_500 = LatencyBound(500.0, above=True)


def th(name: str, lo: float | None = None, hi: float | None = None, **kw: object) -> Threshold:
    return Threshold(name=name, thresholdRange=ThresholdRange(min=lo, max=hi), **kw)  # type: ignore[arg-type]


def first_stop(watch: FailFast, requests: np.ndarray, errors: np.ndarray, slow: np.ndarray) -> float | None:
    """Feed one run, a window a second (every error a 5xx, every request timed): when it stopped."""
    for second, (n, e, s) in enumerate(zip(requests.tolist(), errors.tolist(), slow.tolist(), strict=True), 1):
        if (stop := watch.add(float(second), Tally(n, e, e, n, {OVER_500: s}))) is not None:
            return stop.at_s
    return None


def stops(runs: int, seconds: int, rate: int, error_share: float, slow_share: float, seed: int,
          thresholds: list[Threshold] | None = None) -> list[float]:
    rng = np.random.default_rng(seed)
    requests = rng.poisson(rate, (runs, seconds))
    errors, slow = rng.binomial(requests, error_share), rng.binomial(requests, slow_share)
    found = []
    for r in range(runs):
        watch = FailFast(thresholds or default_thresholds(), 100, planned_s=seconds, every=True)
        at = first_stop(watch, requests[r], errors[r], slow[r])
        if at is not None:
            found.append(at)
    return found


def test_a_broken_canary_stops_within_seconds() -> None:
    found = stops(200, 60, 100, 0.05, 0.0, seed=1)  # 5 % errors at 100 req/s in a 60 s run
    assert len(found) == 200 and max(found) <= 10, found


def test_a_healthy_canary_is_never_stopped() -> None:
    # 0.5 % errors, 0.01 % over 500 ms, at 100 req/s: 400 five-minute runs, 120 000 looks
    assert stops(400, 300, 100, 0.005, 0.0001, seed=2) == []


def test_exactly_at_the_threshold_it_stops_at_most_one_minus_confidence_of_runs() -> None:
    # errors only (one threshold, error-rate <= 1 %, with request-success-rate >= 99 % counting the same 5xx)
    runs = 800
    found = stops(runs, 60, 100, 0.01, 0.0, seed=3)
    assert len(found) / runs <= 0.01, f"{len(found)} of {runs} runs stopped: {sorted(found)}"


def test_it_is_the_webhook_rule() -> None:
    """Tally for tally, FailFast stops exactly where DecisiveTracker (the rollback's rule) first breaches."""
    rng = np.random.default_rng(4)
    shares = np.where(np.arange(120) >= 40, 0.03, 0.002)
    requests = rng.poisson(50, 120)
    errors = rng.binomial(requests, shares)
    tracker = DecisiveTracker(default_thresholds(), 100, planned_s=120)
    watch = FailFast(default_thresholds(), 100, planned_s=120, every=True)
    expected = None
    for second, (n, e) in enumerate(zip(requests.tolist(), errors.tolist(), strict=True), 1):
        tracker.add(float(second), Tally(n, e, e, n, {OVER_500: 0}))
        if expected is None and tracker.breaches():
            expected = float(second)
    assert expected is not None
    assert first_stop(watch, requests, errors, np.zeros(120, dtype=int)) == expected


def test_delay_abort_eval_holds_the_stop_back() -> None:
    thresholds = [th("error-rate", hi=1, abort_on_fail=True, delay_abort_eval="10s")]
    watch = FailFast(thresholds, 100, planned_s=60)
    at = [second for second in range(1, 30) if watch.add(float(second), Tally(200, 20, 20, 200)) is not None]
    assert at == [10]  # certain from second 1, held back until 10 s, and stopped once
    assert watch.stopped is not None and watch.stopped.check == "error-rate"
    assert "above the maximum 1%" in watch.stopped.reason


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


def test_abort_on_fail_where_it_can_never_fire_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold 'rps': abort_on_fail needs"):
        abortable([th("rps", lo=10, abort_on_fail=True)], every=False)
    with pytest.raises(ValueError, match="abort_on_fail and delay_abort_eval need a client-side check"):
        th("request-success-rate", lo=99, source="prometheus", abort_on_fail=True)
