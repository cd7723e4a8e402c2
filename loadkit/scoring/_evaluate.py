"""Thresholds + observations -> checks -> score -> verdict. Pure: no I/O, no clock.

Rules, in order, for each threshold:
1. no observation or no value            -> fail, "no data"
2. fewer samples than min_samples        -> fail, "insufficient data" (never a pass)
3. observed < min or observed > max      -> fail (both bounds are inclusive, as in Flagger)
4. otherwise                             -> pass
score = 100 * (weight of passed checks) / (weight of all checks); verdict = pass only if every
check passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadkit.models import DEFAULT_MIN_SAMPLES, Check, Metric, Threshold, Verdict
from loadkit.scoring._observe import UNITS, Observation


@dataclass(frozen=True)
class Scorecard:
    checks: list[Check]
    score: float
    verdict: Verdict


def fmt(value: float) -> str:
    """Numbers as people read them: 99.0 -> '99', 97.014 -> '97.01'."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def evaluate_threshold(threshold: Threshold, observation: Observation | None, min_samples: int) -> Check:
    metric = threshold.resolved_metric
    bounds = threshold.thresholdRange
    unit = observation.unit if observation and observation.unit else UNITS.get(metric, "")
    needed = threshold.min_samples or min_samples
    samples = observation.samples if observation else 0
    observed = observation.value if observation else None

    def check(passed: bool, reason: str) -> Check:
        return Check(
            name=threshold.name, metric=metric.value, observed=observed, min=bounds.min, max=bounds.max,
            passed=passed, reason=reason, unit=unit, weight=threshold.weight, samples=samples,
        )

    if observation is None or observed is None:
        return check(False, "no data: nothing was measured for this metric")
    if samples < needed:
        return check(False, f"insufficient data: {samples} requests, need at least {needed} (min_samples)")
    if bounds.min is not None and observed < bounds.min:
        shown = _distinct(observed, bounds.min) + _sep(unit)
        return check(False, f"{shown} is below the minimum {with_unit(bounds.min, unit)}")
    if bounds.max is not None and observed > bounds.max:
        shown = _distinct(observed, bounds.max) + _sep(unit)
        return check(False, f"{shown} is above the maximum {with_unit(bounds.max, unit)}")
    return check(True, f"{with_unit(observed, unit)} meets {range_text(bounds.min, bounds.max, unit)}")


def evaluate(
    thresholds: Sequence[Threshold],
    observations: Mapping[Metric, Observation],
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Scorecard:
    """Judge every threshold and combine the checks into a score and a verdict."""
    checks = [evaluate_threshold(t, observations.get(t.resolved_metric), min_samples) for t in thresholds]
    total = sum(c.weight for c in checks)
    passed = sum(c.weight for c in checks if c.passed)
    score = round(100.0 * passed / total, 1) if total else 0.0
    verdict = Verdict.PASS if checks and all(c.passed for c in checks) else Verdict.FAIL
    return Scorecard(checks=checks, score=score, verdict=verdict)


def _distinct(value: float, bound: float) -> str:
    """Enough digits that a failing value never reads the same as its bound (500.001 vs 500)."""
    text = fmt(value)
    return text if text != fmt(bound) else f"{value:.9f}".rstrip("0").rstrip(".")


def _sep(unit: str) -> str:
    return "%" if unit == "%" else (f" {unit}" if unit else "")


def with_unit(value: float | None, unit: str) -> str:
    """99.5, '%' -> '99.5%'; 412.3, 'ms' -> '412.3 ms'; None -> '-'."""
    return "-" if value is None else f"{fmt(value)}{_sep(unit)}"


def range_text(lo: float | None, hi: float | None, unit: str) -> str:
    """A threshold as people write it: '>= 99%', '<= 500 ms', '10 .. 20 req/s'."""
    if lo is not None and hi is not None:
        return f"{with_unit(lo, unit)} .. {with_unit(hi, unit)}"
    if lo is not None:
        return f">= {with_unit(lo, unit)}"
    return f"<= {with_unit(hi, unit)}"
