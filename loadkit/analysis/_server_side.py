"""Checks that need more than loadkit's own stats: Prometheus queries and canary-vs-baseline comparisons.

The edge around scoring for these checks: it says what a set of checks needs before a run (and
fails early when something is missing), then gathers their observations after it. Scoring
itself stays pure.

    loadkit run --target URL --prometheus http://127.0.0.1:9090 --canary bruno-site --namespace bruno
    loadkit run --target URL/canary --baseline URL          # for compare: {baseline: primary}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loadkit.errors import ConfigError, LoadkitError, UsageError
from loadkit.load._window import latency_samples_ms
from loadkit.load.preflight import validate_target
from loadkit.models.specs import Source, Threshold
from loadkit.models.wire import Stats
from loadkit.prometheus import (
    Workload,
    compare_from_prometheus,
    compare_queries,
    prometheus_observation,
    render,
)
from loadkit.prometheus.queries import BUILTIN_QUERIES, QueryVars
from loadkit.scoring import Observation, Side, judge

if TYPE_CHECKING:
    from loadkit.prometheus.source import PrometheusSource

DEFAULT_INTERVAL_S = 60.0  # Flagger's MetricInterval
DEFAULT_SETTLE_S = 30.0


@dataclass(frozen=True)
class ServerSide:
    """Where server-side checks read from. All optional: only the checks in use need their part."""

    prometheus: PrometheusSource | None = None
    workload: Workload | None = None
    baseline_url: str | None = None  # the primary, for client-side compare: {baseline: primary}
    interval_s: float | None = None  # the query window; default: the run's duration (1m for score)
    settle_s: float = DEFAULT_SETTLE_S  # after a run, wait up to this long for Prometheus' last scrape


def prometheus_checks(thresholds: Sequence[Threshold]) -> list[Threshold]:
    return [t for t in thresholds if t.resolved_source is Source.PROMETHEUS]


def client_compares(thresholds: Sequence[Threshold]) -> list[Threshold]:
    return [t for t in thresholds if t.compare is not None and t.resolved_source is Source.CLIENT]


def baseline_target(thresholds: Sequence[Threshold], server: ServerSide) -> str | None:
    """The URL to run the baseline against, when a client-side compare check needs one."""
    urls = set()
    for t in client_compares(thresholds):
        assert t.compare is not None
        wanted = t.compare.baseline
        if wanted.startswith(("http://", "https://")):
            urls.add(validate_target(wanted))
        elif wanted == "primary":
            if server.baseline_url is None:
                raise UsageError(f"check {t.name!r} compares the canary with the primary, but no primary URL "
                                 "was given", hint="pass --baseline URL (the primary's route, e.g. "
                                                   "http://127.0.0.1:8080 on the sandbox)")
            urls.add(validate_target(server.baseline_url, "--baseline"))
        else:
            raise ConfigError(f"check {t.name!r}: compare.baseline {wanted!r} is neither 'primary' nor a URL",
                              hint="client-side comparisons run against a URL; to name a workload use "
                                   "compare: {source: prometheus, baseline: NAME}")
    if len(urls) > 1:
        raise ConfigError(f"compare checks name {len(urls)} different baselines ({', '.join(sorted(urls))})",
                          hint="one run compares against one baseline: use the same one in every check")
    return urls.pop() if urls else None


def require(thresholds: Sequence[Threshold], server: ServerSide) -> None:
    """Before any traffic: every check can be measured, and every Prometheus query is valid.

    Each query runs once now, so a typo, several series or an unreachable Prometheus fail the
    command at once instead of after the load. No data now is fine (no traffic yet).
    """
    baseline_target(thresholds, server)
    checks = prometheus_checks(thresholds)
    if not checks:
        return
    names = ", ".join(repr(t.name) for t in checks)
    if server.prometheus is None:
        raise UsageError(f"check(s) {names} read Prometheus, but no Prometheus was given",
                         hint="pass --prometheus URL (or set prometheus.url in the config)")
    if server.workload is None:
        raise UsageError(f"check(s) {names} read Prometheus and need the canary's workload",
                         hint="pass --canary NAME --namespace NS (Flagger's target and namespace, e.g. "
                              "--canary bruno-site --namespace bruno)")
    for t in checks:
        if t.compare is None:
            template = t.query if t.query is not None else BUILTIN_QUERIES[t.resolved_metric]
            values = QueryVars(server.workload.namespace, server.workload.name,
                               t.interval or server.interval_s or DEFAULT_INTERVAL_S, t.templateVariables)
            server.prometheus.value(render(template, values, check=t.name), check=t.name)
        else:  # the counters are series selectors: count them, which also proves Prometheus answers
            for query in compare_queries(t.name, t.compare, server.workload).values():
                server.prometheus.value(f"count({query})", check=t.name)


def gather(thresholds: Sequence[Threshold], server: ServerSide, *, start: datetime | None, end: datetime | None,
           pair: tuple[Stats, str, Stats, str] | None = None, wait: bool = True,
           canary_label: str = "canary") -> tuple[dict[str, Observation], list[str]]:
    """Observations for every non-client check, keyed by check name, and notes for the result.

    `start`/`end` bound the run (None: score now over the interval, as Flagger does). `pair` is
    the client-side comparison's data: (canary stats, canary histogram, baseline stats, baseline
    histogram). A Prometheus failure after the run fails the checks that needed it, with why;
    the run's other results are kept.
    """
    observations: dict[str, Observation] = {}
    notes: list[str] = []
    checks = prometheus_checks(thresholds)
    interval = server.interval_s or (_window_s(start, end) if start and end else DEFAULT_INTERVAL_S)
    if checks and server.prometheus is not None and server.workload is not None:
        if wait and end is not None and not _settled(server, end):
            notes.append(f"Prometheus had not scraped {server.workload} within {server.settle_s:g}s after the run; "
                         "its last seconds may be missing from the Prometheus checks")
        for t in checks:
            observations[t.name] = _prometheus(t, server, end=end, interval_s=interval)
    for t in client_compares(thresholds):
        assert t.compare is not None
        if pair is None:
            observations[t.name] = Observation(None, None, reason="no data: the baseline was not run")
            continue
        canary_stats, canary_hist, baseline_stats, baseline_hist = pair
        comparison = judge(side_of(baseline_stats, baseline_hist), side_of(canary_stats, canary_hist), t.compare,
                           baseline_name=t.compare.baseline if t.compare.baseline != "primary"
                           else server.baseline_url or "primary", canary_name=canary_label)
        comparison = comparison.model_copy(update={"baseline_stats": baseline_stats, "canary_stats": canary_stats,
                                                   "started_at": start, "ended_at": end})
        observations[t.name] = Observation(comparison.score, None, comparison=comparison)
    return observations, notes


def _prometheus(t: Threshold, server: ServerSide, *, end: datetime | None, interval_s: float) -> Observation:
    assert server.prometheus is not None and server.workload is not None
    try:
        if t.compare is not None:
            stamp = end or datetime.now(UTC)
            return compare_from_prometheus(t.name, t.compare, server.prometheus, server.workload, end=stamp,
                                           interval_s=interval_s)
        return prometheus_observation(t, server.prometheus, server.workload, end=end, interval_s=interval_s)
    except LoadkitError as exc:  # after the load: fail this check and keep the rest of the result
        return Observation(None, None, source=Source.PROMETHEUS, reason=f"no data: {exc}")


def side_of(stats: Stats, histogram: str) -> Side:
    """A client-side run as the judge sees it: every latency, requests and failed requests."""
    errors = min(stats.requests, stats.failures + stats.exceptions)
    return Side(latency_samples_ms(histogram), stats.requests, errors)


def _settled(server: ServerSide, end: datetime) -> bool:
    assert server.prometheus is not None and server.workload is not None
    series = render('min(timestamp(istio_requests_total{reporter="destination",'
                    'destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}))',
                    QueryVars(server.workload.namespace, server.workload.name, 60), check="scrape check")
    try:
        return server.prometheus.wait_until(series, end.timestamp(), timeout_s=server.settle_s)
    except LoadkitError:
        return False


def _window_s(start: datetime, end: datetime) -> float:
    return float(max(1, math.ceil((end - start).total_seconds())))
