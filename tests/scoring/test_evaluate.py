"""Table-driven tests of the pure scoring rules: bounds, boundaries, no data, min_samples, score."""

from __future__ import annotations

import pytest

from loadkit.models.results import Verdict
from loadkit.models.specs import Metric, Threshold, ThresholdRange, default_thresholds
from loadkit.models.wire import Stats
from loadkit.scoring import Observation, evaluate, evaluate_threshold, observations_from_stats


def th(name: str, lo: float | None = None, hi: float | None = None, **kw: object) -> Threshold:
    return Threshold(name=name, thresholdRange=ThresholdRange(min=lo, max=hi), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("threshold", "value", "samples", "passed", "reason_part"),
    [
        (th("request-success-rate", lo=99), 99.0, 1000, True, "meets"),
        (th("request-success-rate", lo=99), 98.99, 1000, False, "below the minimum 99%"),
        (th("request-success-rate", lo=99), 100.0, 1000, True, "meets"),
        (th("request-duration", hi=500), 500.0, 1000, True, "meets"),
        (th("request-duration", hi=500), 500.001, 1000, False, "above the maximum 500 ms"),
        (th("request-duration", hi=500), 504.0, 1000, False, "above the maximum"),
        (th("error-rate", hi=1), 1.0, 1000, True, "meets"),
        (th("error-rate", hi=1), 1.01, 1000, False, "above"),
        (th("rps", lo=10, hi=20), 15.0, 1000, True, "meets 10 req/s .. 20 req/s"),
        (th("rps", lo=10, hi=20), 9.0, 1000, False, "below"),
        (th("request-success-rate", lo=99), None, 0, False, "no data"),
        (th("request-success-rate", lo=99), 100.0, 99, False, "insufficient data: 99 requests"),
        (th("request-success-rate", lo=99), 100.0, 100, True, "meets"),
        (th("error-rate", hi=1, min_samples=10), 0.0, 10, True, "meets"),
        (th("error-rate", hi=1, min_samples=10), 0.0, 9, False, "need at least 10"),
    ],
    ids=[
        "success-exactly-99", "success-just-below", "success-100", "p99-exactly-500", "p99-just-above",
        "p99-504-not-rounded", "errors-exactly-1", "errors-above", "range-inside", "range-below",
        "no-data", "one-short-of-min-samples", "exactly-min-samples", "per-check-min-samples",
        "per-check-min-samples-short",
    ],
)
def test_threshold_rules(threshold: Threshold, value: float | None, samples: int, passed: bool,
                         reason_part: str) -> None:
    check = evaluate_threshold(threshold, Observation(value, samples), min_samples=100)
    assert check.passed is passed
    assert reason_part in check.reason


def test_missing_observation_is_no_data() -> None:
    card = evaluate([th("request-duration", hi=500)], {}, 100)
    assert card.verdict is Verdict.FAIL
    assert card.checks[0].reason.startswith("no data")


@pytest.mark.parametrize(
    ("stats", "verdict", "score"),
    [
        (Stats(requests=1000, failures=0, success_rate_pct=100, error_rate_pct=0, p99_ms=120), Verdict.PASS, 100.0),
        (Stats(requests=1000, failures=30, success_rate_pct=97, error_rate_pct=3, p99_ms=120), Verdict.FAIL, 33.3),
        (Stats(requests=1000, failures=0, success_rate_pct=100, error_rate_pct=0, p99_ms=600), Verdict.FAIL, 66.7),
        (Stats(requests=0), Verdict.FAIL, 0.0),
        (Stats(requests=50, success_rate_pct=100, error_rate_pct=0, p99_ms=10), Verdict.FAIL, 0.0),
    ],
    ids=["healthy", "3pct-errors", "slow", "empty-run", "too-few-requests"],
)
def test_default_thresholds(stats: Stats, verdict: Verdict, score: float) -> None:
    card = evaluate(default_thresholds(), observations_from_stats(stats), 100)
    assert (card.verdict, card.score) == (verdict, score)


def test_empty_run_never_passes() -> None:
    card = evaluate(default_thresholds(), observations_from_stats(Stats()), 100)
    assert all(not c.passed for c in card.checks)
    assert {c.reason.split(":")[0] for c in card.checks} == {"no data"}


def test_weights_shape_the_score() -> None:
    stats = Stats(requests=1000, success_rate_pct=100, error_rate_pct=0, p99_ms=900)
    thresholds = [th("request-success-rate", lo=99, weight=3), th("request-duration", hi=500, weight=1)]
    card = evaluate(thresholds, observations_from_stats(stats), 100)
    assert card.score == 75.0
    assert card.verdict is Verdict.FAIL


def test_request_duration_is_p99() -> None:
    obs = observations_from_stats(Stats(requests=200, p50_ms=1, p95_ms=2, p99_ms=3, max_ms=4))
    assert obs[Metric.REQUEST_DURATION].value == 3
    assert obs[Metric.REQUEST_DURATION].unit == "ms"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "request-duration", "thresholdRange": {}}, "set min, max or both"),
        ({"name": "request-duration", "thresholdRange": {"min": 5, "max": 1}}, "greater than max"),
        ({"name": "latency", "thresholdRange": {"max": 1}}, "unknown metric 'latency'"),
        ({"name": "p95", "metric": "latency-p95", "thresholdRange": {"max": 1}, "weight": 0}, "greater than 0"),
    ],
    ids=["no-bounds", "inverted", "unknown-name", "zero-weight"],
)
def test_threshold_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Threshold.model_validate(data)


def test_custom_name_with_metric() -> None:
    t = Threshold.model_validate({"name": "p95-fast", "metric": "latency-p95", "thresholdRange": {"max": 100}})
    assert t.resolved_metric is Metric.LATENCY_P95
