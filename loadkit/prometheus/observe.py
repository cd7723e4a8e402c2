"""Prometheus checks and the Prometheus side of canary-vs-baseline comparisons -> Observations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loadkit.errors import ConfigError
from loadkit.models.specs import CompareSpec, Source, Threshold
from loadkit.prometheus import queries
from loadkit.prometheus.queries import QueryVars, render
from loadkit.scoring import UNITS, Observation, Side, judge

if TYPE_CHECKING:
    from loadkit.prometheus.source import PrometheusSource, Series


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

    Latency: one point per step, the mean latency of the requests completed in that step (the
    growth of Istio's duration _sum and _count counters, see step_increments; steps without new
    requests are left out). Errors: 5xx among the requests of the window.
    """
    window = spec.interval or interval_s
    step = spec.step or max(1.0, window / 60)
    if step >= window:
        raise ConfigError(f"check {check!r}: compare.step ({step:g}s) is not shorter than the window ({window:g}s)",
                          hint="give a shorter step, or a compare.interval longer than the step")
    start = end - timedelta(seconds=window)
    baseline = baseline_workload(spec, canary)
    used = compare_queries(check, spec, canary)

    def side(workload: Workload, label: str) -> Side:
        sums_q, counts_q, requests_q = (used[f"{label} {what}"] for what in ("latency sum", "latency count",
                                                                             "requests"))
        grid = [start.timestamp() + i * step for i in range(int(window / step) + 1)]
        sums = step_increments(source.matrix(sums_q, check=check, start=start, end=end, step_s=step), grid)
        counts = step_increments(source.matrix(counts_q, check=check, start=start, end=end, step_s=step), grid)
        latency = [s / c for s, c in zip(sums, counts, strict=True) if c > 0]
        requests = source.matrix(requests_q, check=check, start=start, end=end, step_s=step)
        errors = [r for r in requests if r.labels.get("response_code", "").startswith("5")]
        return Side(latency, round(sum(step_increments(requests, grid))), round(sum(step_increments(errors, grid))))

    judged = judge(side(baseline, "baseline"), side(canary, "canary"), spec,
                   baseline_name=str(baseline), canary_name=str(canary))
    comparison = judged.model_copy(update={"queries": used, "started_at": start, "ended_at": end})
    return Observation(comparison.score, None, "", Source.PROMETHEUS, comparison=comparison)


def compare_queries(check: str, spec: CompareSpec, canary: Workload) -> dict[str, str]:
    """The counters a Prometheus comparison reads, for the baseline and the canary."""
    if spec.baseline.startswith(("http://", "https://")):
        raise ConfigError(f"check {check!r}: compare.baseline {spec.baseline!r} is a URL, but this comparison reads "
                          "Prometheus, which knows workloads", hint="use baseline: primary (the canary's NAME-primary) "
                                                                    "or a workload name")
    used = {}
    for label, workload in (("baseline", baseline_workload(spec, canary)), ("canary", canary)):
        values = QueryVars(workload.namespace, workload.name, spec.interval or 60.0)
        for what, template in (("latency sum", queries.COMPARE_LATENCY_SUM),
                               ("latency count", queries.COMPARE_LATENCY_COUNT),
                               ("requests", queries.COMPARE_REQUESTS)):
            used[f"{label} {what}"] = render(template, values, check=check)
    return used


def step_increments(series: Sequence[Series], grid: Sequence[float]) -> list[float]:
    """How much a set of counters grew in each step of `grid` (len(grid) - 1 steps), all series summed.

    Each series is differenced on its own, as Prometheus' increase() does: a drop is a counter
    reset (the new value is the increase since it). A series whose first point comes after the
    grid's start was born in the window: it grew from 0.
    """
    totals = [0.0] * max(0, len(grid) - 1)
    if not totals:
        return totals
    first, last = grid[0], grid[-1]
    for s in series:
        previous: float | None = None
        for t, v in s.points:
            if t < first - 1e-6 or t > last + 1e-6:
                continue
            index = _step_of(t, grid)
            if previous is None:
                if t > first + 1e-6:  # born in the window (or its first scrape is): counted from 0
                    totals[index - 1] += v
            else:
                totals[index - 1] += v - previous if v >= previous else v
            previous = v
    return totals


def _step_of(t: float, grid: Sequence[float]) -> int:
    """The grid index of the instant `t` (range-query points fall on the grid)."""
    step = grid[1] - grid[0]
    return min(len(grid) - 1, max(0, round((t - grid[0]) / step)))
