"""The admin port: what a Prometheus scrape and a curious human need, kept off the traffic port.

    GET /metrics   the router's Istio metrics plus every pod's app metrics, one exposition
    GET /healthz   200 "ok" while the supervisor runs
    GET /sandbox   JSON status (`models.SandboxInfo` with live pod fields and active faults)
    /faults, /pods chaos endpoints (router faults, pod kills), served by `_chaos.ChaosApi`

Pods are scraped concurrently on every `/metrics` request, the way Prometheus would scrape each
pod, and merged. A pod that is down or restarting is reported by `loadkit_sandbox_pod_up 0` and
otherwise left out, so one dead pod never fails the whole scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from loadkit.sandbox._chaos import ChaosApi
from loadkit.sandbox._istio import IstioMetrics
from loadkit.sandbox._merge import merge_families, parse_exposition, render_exposition
from loadkit.sandbox._pods import Pod, ReplicaSet
from loadkit.sandbox._site import METRICS_PATH
from loadkit.sandbox._spec import Version
from loadkit.sandbox.models import SandboxInfo

_SCRAPE_TIMEOUT_S = 2.0
_EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AdminApi:
    """Serves the admin endpoints. Example: `web.AppRunner(AdminApi(...).app())`."""

    def __init__(
        self,
        *,
        istio: IstioMetrics,
        replica_sets: dict[Version, ReplicaSet],
        session: aiohttp.ClientSession,
        status: Callable[[], SandboxInfo],
        chaos: ChaosApi | None = None,
    ) -> None:
        self._istio = istio
        self._replica_sets = replica_sets
        self._session = session
        self._status = status
        self._chaos = chaos

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/sandbox", self.sandbox),
            ]
        )
        if self._chaos is not None:
            app.add_routes(self._chaos.routes())
            app.on_cleanup.append(self._chaos.close)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def sandbox(self, request: web.Request) -> web.Response:
        return web.json_response(self._status().status())

    async def metrics(self, request: web.Request) -> web.Response:
        pods = [pod for rs in self._replica_sets.values() for pod in rs.pods]
        scraped = await asyncio.gather(*(self._scrape(pod) for pod in pods))
        up = GaugeMetricFamily(
            "loadkit_sandbox_pod_up",
            "1 if the sandbox could scrape the pod's app metrics, else 0.",
            labels=["namespace", "workload", "pod"],
        )
        sources: list[list[Metric]] = [list(self._istio.registry.collect())]
        for pod, families in zip(pods, scraped, strict=True):
            labels = [pod.identity.namespace, pod.identity.workload, pod.name]
            up.add_metric(labels, 0 if families is None else 1)
            if families is not None:
                sources.append(families)
        sources.append([up])
        body = render_exposition(merge_families(sources))
        return web.Response(body=body, headers={"Content-Type": _EXPOSITION_TYPE})

    async def _scrape(self, pod: Pod) -> list[Metric] | None:
        if not pod.alive or pod.port is None:
            return None
        url = f"http://127.0.0.1:{pod.port}{METRICS_PATH}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT_S)) as resp:
                resp.raise_for_status()
                text = await resp.text()
            return parse_exposition(text)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
