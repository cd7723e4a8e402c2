"""Scored from Prometheus alone, now, over the interval: `loadkit score` and `loadkit compare --prometheus`.

No traffic of loadkit's own: what Flagger's analysis does at each tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from loadkit.analysis._server_side import DEFAULT_INTERVAL_S, ServerSide, gather, require
from loadkit.errors import UsageError
from loadkit.models.results import Comparison, ScoreResult
from loadkit.models.specs import DEFAULT_MIN_SAMPLES, PROMETHEUS_METRICS, CompareSpec, Source, Threshold
from loadkit.prometheus import compare_from_prometheus
from loadkit.scoring import evaluate


def for_prometheus_only(thresholds: Sequence[Threshold]) -> list[Threshold]:
    """`loadkit score` has no traffic of its own: built-in metrics and comparisons read Prometheus.

    A check that says `source: client`, or a metric only loadkit's traffic can measure, is refused.
    """
    converted = []
    for t in thresholds:
        if t.compare is not None:
            if t.compare.source is Source.CLIENT:
                raise UsageError(f"check {t.name!r} compares loadkit's own traffic (source: client), but loadkit score "
                                 "runs no traffic", hint="use compare: {source: prometheus}, or loadkit run / compare")
            converted.append(t.model_copy(update={"compare": t.compare.model_copy(
                update={"source": Source.PROMETHEUS})}))
        elif t.query is not None or t.source is Source.PROMETHEUS:
            converted.append(t)
        elif t.source is Source.CLIENT or t.resolved_metric not in PROMETHEUS_METRICS:
            raise UsageError(f"check {t.name!r} ({t.resolved_metric.value}) is measured from loadkit's own traffic, "
                             "and loadkit score runs no traffic",
                             hint="score it with loadkit run, or use a metric with a Prometheus query: "
                                  + ", ".join(sorted(m.value for m in PROMETHEUS_METRICS)))
        else:
            converted.append(t.model_copy(update={"source": Source.PROMETHEUS}))
    return converted


def score_now(thresholds: Sequence[Threshold], server: ServerSide) -> ScoreResult:
    """Every check from Prometheus, now, over the interval: what Flagger's analysis does at a tick."""
    require(thresholds, server)
    assert server.prometheus is not None and server.workload is not None  # require() saw to it
    at = datetime.now(UTC)
    interval = server.interval_s or DEFAULT_INTERVAL_S
    external, notes = gather(thresholds, server, start=None, end=at, wait=False)
    card = evaluate(thresholds, {}, DEFAULT_MIN_SAMPLES, external)
    return ScoreResult(verdict=card.verdict, score=card.score, target=str(server.workload),
                       prometheus=server.prometheus.url, namespace=server.workload.namespace,
                       canary=server.workload.name, interval_s=interval, evaluated_at=at, checks=card.checks,
                       thresholds=list(thresholds), warnings=notes)


def compare_now(spec: CompareSpec, server: ServerSide) -> Comparison:
    """`loadkit compare --prometheus`: both workloads' series over the last interval, judged now."""
    if server.prometheus is None or server.workload is None:
        raise UsageError("comparing from Prometheus needs --prometheus URL, --canary NAME and --namespace NS",
                         hint="or run load against both: loadkit compare --target CANARY_URL --baseline PRIMARY_URL")
    spec = spec.model_copy(update={"source": Source.PROMETHEUS})
    observation = compare_from_prometheus("compare", spec, server.prometheus, server.workload, end=datetime.now(UTC),
                                          interval_s=server.interval_s or DEFAULT_INTERVAL_S)
    assert observation.comparison is not None
    return observation.comparison
