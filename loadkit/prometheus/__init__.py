"""Server-side truth: Prometheus checks (Flagger's Istio queries, MetricTemplate-style custom
queries) and the Prometheus side of canary-vs-baseline comparisons.

The client lives in loadkit.prometheus.source (imported on use: the CLI starts faster without it)."""

from loadkit.prometheus.observe import (
    Workload,
    baseline_workload,
    compare_from_prometheus,
    compare_queries,
    prometheus_observation,
    prometheus_observations,
)
from loadkit.prometheus.queries import BUILTIN_QUERIES, QueryVars, promql_duration, render

__all__ = ["BUILTIN_QUERIES", "QueryVars", "Workload", "baseline_workload", "compare_from_prometheus",
           "compare_queries", "prometheus_observation", "prometheus_observations", "promql_duration", "render"]
