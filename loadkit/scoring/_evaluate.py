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

from loadkit.models.results import Check, CompareVerdict, Verdict
from loadkit.models.specs import DEFAULT_MIN_SAMPLES, CheckKind, Metric, Threshold
from loadkit.scoring._observe import UNITS, Observation
from loadkit.units import range_text, with_unit


@dataclass(frozen=True)
class Scorecard:
    checks: list[Check]
    score: float
    verdict: Verdict


def metric_label(threshold: Threshold) -> str:
    """A check's `metric` as results have always named it: the built-in metric, 'compare', or a custom
    check's own name. Only a label: what the check is, is its `kind`."""
    if threshold.kind is CheckKind.COMPARE:
        return "compare"
    return threshold.resolved_metric.value if threshold.kind is CheckKind.METRIC else threshold.name


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
            name=threshold.name, metric=metric_label(threshold), kind=threshold.kind, observed=observed, min=lo, max=hi,
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
        return check(comparison.verdict is CompareVerdict.PASS, f"{comparison.verdict.value}: {comparison.reason}")
    if lo is not None and observed < lo:
        return check(False, f"{with_unit(observed, unit, against=lo)} is below the minimum {with_unit(lo, unit)}")
    if hi is not None and observed > hi:
        return check(False, f"{with_unit(observed, unit, against=hi)} is above the maximum {with_unit(hi, unit)}")
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
