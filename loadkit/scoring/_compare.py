"""Canary vs baseline, Kayenta-style: is the canary measurably worse than the primary?

Pure: samples in, a judgement out. Two metrics by default:

- latency: Mann-Whitney U (two-sided) on the latency samples, and the effect size: the change of
  the canary's median against the baseline's. `high` (fail) only when the difference is
  significant (p < 1 - confidence) AND the canary is slower by more than `max_degradation_pct`
  (the plan's "performance impact < 5 %"); `low` when significantly faster (fine); else `pass`.
- error-rate: a one-sided two-proportion z-test (is the canary's error rate higher?), `high` only
  when significant AND higher by more than `max_error_increase_pct` percentage points.

With fewer than `min_samples` on either side a metric is `nodata`, which fails (no data is never
a pass). Score = 100 x share of metrics that pass (pass or low). Verdict: `fail` if a critical
metric failed, else `pass` at score >= pass_score, `marginal` at >= marginal_score, else `fail`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class Classification(enum.StrEnum):
    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"


class CompareVerdict(enum.StrEnum):
    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"


@dataclass(frozen=True)
class CompareSettings:
    max_degradation_pct: float = 5.0
    max_error_increase_pct: float = 1.0
    confidence: float = 0.98
    min_samples: int = 50
    critical: frozenset[str] = frozenset({"error-rate"})
    pass_score: float = 95.0
    marginal_score: float = 75.0


@dataclass(frozen=True)
class Side:
    """One workload's data: latency samples (ms) and request/error counts."""

    latency_ms: Sequence[float] | np.ndarray
    requests: int
    errors: int


@dataclass(frozen=True)
class MetricJudgement:
    name: str
    classification: Classification
    baseline: float | None
    canary: float | None
    effect_pct: float | None
    p_value: float | None
    critical: bool
    reason: str

    @property
    def passed(self) -> bool:
        return self.classification in (Classification.PASS, Classification.LOW)


@dataclass(frozen=True)
class Judgement:
    metrics: list[MetricJudgement]
    score: float
    verdict: CompareVerdict
    reason: str
    settings: CompareSettings = field(default_factory=CompareSettings)


def judge(baseline: Side, canary: Side, settings: CompareSettings = CompareSettings()) -> Judgement:
    metrics = [judge_latency(baseline, canary, settings), judge_errors(baseline, canary, settings)]
    passed = sum(1 for m in metrics if m.passed)
    score = round(100.0 * passed / len(metrics), 1)
    failed_critical = [m for m in metrics if m.critical and not m.passed]
    if failed_critical:
        verdict, why = CompareVerdict.FAIL, f"critical metric {failed_critical[0].name} failed"
    elif score >= settings.pass_score:
        verdict, why = CompareVerdict.PASS, f"score {score:g} >= {settings.pass_score:g}"
    elif score >= settings.marginal_score:
        verdict, why = CompareVerdict.MARGINAL, f"score {score:g} is between {settings.marginal_score:g} and " \
                                                f"{settings.pass_score:g}"
    else:
        verdict, why = CompareVerdict.FAIL, f"score {score:g} < {settings.marginal_score:g}"
    details = "; ".join(f"{m.name}: {m.reason}" for m in metrics)
    return Judgement(metrics=metrics, score=score, verdict=verdict, reason=f"{why} ({details})", settings=settings)


def judge_latency(baseline: Side, canary: Side, settings: CompareSettings) -> MetricJudgement:
    name = "latency"
    critical = name in settings.critical
    b, c = np.asarray(baseline.latency_ms, dtype=float), np.asarray(canary.latency_ms, dtype=float)
    if len(b) < settings.min_samples or len(c) < settings.min_samples:
        return MetricJudgement(name, Classification.NODATA, None, None, None, None, critical,
                               f"no data: {len(b)} baseline and {len(c)} canary samples, need "
                               f"{settings.min_samples} each")
    from scipy.stats import mannwhitneyu

    p_value = float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    mb, mc = float(np.median(b)), float(np.median(c))
    effect = (mc / mb - 1.0) * 100.0 if mb > 0 else (0.0 if mc == 0 else math.inf)
    alpha = 1.0 - settings.confidence
    significant = p_value < alpha
    shown = f"canary median {mc:.3g} ms vs baseline {mb:.3g} ms ({effect:+.1f}%), Mann-Whitney p={p_value:.2g}"
    if significant and effect > settings.max_degradation_pct:
        return MetricJudgement(name, Classification.HIGH, mb, mc, effect, p_value, critical,
                               f"{shown}: significantly slower by more than the allowed "
                               f"{settings.max_degradation_pct:g}%")
    if significant and effect < 0:
        return MetricJudgement(name, Classification.LOW, mb, mc, effect, p_value, critical,
                               f"{shown}: significantly faster")
    why = "not a significant difference" if not significant else \
        f"significant but within the allowed {settings.max_degradation_pct:g}%"
    return MetricJudgement(name, Classification.PASS, mb, mc, effect, p_value, critical, f"{shown}: {why}")


def judge_errors(baseline: Side, canary: Side, settings: CompareSettings) -> MetricJudgement:
    name = "error-rate"
    critical = name in settings.critical
    if baseline.requests < settings.min_samples or canary.requests < settings.min_samples:
        return MetricJudgement(name, Classification.NODATA, None, None, None, None, critical,
                               f"no data: {baseline.requests} baseline and {canary.requests} canary requests, "
                               f"need {settings.min_samples} each")
    pb, pc = baseline.errors / baseline.requests, canary.errors / canary.requests
    p_value = _proportion_p_value(baseline.errors, baseline.requests, canary.errors, canary.requests)
    diff_points = (pc - pb) * 100.0
    shown = f"canary {pc * 100:.2f}% vs baseline {pb * 100:.2f}% ({diff_points:+.2f} points), z-test p={p_value:.2g}"
    significant = p_value < 1.0 - settings.confidence
    if significant and diff_points > settings.max_error_increase_pct:
        return MetricJudgement(name, Classification.HIGH, pb * 100, pc * 100, diff_points, p_value, critical,
                               f"{shown}: significantly more errors, beyond the allowed "
                               f"{settings.max_error_increase_pct:g} points")
    if pc < pb and _proportion_p_value(canary.errors, canary.requests, baseline.errors, baseline.requests) < \
            1.0 - settings.confidence:
        return MetricJudgement(name, Classification.LOW, pb * 100, pc * 100, diff_points, p_value, critical,
                               f"{shown}: significantly fewer errors")
    why = "not significantly more errors" if not significant else \
        f"more errors, but within the allowed {settings.max_error_increase_pct:g} points"
    return MetricJudgement(name, Classification.PASS, pb * 100, pc * 100, diff_points, p_value, critical,
                           f"{shown}: {why}")


def _proportion_p_value(e0: int, n0: int, e1: int, n1: int) -> float:
    """One-sided p-value that the second proportion (e1/n1) is higher than the first (e0/n0)."""
    pooled = (e0 + e1) / (n0 + n1)
    if pooled in (0.0, 1.0):
        return 1.0  # identical extremes: no evidence of a difference
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    z = (e1 / n1 - e0 / n0) / se
    return 0.5 * math.erfc(z / math.sqrt(2))
