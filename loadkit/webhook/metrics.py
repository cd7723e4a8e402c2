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
        runs = CounterMetricFamily("loadkit_runs", "Load runs that ended, by status and verdict (verdict only when "
                                   "judged).", labels=["status", "verdict"])
        for (status, verdict), count in sorted(self.store.verdict_counts().items()):
            runs.add_metric([status, verdict], count)
        yield runs
        analyses = CounterMetricFamily("loadkit_analyses", "Flagger analyses that closed, by outcome.",
                                       labels=["outcome"])
        for outcome, count in sorted(self.store.analysis_counts().items()):
            analyses.add_metric([outcome], count)
        yield analyses
        opened = GaugeMetricFamily("loadkit_open_analyses", "Flagger analyses open now, per canary.",
                                   labels=["namespace", "name", "analysis", "checksum"])
        for analysis in self.store.open_analyses():
            opened.add_metric([analysis.namespace, analysis.name, analysis.id, analysis.checksum], 1)
        yield opened
        gates = GaugeMetricFamily("loadkit_gate", "Manual gates set now (1), by hook and state; analysis '' is the "
                                  "next rollout.", labels=["namespace", "name", "analysis", "hook", "state"])
        for gate in self.store.open_gates():
            gates.add_metric([gate.namespace, gate.name, gate.analysis, gate.hook, gate.state.value], 1)
        yield gates
        yield from self._live()
        answers = CounterMetricFamily("loadkit_hook_answers", "Hook calls answered, by kind and HTTP status.",
                                      labels=["kind", "code"])
        with self._lock:
            for (kind, code), count in sorted(self._answers.items()):
                answers.add_metric([kind, code], count)
        yield answers

    def _live(self) -> Iterator[Metric]:
        active = self.manager.active_runs()
        yield GaugeMetricFamily("loadkit_active_runs", "Load runs going now.", value=len(active))
        score = GaugeMetricFamily("loadkit_last_score", "Score (0-100) of the latest judged run per canary.",
                                  labels=["namespace", "name"])
        for namespace, name, value in self.store.latest_scores():
            score.add_metric([namespace, name], value)
        yield score
        labels = ["namespace", "name", "analysis", "hook", "profile", "run"]
        rps = GaugeMetricFamily("loadkit_live_rps", "Requests per second of running runs (last second).", labels=labels)
        p99 = GaugeMetricFamily("loadkit_live_p99_ms", "p99 latency of running runs (last second), ms.", labels=labels)
        errors = GaugeMetricFamily("loadkit_live_error_rate_pct", "Error rate of running runs (last second), %.",
                                   labels=labels)
        for run in active:
            if run.live is not None and run.live.snapshot is not None:
                window = run.live.snapshot.window
                values = [run.namespace, run.name, run.analysis, run.hook.value, run.profile, run.id]
                rps.add_metric(values, window.rps)
                if window.p99_ms is not None:
                    p99.add_metric(values, window.p99_ms)
                if window.error_rate_pct is not None:
                    errors.add_metric(values, window.error_rate_pct)
        yield rps
        yield p99
        yield errors
