"""Thresholds + observations -> checks -> score -> verdict. Pure: no I/O, no clock.

Rules, in order, for each threshold:
1. no observation or no value            -> fail, "no data" (as Flagger: no data is never a pass)
2. fewer samples than min_samples        -> fail, "insufficient data" (client-side counts only)
3. a comparison                          -> passes only when its verdict is pass
4. observed < min or observed > max      -> fail (both bounds are inclusive, as in Flagger)
5. otherwise                             -> pass
score = 100 * (weight of passed checks) / (weight of all checks); verdict = pass only if every
check passed.

Client-side range checks read `observations` (by metric, from loadkit's stats); every other
check (Prometheus, compare) reads `external`, keyed by the threshold's name.
"""

from __future__ import annotations

import math
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


def metric_label(threshold: Threshold) -> str:
    """What a check measured: the built-in metric, 'compare', or the custom metric's own name."""
    if threshold.compare is not None:
        return "compare"
    return threshold.metric.value if threshold.metric is not None else threshold.name


def evaluate_threshold(threshold: Threshold, observation: Observation | None, min_samples: int) -> Check:
    spec = threshold.compare
    lo, hi = (spec.pass_score, None) if spec is not None else (
        threshold.thresholdRange.min if threshold.thresholdRange else None,
        threshold.thresholdRange.max if threshold.thresholdRange else None)
    default_unit = UNITS.get(threshold.metric, "") if threshold.metric is not None else ""
    unit = observation.unit if observation and observation.unit else default_unit
    needed = threshold.min_samples or min_samples
    samples = observation.samples if observation else 0
    comparison = observation.comparison if observation else None
    observed = comparison.score if comparison else (observation.value if observation else None)

    def check(passed: bool, reason: str) -> Check:
        return Check(
            name=threshold.name, metric=metric_label(threshold), observed=observed, min=lo, max=hi,
            passed=passed, reason=reason, unit=unit, weight=threshold.weight, samples=samples or 0,
            source=threshold.resolved_source, query=observation.query if observation else None,
            comparison=comparison,
        )

    if observation is None or observed is None or not math.isfinite(observed):
        why = observation.reason if observation and observation.reason else "nothing was measured for this metric"
        if observed is not None and not math.isfinite(observed):
            why, observed = f"the value is {observed}, not a number to compare", None
        return check(False, why if why.startswith("no data") else f"no data: {why}")
    if samples is not None and samples < needed and comparison is None:
        return check(False, f"insufficient data: {samples} requests, need at least {needed} (min_samples)")
    if comparison is not None:
        return check(comparison.verdict == "pass", f"{comparison.verdict}: {comparison.reason}")
    if lo is not None and observed < lo:
        shown = _distinct(observed, lo) + _sep(unit)
        return check(False, f"{shown} is below the minimum {with_unit(lo, unit)}")
    if hi is not None and observed > hi:
        shown = _distinct(observed, hi) + _sep(unit)
        return check(False, f"{shown} is above the maximum {with_unit(hi, unit)}")
    return check(True, f"{with_unit(observed, unit)} meets {range_text(lo, hi, unit)}")


def evaluate(
    thresholds: Sequence[Threshold],
    observations: Mapping[Metric, Observation],
    min_samples: int = DEFAULT_MIN_SAMPLES,
    external: Mapping[str, Observation] | None = None,
) -> Scorecard:
    """Judge every threshold and combine the checks into a score and a verdict."""
    checks = [evaluate_threshold(t, _observation(t, observations, external or {}), min_samples) for t in thresholds]
    total = sum(c.weight for c in checks)
    passed = sum(c.weight for c in checks if c.passed)
    score = round(100.0 * passed / total, 1) if total else 0.0
    verdict = Verdict.PASS if checks and all(c.passed for c in checks) else Verdict.FAIL
    return Scorecard(checks=checks, score=score, verdict=verdict)


def _observation(threshold: Threshold, observations: Mapping[Metric, Observation],
                 external: Mapping[str, Observation]) -> Observation | None:
    if threshold.is_client_range:
        return observations.get(threshold.resolved_metric)
    return external.get(threshold.name)


def client_thresholds(thresholds: Sequence[Threshold]) -> list[Threshold]:
    """The checks loadkit's own stats decide (what live progress can judge during a run)."""
    return [t for t in thresholds if t.is_client_range]


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
