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
        pytest.param(th("request-success-rate", lo=99), 99.0, 1000, True, "meets", id="success-exactly-99"),
        pytest.param(th("request-success-rate", lo=99), 98.99, 1000, False, "below the minimum 99%",
                     id="success-just-below"),
        pytest.param(th("request-success-rate", lo=99), 100.0, 1000, True, "meets", id="success-100"),
        pytest.param(th("request-duration", hi=500), 500.0, 1000, True, "meets", id="p99-exactly-500"),
        pytest.param(th("request-duration", hi=500), 500.001, 1000, False, "above the maximum 500 ms",
                     id="p99-just-above"),
        pytest.param(th("request-duration", hi=500), 504.0, 1000, False, "above the maximum", id="p99-504-not-rounded"),
        pytest.param(th("error-rate", hi=1), 1.0, 1000, True, "meets", id="errors-exactly-1"),
        pytest.param(th("error-rate", hi=1), 1.01, 1000, False, "above", id="errors-above"),
        pytest.param(th("rps", lo=10, hi=20), 15.0, 1000, True, "meets 10 req/s .. 20 req/s", id="range-inside"),
        pytest.param(th("rps", lo=10, hi=20), 9.0, 1000, False, "below", id="range-below"),
        pytest.param(th("request-success-rate", lo=99), None, 0, False, "no data", id="no-data"),
        pytest.param(th("request-success-rate", lo=99), 100.0, 99, False, "insufficient data: 99 requests",
                     id="one-short-of-min-samples"),
        pytest.param(th("request-success-rate", lo=99), 100.0, 100, True, "meets", id="exactly-min-samples"),
        pytest.param(th("error-rate", hi=1, min_samples=10), 0.0, 10, True, "meets", id="per-check-min-samples"),
        pytest.param(th("error-rate", hi=1, min_samples=10), 0.0, 9, False, "need at least 10",
                     id="per-check-min-samples-short"),
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
        pytest.param(
            Stats(requests=1000, failures=0, success_rate_pct=100, error_rate_pct=0, p99_ms=120),
            Verdict.PASS,
            100.0,
            id="healthy"
        ),
        pytest.param(
            Stats(requests=1000, failures=30, success_rate_pct=97, error_rate_pct=3, p99_ms=120),
            Verdict.FAIL,
            33.3,
            id="3pct-errors"
        ),
        pytest.param(
            Stats(requests=1000, failures=0, success_rate_pct=100, error_rate_pct=0, p99_ms=600),
            Verdict.FAIL,
            66.7,
            id="slow"
        ),
        pytest.param(Stats(requests=0), Verdict.FAIL, 0.0, id="empty-run"),
        pytest.param(Stats(requests=50, success_rate_pct=100, error_rate_pct=0, p99_ms=10), Verdict.FAIL, 0.0,
                     id="too-few-requests"),
    ],
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
        pytest.param({"name": "request-duration", "thresholdRange": {}}, "set min, max or both", id="no-bounds"),
        pytest.param({"name": "request-duration", "thresholdRange": {"min": 5, "max": 1}}, "greater than max",
                     id="inverted"),
        pytest.param({"name": "latency", "thresholdRange": {"max": 1}}, "unknown metric 'latency'", id="unknown-name"),
        pytest.param(
            {"name": "p95", "metric": "latency-p95", "thresholdRange": {"max": 1}, "weight": 0},
            "greater than 0",
            id="zero-weight"
        ),
    ],
)
def test_threshold_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Threshold.model_validate(data)


def test_custom_name_with_metric() -> None:
    t = Threshold.model_validate({"name": "p95-fast", "metric": "latency-p95", "thresholdRange": {"max": 100}})
    assert t.resolved_metric is Metric.LATENCY_P95
