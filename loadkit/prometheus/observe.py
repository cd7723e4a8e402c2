"""Prometheus checks and the Prometheus side of canary-vs-baseline comparisons -> Observations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loadkit.models import CompareSpec, Source, Threshold
from loadkit.prometheus import queries
from loadkit.prometheus.queries import QueryVars, render
from loadkit.scoring import UNITS, Observation, Side, judge

if TYPE_CHECKING:
    from loadkit.prometheus.source import PrometheusSource


@dataclass(frozen=True)
class Workload:
    """Which workload the queries are about: Flagger's target (the canary) and its namespace."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def prometheus_observation(threshold: Threshold, source: PrometheusSource, workload: Workload, *,
                           end: datetime | None, interval_s: float) -> Observation:
    """Run one Prometheus check's query (its own or Flagger's built-in) at `end` (None: now)."""
    interval = threshold.interval or interval_s
    if threshold.query is not None:
        template, unit = threshold.query, ""
    else:
        metric = threshold.resolved_metric
        template, unit = queries.BUILTIN_QUERIES[metric], UNITS.get(metric, "")
    query = render(template, QueryVars(workload.namespace, workload.name, interval, threshold.templateVariables),
                   check=threshold.name)
    answer = source.value(query, check=threshold.name, at=end)
    reason = ""
    if answer.value is None:
        reason = (f"no data: {answer.no_data}; is {workload} receiving traffic? "
                  f"(interval {queries.promql_duration(interval)})")
    return Observation(answer.value, None, unit, Source.PROMETHEUS, reason, query=query)


def prometheus_observations(thresholds: Sequence[Threshold], source: PrometheusSource, workload: Workload, *,
                            end: datetime | None, interval_s: float) -> dict[str, Observation]:
    return {
        t.name: prometheus_observation(t, source, workload, end=end, interval_s=interval_s)
        for t in thresholds if t.compare is None and t.resolved_source is Source.PROMETHEUS
    }


def baseline_workload(spec: CompareSpec, canary: Workload) -> Workload:
    """`primary` is Flagger's primary of the canary (`<name>-primary`); anything else names a workload."""
    name = f"{canary.name}-primary" if spec.baseline == "primary" else spec.baseline
    return Workload(canary.namespace, name)


def compare_from_prometheus(check: str, spec: CompareSpec, source: PrometheusSource, canary: Workload, *,
                            end: datetime, interval_s: float) -> Observation:
    """Both workloads' series over the same window, judged.

    Latency: one point per step, the mean latency of the requests completed in that step
    (difference of Istio's duration _sum and _count counters; steps without new requests, or
    with a counter reset, are left out). Errors: 5xx among requests over the window.
    """
    window = spec.interval or interval_s
    step = spec.step or max(1.0, window / 60)
    start = end - timedelta(seconds=window)
    baseline = baseline_workload(spec, canary)
    used: dict[str, str] = {}

    def side(workload: Workload, label: str) -> Side:
        values = QueryVars(workload.namespace, workload.name, window)
        sums_q, counts_q = render(queries.COMPARE_LATENCY_SUM, values, check=check), \
            render(queries.COMPARE_LATENCY_COUNT, values, check=check)
        requests_q, errors_q = render(queries.COMPARE_REQUESTS, values, check=check), \
            render(queries.COMPARE_ERRORS, values, check=check)
        used.update({f"{label} latency sum": sums_q, f"{label} latency count": counts_q,
                     f"{label} requests": requests_q, f"{label} errors": errors_q})
        sums = source.series(sums_q, check=check, start=start, end=end, step_s=step)
        counts = source.series(counts_q, check=check, start=start, end=end, step_s=step)
        requests = source.value(requests_q, check=check, at=end).value or 0.0
        errors = source.value(errors_q, check=check, at=end).value or 0.0
        return Side(mean_latency_points(sums, counts), round(requests), round(errors))

    judged = judge(side(baseline, "baseline"), side(canary, "canary"), spec,
                   baseline_name=str(baseline), canary_name=str(canary))
    comparison = judged.model_copy(update={"queries": used, "started_at": start, "ended_at": end})
    return Observation(comparison.score, None, "", Source.PROMETHEUS, comparison=comparison)


def mean_latency_points(sums: Sequence[float], counts: Sequence[float]) -> list[float]:
    """Per-step mean latency from cumulative sum/count samples taken at the same instants."""
    points = []
    for (s0, c0), (s1, c1) in zip(zip(sums, counts, strict=False), zip(sums[1:], counts[1:], strict=False),
                                  strict=False):
        d_sum, d_count = s1 - s0, c1 - c0
        if d_count > 0 and d_sum >= 0:
            points.append(d_sum / d_count)
    return points
