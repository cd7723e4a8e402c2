"""The canary-vs-baseline judge (pure): classifications, critical metrics, score cut-offs, reasons."""

from __future__ import annotations

import numpy as np
import pytest

from loadkit.models.specs import CompareSpec, Source, Threshold
from loadkit.scoring import Observation, Side, evaluate, judge, proportion_test
from loadkit.scoring._compare import fisher_p_value, z_test_p_value

RNG = np.random.default_rng(7)


def latencies(median_ms: float, n: int = 500) -> np.ndarray:
    return median_ms + RNG.exponential(2.0, n)


def run(baseline: Side, canary: Side, **settings: object):  # type: ignore[no-untyped-def]
    return judge(baseline, canary, CompareSpec.model_validate(settings), baseline_name="primary",
                 canary_name="canary")


def test_identical_distributions_pass() -> None:
    result = run(Side(latencies(50), 500, 2), Side(latencies(50), 500, 3))
    assert (result.verdict, result.score) == ("pass", 100.0)
    assert [m.classification for m in result.metrics] == ["pass", "pass"]


def test_twenty_percent_slower_is_high_and_explained() -> None:
    result = run(Side(latencies(50), 500, 0), Side(latencies(60), 500, 0))
    latency = result.metrics[0]
    assert latency.classification == "high" and not latency.passed
    assert latency.effect_pct == pytest.approx(19.5, abs=2)
    assert "Mann-Whitney" in latency.reason and "more than the allowed 5%" in latency.reason
    # latency is not critical by default: one of two metrics passing is a score of 50 -> fail
    assert (result.verdict, result.score) == ("fail", 50.0)


def test_a_significant_but_small_slowdown_passes() -> None:
    result = run(Side(latencies(50, 5000), 5000, 0), Side(latencies(51, 5000), 5000, 0))
    latency = result.metrics[0]
    assert latency.p_value is not None and latency.p_value < 0.02  # significant...
    assert latency.classification == "pass" and "within the allowed 5%" in latency.reason  # ...but within 5 %


def test_faster_canary_is_low_and_passes() -> None:
    result = run(Side(latencies(60), 500, 0), Side(latencies(50), 500, 0))
    assert result.metrics[0].classification == "low" and result.verdict == "pass"


def test_two_points_more_errors_fail_the_critical_error_rate() -> None:
    result = run(Side(latencies(50, 1000), 1000, 0), Side(latencies(50, 1000), 1000, 20))
    errors = result.metrics[1]
    assert errors.classification == "high" and errors.critical
    assert errors.canary == pytest.approx(2.0) and errors.effect_pct == pytest.approx(2.0)
    assert result.verdict == "fail" and "critical metric error-rate failed" in result.reason


def test_more_errors_within_the_allowance_pass() -> None:
    # +0.5 points, significant with this many requests, but within max_error_increase_pct (1)
    result = run(Side(latencies(50), 20000, 0), Side(latencies(50), 20000, 100))
    assert result.metrics[1].p_value is not None and result.metrics[1].p_value < 0.02
    assert result.metrics[1].classification == "pass"


def test_too_few_samples_is_nodata_and_fails() -> None:
    result = run(Side(latencies(50, 30), 30, 0), Side(latencies(50, 30), 30, 0))
    assert [m.classification for m in result.metrics] == ["nodata", "nodata"]
    assert result.verdict == "fail" and "need 50 each" in result.metrics[0].reason


def test_constant_samples_on_both_sides_pass() -> None:
    result = run(Side([5.0] * 100, 100, 0), Side([5.0] * 100, 100, 0))
    assert result.metrics[0].classification == "pass" and result.verdict == "pass"


def test_marginal_between_the_cut_offs() -> None:
    result = run(Side(latencies(50), 500, 0), Side(latencies(60), 500, 0), pass_score=90, marginal_score=50)
    assert (result.verdict, result.score) == ("marginal", 50.0)


def test_latency_can_be_made_critical() -> None:
    result = run(Side(latencies(50), 500, 0), Side(latencies(60), 500, 0), critical=["latency", "error-rate"],
                 marginal_score=0, pass_score=0)
    assert result.verdict == "fail" and "critical metric latency failed" in result.reason


def test_proportion_test_is_one_sided() -> None:
    assert proportion_test(0, 1000, 20, 1000).p_value < 1e-4
    assert proportion_test(20, 1000, 0, 1000).p_value > 0.99
    assert proportion_test(0, 1000, 0, 1000).p_value == 1.0


def test_few_errors_are_judged_by_fisher_where_the_z_test_is_too_sure() -> None:
    # 0 vs 5 errors in 50 + 50 requests: expected errors per side 2.5 (< 5), so the normal approximation
    # does not hold; z says p=0.011 (significant at 0.98), Fisher's exact test 0.028 (not).
    assert z_test_p_value(0, 50, 5, 50) == pytest.approx(0.011, abs=5e-4)
    assert fisher_p_value(0, 50, 5, 50) == pytest.approx(0.028, abs=5e-4)
    assert proportion_test(0, 50, 5, 50) == (pytest.approx(0.028, abs=5e-4), "Fisher exact")
    errors = run(Side(latencies(50, 50), 50, 0), Side(latencies(50, 50), 50, 5)).metrics[1]
    assert errors.classification == "pass" and errors.p_value == pytest.approx(0.028, abs=5e-4)
    assert "Fisher exact p=0.028" in errors.reason and "not significantly more errors" in errors.reason


@pytest.mark.parametrize(
    ("counts", "test"),
    [
        pytest.param((0, 50, 5, 50), "Fisher exact", id="2.5-expected-errors-a-side"),
        pytest.param((5, 100, 5, 100), "z-test", id="5-expected-errors-a-side"),
        pytest.param((4, 100, 5, 100), "Fisher exact", id="4.5-expected-errors-a-side"),
        pytest.param((0, 1000, 20, 1000), "z-test", id="10-expected-errors-a-side"),
        pytest.param((98, 100, 100, 100), "Fisher exact", id="1-expected-success-a-side"),
        pytest.param((0, 50, 0, 50), "Fisher exact", id="no-errors"),
    ],
)
def test_fisher_decides_whenever_an_expected_cell_is_below_five(counts: tuple[int, int, int, int],
                                                                 test: str) -> None:
    assert proportion_test(*counts).test == test


def test_the_error_reason_names_the_z_test_with_enough_errors() -> None:
    errors = run(Side(latencies(50, 1000), 1000, 0), Side(latencies(50, 1000), 1000, 20)).metrics[1]
    assert errors.classification == "high" and "z-test p=" in errors.reason


def test_a_compare_check_passes_only_on_a_pass_verdict() -> None:
    check = Threshold(name="performance-impact", compare=CompareSpec())
    slower = run(Side(latencies(50), 500, 0), Side(latencies(60), 500, 0))
    same = run(Side(latencies(50), 500, 0), Side(latencies(50), 500, 0))
    for comparison, passed in ((slower, False), (same, True)):
        card = evaluate([check], {}, 100, {check.name: Observation(comparison.score, None, comparison=comparison)})
        assert card.checks[0].passed is passed and card.checks[0].comparison == comparison
        assert card.checks[0].metric == "compare" and card.checks[0].source is Source.CLIENT
    missing = evaluate([check], {}, 100, {})
    assert not missing.checks[0].passed and missing.checks[0].reason.startswith("no data")


def test_too_few_samples_to_ever_be_significant_is_nodata() -> None:
    # 4 against 4: even a 10x slower canary cannot reach p < 0.02 with Mann-Whitney (best p = 2/70)
    result = run(Side([10.0, 11, 12, 13], 100, 0), Side([100.0, 110, 120, 130], 100, 0), min_samples=4)
    latency = result.metrics[0]
    assert latency.classification == "nodata" and not latency.passed
    assert "smallest possible p is 0.029" in latency.reason and result.verdict == "fail"
    five = run(Side([10.0, 11, 12, 13, 14], 100, 0), Side([100.0, 110, 120, 130, 140], 100, 0), min_samples=5)
    assert five.metrics[0].classification == "high"  # best p = 2/252: separation is significant


def test_prometheus_error_rate_needs_requests_not_points() -> None:
    spec = {"source": "prometheus", "min_samples": 5}
    few = run(Side(latencies(50, 10), 30, 0), Side(latencies(60, 10), 30, 3), **spec)
    assert few.metrics[1].classification == "nodata" and "need 50 each" in few.metrics[1].reason
    enough = run(Side(latencies(50, 10), 3000, 0), Side(latencies(50, 10), 3000, 90), **spec)
    assert enough.metrics[1].classification == "high"
    points = run(Side(latencies(50, 4), 3000, 0), Side(latencies(50, 4), 3000, 0), source="prometheus")
    assert "use a window of at least 20 scrape intervals" in points.metrics[0].reason


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_value_is_no_data_never_a_pass(value: float) -> None:
    check = Threshold(name="conversion-rate", query="sum(x)", thresholdRange={"min": 2.5})  # type: ignore[arg-type]
    card = evaluate([check], {}, 100, {check.name: Observation(value, None, "", Source.PROMETHEUS)})
    assert not card.checks[0].passed and card.checks[0].reason.startswith("no data")
    assert card.checks[0].observed is None and card.verdict == "fail"


@pytest.mark.parametrize("bounds", [{"min": float("nan")}, {"max": float("inf")}])
def test_non_finite_bounds_are_refused(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="finite number"):
        Threshold(name="error-rate", thresholdRange=bounds)  # type: ignore[arg-type]


def monte_carlo(canary_ms: float, canary_error_p: float, trials: int = 300) -> float:
    """Share of `trials` comparisons that are not a pass: a baseline of 150 requests at 50 ms (plus an
    exponential tail) with 1 % errors against a canary of the same size."""
    rng = np.random.default_rng(11)
    spec = CompareSpec()

    def side(median_ms: float, error_p: float) -> Side:
        return Side(median_ms + rng.exponential(5.0, 150), 150, int(rng.binomial(150, error_p)))

    verdicts = [judge(side(50, 0.01), side(canary_ms, canary_error_p), spec, baseline_name="primary",
                      canary_name="canary").verdict for _ in range(trials)]
    return sum(v != "pass" for v in verdicts) / trials


def test_identical_sides_raise_false_alarms_in_under_two_percent_of_runs() -> None:
    assert monte_carlo(50, 0.01) <= 0.02


def test_a_twenty_percent_slower_canary_is_caught_in_95_percent_of_runs() -> None:
    assert monte_carlo(60, 0.01) >= 0.95
