"""Canary vs baseline, Kayenta-style: is the canary measurably worse than the primary?

Pure: samples in, a `Comparison` out. Two metrics:

- latency: Mann-Whitney U (two-sided, scipy) on the latency samples, and an effect size: the
  change of the canary's median against the baseline's. `high` (fail) only when the difference is
  significant (p < 1 - confidence) AND the canary is slower by more than `max_degradation_pct`
  (the plan's "performance impact < 5 %"); `low` when significantly faster (fine); else `pass`.
  Samples are per-request latencies (client) or a latency series, one point per step (Prometheus).
- error-rate: one-sided (is the canary's error rate higher?), the two-proportion z-test, or Fisher's
  exact test when any expected cell count is below 5 (Cochran's rule: there the z-test is too sure,
  0 vs 5 errors in 50 + 50 requests is p=0.011 by z but 0.028 exactly); the reason names the test.
  `high` only when significant AND higher by more than `max_error_increase_pct` percentage points.

With too few samples on either side a metric is `nodata`, which fails: no data is never a pass.
Score = 100 x share of metrics that pass (`pass` or `low`). Verdict: `fail` when a critical metric
failed, else `pass` at score >= pass_score, `marginal` at >= marginal_score, else `fail`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from loadkit.models.results import Classification, ComparedMetric, CompareVerdict, Comparison
from loadkit.models.specs import COMPARE_MIN_REQUESTS, CompareMetricName, CompareSpec, Source

if TYPE_CHECKING:
    import numpy as np


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
        verdict, why = CompareVerdict.FAIL, f"critical metric {', '.join(failed_critical)} failed"
    elif score >= spec.pass_score:
        verdict, why = CompareVerdict.PASS, f"score {score:g} >= {spec.pass_score:g}"
    elif score >= spec.marginal_score:
        verdict, why = CompareVerdict.MARGINAL, f"score {score:g} is below {spec.pass_score:g} (marginal from " \
                                                f"{spec.marginal_score:g})"
    else:
        verdict, why = CompareVerdict.FAIL, f"score {score:g} < {spec.marginal_score:g}"
    failing = "; ".join(f"{m.name}: {m.reason}" for m in metrics if not m.passed)
    reason = f"{why}: {failing}" if failing else f"{why}: canary is not worse than the baseline"
    return Comparison(verdict=verdict, score=score, reason=reason, source=spec.source or Source.CLIENT,
                      baseline=baseline_name, canary=canary_name, metrics=metrics, settings=spec)


def judge_latency(baseline: Side, canary: Side, spec: CompareSpec) -> ComparedMetric:
    name, needed = CompareMetricName.LATENCY, spec.needed_samples
    import numpy as np  # here, not at import: it is ~0.1 s of every CLI start-up that compares nothing

    b, c = np.asarray(baseline.latency_ms, dtype=float), np.asarray(canary.latency_ms, dtype=float)
    b, c = b[np.isfinite(b)], c[np.isfinite(c)]  # Kayenta's nanStrategy: remove
    what = "points" if spec.source is Source.PROMETHEUS else "requests"

    def result(classification: Classification, reason: str, **numbers: float | None) -> ComparedMetric:
        return ComparedMetric(name=name, classification=classification, passed=classification.passed,
                              critical=name in spec.critical, unit="ms", baseline_samples=len(b),
                              canary_samples=len(c), reason=reason, **numbers)

    if len(b) < needed or len(c) < needed:
        hint = (": Prometheus gives one point per step that has new samples, so use a window of at least "
                f"{needed} scrape intervals (e.g. --interval 10m --step 30s at a 15s scrape)"
                if spec.source is Source.PROMETHEUS else "")
        return result(Classification.NODATA, f"no data: {len(b)} baseline and {len(c)} canary {what}, "
                                             f"need {needed} each (min_samples){hint}")
    # Mann-Whitney, two-sided: the smallest p any outcome can give (complete separation)
    best_p = 2.0 / math.comb(len(b) + len(c), len(b)) if len(b) + len(c) < 60 else 0.0
    if best_p >= 1.0 - spec.confidence:
        return result(Classification.NODATA, f"no data: {len(b)} baseline and {len(c)} canary {what} cannot show "
                                             f"a difference at {spec.confidence:g} confidence (the smallest "
                                             f"possible p is {best_p:.2g}): raise min_samples")
    mb, mc = float(np.median(b)), float(np.median(c))
    effect = (mc / mb - 1.0) * 100.0 if mb > 0 else (0.0 if mc == 0 else math.inf)
    if np.ptp(np.concatenate([b, c])) == 0:
        return result(Classification.PASS, f"every sample is {mb:.4g} ms on both sides: no difference",
                      baseline=mb, canary=mc, effect_pct=0.0, p_value=1.0)
    from scipy.stats import mannwhitneyu  # imported here: it costs ~0.3 s at CLI start-up

    p_value = float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    significant = p_value < 1.0 - spec.confidence
    shown = (f"median {mc:.4g} ms vs {mb:.4g} ms ({effect:+.1f}%), Mann-Whitney p={p_value:.2g} "
             f"over {len(c)}/{len(b)} {what}")
    numbers = {"baseline": mb, "canary": mc, "effect_pct": round(effect, 3), "p_value": p_value}
    if significant and effect > spec.max_degradation_pct:
        return result(Classification.HIGH, f"{shown}: significantly slower, more than the allowed "
                                           f"{spec.max_degradation_pct:g}%", **numbers)
    if significant and effect < 0:
        return result(Classification.LOW, f"{shown}: significantly faster", **numbers)
    why = (f"no significant difference at {spec.confidence:g} confidence" if not significant
           else f"a significant difference, within the allowed {spec.max_degradation_pct:g}%")
    return result(Classification.PASS, f"{shown}: {why}", **numbers)


def judge_errors(baseline: Side, canary: Side, spec: CompareSpec) -> ComparedMetric:
    name = CompareMetricName.ERROR_RATE
    # requests on each side: min_samples counts requests under load, but points from Prometheus
    needed = COMPARE_MIN_REQUESTS if spec.source is Source.PROMETHEUS else spec.needed_samples

    def result(classification: Classification, reason: str, **numbers: float | None) -> ComparedMetric:
        return ComparedMetric(name=name, classification=classification, passed=classification.passed,
                              critical=name in spec.critical, unit="%", baseline_samples=baseline.requests,
                              canary_samples=canary.requests, reason=reason, **numbers)

    if baseline.requests < needed or canary.requests < needed:
        return result(Classification.NODATA, f"no data: {baseline.requests} baseline and {canary.requests} canary "
                                             f"requests, need {needed} each (min_samples)")
    pb, pc = baseline.errors / baseline.requests, canary.errors / canary.requests
    higher = proportion_test(baseline.errors, baseline.requests, canary.errors, canary.requests)
    lower = proportion_test(canary.errors, canary.requests, baseline.errors, baseline.requests)
    alpha = 1.0 - spec.confidence
    diff = (pc - pb) * 100.0
    shown = f"{pc * 100:.2f}% vs {pb * 100:.2f}% ({diff:+.2f} points), {higher.test} p={higher.p_value:.2g}"
    numbers = {"baseline": pb * 100, "canary": pc * 100, "effect_pct": round(diff, 4), "p_value": higher.p_value}
    if higher.p_value < alpha and diff > spec.max_error_increase_pct:
        return result(Classification.HIGH, f"{shown}: significantly more errors, beyond the allowed "
                                           f"{spec.max_error_increase_pct:g}-point increase", **numbers)
    if lower.p_value < alpha:
        return result(Classification.LOW, f"{shown}: significantly fewer errors", **numbers)
    why = (f"not significantly more errors at {spec.confidence:g} confidence" if higher.p_value >= alpha
           else f"more errors, within the allowed {spec.max_error_increase_pct:g}-point increase")
    return result(Classification.PASS, f"{shown}: {why}", **numbers)


class ProportionTest(NamedTuple):
    p_value: float
    test: str  # "z-test" or "Fisher exact", as the reason names it


EXACT_BELOW = 5.0  # Cochran's rule: the z-test holds when every expected cell count is at least 5


def proportion_test(e0: int, n0: int, e1: int, n1: int) -> ProportionTest:
    """One-sided: is the second proportion (e1/n1) higher than the first (e0/n0)? The p-value, and its test.

    The two-proportion z-test, unless an expected cell of the 2x2 table (errors and other requests on
    each side, at the pooled rate) is below 5: there the normal approximation is too sure of itself
    and Fisher's exact test decides. 0 vs 5 errors in 50 + 50 requests: z gives p=0.011, Fisher 0.028.

    >>> [round(proportion_test(0, 50, 5, 50).p_value, 3), proportion_test(0, 50, 5, 50).test]
    [0.028, 'Fisher exact']
    """
    errors, total = e0 + e1, n0 + n1
    expected = min(errors, total - errors) * min(n0, n1) / total
    if expected >= EXACT_BELOW:
        return ProportionTest(z_test_p_value(e0, n0, e1, n1), "z-test")
    return ProportionTest(fisher_p_value(e0, n0, e1, n1), "Fisher exact")


def z_test_p_value(e0: int, n0: int, e1: int, n1: int) -> float:
    """The pooled two-proportion z-test, one-sided (e1/n1 higher than e0/n0)."""
    pooled = (e0 + e1) / (n0 + n1)
    if pooled in (0.0, 1.0):
        return 1.0  # both all-good or both all-bad: no evidence of a difference
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    z = (e1 / n1 - e0 / n0) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def fisher_p_value(e0: int, n0: int, e1: int, n1: int) -> float:
    """Fisher's exact test, one-sided (e1/n1 higher than e0/n0): the chance of e1 or more errors on the
    second side when the errors fall on the requests at random."""
    if e0 + e1 in (0, n0 + n1):
        return 1.0  # no errors, or nothing but errors: every split is as likely as this one
    from scipy.stats import fisher_exact  # imported here, like mannwhitneyu

    return float(fisher_exact([[e1, n1 - e1], [e0, n0 - e0]], alternative="greater").pvalue)
