"""Prometheus and baseline settings from the command line over the config (imported on use)."""

from __future__ import annotations

from loadkit.analysis import ServerSide
from loadkit.config import Config
from loadkit.errors import UsageError
from loadkit.prometheus import Workload


def server_side(config: Config, *, prometheus_url: str | None, canary_name: str | None, namespace: str | None,
                baseline: str | None = None, interval_s: float | None = None) -> ServerSide:
    """Options over the config's `prometheus:` section; Prometheus is only contacted by checks that use it."""
    url = prometheus_url or config.prometheus.url
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus {url!r} is not a URL", hint="give Prometheus' base URL, e.g. "
                                                                    "--prometheus http://127.0.0.1:9090")
    name = canary_name or config.prometheus.canary
    ns = namespace or config.prometheus.namespace
    if (name is None) != (ns is None):
        missing = "--namespace" if ns is None else "--canary"
        raise UsageError(f"{missing} is missing: Prometheus checks need both the canary workload and its namespace",
                         hint="e.g. --canary bruno-site --namespace bruno")
    from loadkit.prometheus.source import PrometheusSource

    return ServerSide(
        prometheus=PrometheusSource(url) if url else None,
        workload=Workload(ns, name) if name is not None and ns is not None else None,
        baseline_url=baseline,
        interval_s=interval_s,
        settle_s=config.prometheus.settle,
    )
