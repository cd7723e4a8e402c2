"""Prometheus metrics of the webhook, read from the store and the running runs at scrape time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loadkit.webhook.runs import RunManager
from loadkit.webhook.store import Store


class WebhookMetrics(Collector):
    def __init__(self, store: Store, manager: RunManager) -> None:
        self.store = store
        self.manager = manager
        self._answers: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def hook_answered(self, kind: str, status: int) -> None:
        with self._lock:
            key = (kind, str(status))
            self._answers[key] = self._answers.get(key, 0) + 1

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("loadkit_runs", "Load runs by status and verdict.", labels=["status", "verdict"])
        for (status, verdict), count in sorted(self.store.verdict_counts().items()):
            runs.add_metric([status, verdict], count)
        yield runs
        active = self.manager.active_runs()
        yield GaugeMetricFamily("loadkit_active_runs", "Load runs going now.", value=len(active))
        score = GaugeMetricFamily("loadkit_last_score", "Score (0-100) of the latest finished run per canary.",
                                  labels=["namespace", "name"])
        for namespace, name, value in self.store.latest_scores():
            score.add_metric([namespace, name], value)
        yield score
        rps = GaugeMetricFamily("loadkit_live_rps", "Requests per second of running runs (last second).",
                                labels=["namespace", "name", "profile"])
        p99 = GaugeMetricFamily("loadkit_live_p99_ms", "p99 latency of running runs (last second), ms.",
                                labels=["namespace", "name", "profile"])
        for run in active:
            if run.live is not None and run.live.snapshot is not None:
                window = run.live.snapshot.window
                labels = [run.namespace, run.name, run.profile]
                rps.add_metric(labels, window.rps)
                if window.p99_ms is not None:
                    p99.add_metric(labels, window.p99_ms)
        yield rps
        yield p99
        answers = CounterMetricFamily("loadkit_hook_answers", "Hook calls answered, by kind and HTTP status.",
                                      labels=["kind", "code"])
        with self._lock:
            for (kind, code), count in sorted(self._answers.items()):
                answers.add_metric([kind, code], count)
        yield answers
