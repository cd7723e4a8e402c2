"""Observations: the numbers scoring judges, each with how many samples stand behind it."""

from __future__ import annotations

from dataclasses import dataclass

from loadkit.models.results import Comparison
from loadkit.models.specs import Metric, Source
from loadkit.models.wire import Stats


@dataclass(frozen=True)
class Observation:
    """One measured value. `value=None` means no data, and `reason` may say why.

    `samples` feeds the min_samples rule; None means not counted (a Prometheus value: Flagger
    has no such rule either). A compare check carries its `comparison`, which decides it.
    """

    value: float | None
    samples: int | None
    unit: str = ""
    source: Source = Source.CLIENT
    reason: str = ""
    query: str | None = None
    comparison: Comparison | None = None


UNITS = {
    Metric.REQUEST_SUCCESS_RATE: "%",
    Metric.ERROR_RATE: "%",
    Metric.REQUEST_DURATION: "ms",
    Metric.LATENCY_P50: "ms",
    Metric.LATENCY_P95: "ms",
    Metric.LATENCY_P99: "ms",
    Metric.LATENCY_MAX: "ms",
    Metric.RPS: "req/s",
    Metric.AVAILABILITY: "%",
    Metric.RECOVERY_TIME: "s",
}


def observations_from_stats(stats: Stats) -> dict[Metric, Observation]:
    """Map client-side stats to every metric a threshold can name.

    request-duration is Flagger's name for the p99 latency in milliseconds.
    """
    n = stats.requests
    values: dict[Metric, float | None] = {
        Metric.REQUEST_SUCCESS_RATE: stats.success_rate_pct,
        Metric.ERROR_RATE: stats.error_rate_pct,
        Metric.REQUEST_DURATION: stats.p99_ms,
        Metric.LATENCY_P50: stats.p50_ms,
        Metric.LATENCY_P95: stats.p95_ms,
        Metric.LATENCY_P99: stats.p99_ms,
        Metric.LATENCY_MAX: stats.max_ms,
        Metric.RPS: stats.rps if n else None,
    }
    return {m: Observation(v if n else None, n, UNITS[m]) for m, v in values.items()}
