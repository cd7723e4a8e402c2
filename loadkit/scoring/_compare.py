"""Canary vs baseline, Kayenta-style: is the canary measurably worse than the primary?

Pure: samples in, a `Comparison` out. Two metrics:

- latency: Mann-Whitney U (two-sided, scipy) on the latency samples, and an effect size: the
  change of the canary's median against the baseline's. `high` (fail) only when the difference is
  significant (p < 1 - confidence) AND the canary is slower by more than `max_degradation_pct`
  (the plan's "performance impact < 5 %"); `low` when significantly faster (fine); else `pass`.
  Samples are per-request latencies (client) or a latency series, one point per step (Prometheus).
- error-rate: a one-sided two-proportion z-test (is the canary's error rate higher?); `high` only
  when significant AND higher by more than `max_error_increase_pct` percentage points.

With too few samples on either side a metric is `nodata`, which fails: no data is never a pass.
Score = 100 x share of metrics that pass (`pass` or `low`). Verdict: `fail` when a critical metric
failed, else `pass` at score >= pass_score, `marginal` at >= marginal_score, else `fail`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadkit.models import (
    COMPARE_MIN_REQUESTS,
    Classification,
    ComparedMetric,
    CompareSpec,
    CompareVerdict,
    Comparison,
    Source,
)


@dataclass(frozen=True)
class Side:
    """One workload's data: latency samples (ms) and request/error counts."""

    latency_ms: Sequence[float] | np.ndarray
    requests: int
    errors: int


def judge(baseline: Side, canary: Side, spec: CompareSpec, *, baseline_name: str, canary_name: str) -> Comparison:
    """Compare `canary` with `baseline` and explain every decision."""
    metrics = [judge_latency(baseline, canary, spec), judge_errors(baseline, canary, spec)]
    passed = sum(1 for m in metrics if m.passed)
    score = round(100.0 * passed / len(metrics), 1)
    failed_critical = [m.name for m in metrics if m.critical and not m.passed]
    verdict: CompareVerdict
    if failed_critical:
        verdict, why = "fail", f"critical metric {', '.join(failed_critical)} failed"
    elif score >= spec.pass_score:
        verdict, why = "pass", f"score {score:g} >= {spec.pass_score:g}"
    elif score >= spec.marginal_score:
        verdict, why = "marginal", f"score {score:g} is below {spec.pass_score:g} (marginal from " \
                                   f"{spec.marginal_score:g})"
    else:
        verdict, why = "fail", f"score {score:g} < {spec.marginal_score:g}"
    failing = "; ".join(f"{m.name}: {m.reason}" for m in metrics if not m.passed)
    reason = f"{why}: {failing}" if failing else f"{why}: canary is not worse than the baseline"
    return Comparison(verdict=verdict, score=score, reason=reason, source=spec.source or Source.CLIENT,
                      baseline=baseline_name, canary=canary_name, metrics=metrics, settings=spec)


def judge_latency(baseline: Side, canary: Side, spec: CompareSpec) -> ComparedMetric:
    name, needed = "latency", spec.needed_samples
    b, c = np.asarray(baseline.latency_ms, dtype=float), np.asarray(canary.latency_ms, dtype=float)
    b, c = b[np.isfinite(b)], c[np.isfinite(c)]  # Kayenta's nanStrategy: remove
    what = "points" if spec.source is Source.PROMETHEUS else "requests"

    def result(classification: Classification, reason: str, **numbers: float | None) -> ComparedMetric:
        return ComparedMetric(name=name, classification=classification, passed=classification in ("pass", "low"),
                              critical=name in spec.critical, unit="ms", baseline_samples=len(b),
                              canary_samples=len(c), reason=reason, **numbers)

    if len(b) < needed or len(c) < needed:
        hint = (": Prometheus gives one point per step that has new samples, so use a window of at least "
                f"{needed} scrape intervals (e.g. --interval 10m --step 30s at a 15s scrape)"
                if spec.source is Source.PROMETHEUS else "")
        return result("nodata", f"no data: {len(b)} baseline and {len(c)} canary {what}, need {needed} each "
                                f"(min_samples){hint}")
    # Mann-Whitney, two-sided: the smallest p any outcome can give (complete separation)
    best_p = 2.0 / math.comb(len(b) + len(c), len(b)) if len(b) + len(c) < 60 else 0.0
    if best_p >= 1.0 - spec.confidence:
        return result("nodata", f"no data: {len(b)} baseline and {len(c)} canary {what} cannot show a difference at "
                                f"{spec.confidence:g} confidence (the smallest possible p is {best_p:.2g}): "
                                "raise min_samples")
    mb, mc = float(np.median(b)), float(np.median(c))
    effect = (mc / mb - 1.0) * 100.0 if mb > 0 else (0.0 if mc == 0 else math.inf)
    if np.ptp(np.concatenate([b, c])) == 0:
        return result("pass", f"every sample is {mb:.4g} ms on both sides: no difference",
                      baseline=mb, canary=mc, effect_pct=0.0, p_value=1.0)
    from scipy.stats import mannwhitneyu  # imported here: it costs ~0.3 s at CLI start-up

    p_value = float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    significant = p_value < 1.0 - spec.confidence
    shown = (f"median {mc:.4g} ms vs {mb:.4g} ms ({effect:+.1f}%), Mann-Whitney p={p_value:.2g} "
             f"over {len(c)}/{len(b)} {what}")
    numbers = {"baseline": mb, "canary": mc, "effect_pct": round(effect, 3), "p_value": p_value}
    if significant and effect > spec.max_degradation_pct:
        return result("high", f"{shown}: significantly slower, more than the allowed "
                              f"{spec.max_degradation_pct:g}%", **numbers)
    if significant and effect < 0:
        return result("low", f"{shown}: significantly faster", **numbers)
    why = (f"no significant difference at {spec.confidence:g} confidence" if not significant
           else f"a significant difference, within the allowed {spec.max_degradation_pct:g}%")
    return result("pass", f"{shown}: {why}", **numbers)


def judge_errors(baseline: Side, canary: Side, spec: CompareSpec) -> ComparedMetric:
    name = "error-rate"
    # requests on each side: min_samples counts requests under load, but points from Prometheus
    needed = COMPARE_MIN_REQUESTS if spec.source is Source.PROMETHEUS else spec.needed_samples

    def result(classification: Classification, reason: str, **numbers: float | None) -> ComparedMetric:
        return ComparedMetric(name=name, classification=classification, passed=classification in ("pass", "low"),
                              critical=name in spec.critical, unit="%", baseline_samples=baseline.requests,
                              canary_samples=canary.requests, reason=reason, **numbers)

    if baseline.requests < needed or canary.requests < needed:
        return result("nodata", f"no data: {baseline.requests} baseline and {canary.requests} canary requests, "
                                f"need {needed} each (min_samples)")
    pb, pc = baseline.errors / baseline.requests, canary.errors / canary.requests
    higher = proportion_p_value(baseline.errors, baseline.requests, canary.errors, canary.requests)
    lower = proportion_p_value(canary.errors, canary.requests, baseline.errors, baseline.requests)
    alpha = 1.0 - spec.confidence
    diff = (pc - pb) * 100.0
    shown = f"{pc * 100:.2f}% vs {pb * 100:.2f}% ({diff:+.2f} points), z-test p={higher:.2g}"
    numbers = {"baseline": pb * 100, "canary": pc * 100, "effect_pct": round(diff, 4), "p_value": higher}
    if higher < alpha and diff > spec.max_error_increase_pct:
        return result("high", f"{shown}: significantly more errors, beyond the allowed "
                              f"{spec.max_error_increase_pct:g}-point increase", **numbers)
    if lower < alpha:
        return result("low", f"{shown}: significantly fewer errors", **numbers)
    why = (f"not significantly more errors at {spec.confidence:g} confidence" if higher >= alpha
           else f"more errors, within the allowed {spec.max_error_increase_pct:g}-point increase")
    return result("pass", f"{shown}: {why}", **numbers)


def proportion_p_value(e0: int, n0: int, e1: int, n1: int) -> float:
    """One-sided p-value that the second proportion (e1/n1) is higher than the first (e0/n0)."""
    pooled = (e0 + e1) / (n0 + n1)
    if pooled in (0.0, 1.0):
        return 1.0  # both all-good or both all-bad: no evidence of a difference
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    z = (e1 / n1 - e0 / n0) / se
    return 0.5 * math.erfc(z / math.sqrt(2))
