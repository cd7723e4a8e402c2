"""The router: an aiohttp reverse proxy standing in for the Istio ingress and sidecars.

It picks a version with `_routing.choose_route`, a pod of that version round-robin, forwards the
request over a pooled session and answers with the pod's status, headers and body. When no pod
can take the request it answers the way Envoy does, so clients and scorecards see the same
failures they would in a mesh:

    503 "no healthy upstream"                       flag UH  the version has no ready pod
    503 "upstream connect error ... connection failure"       UF  connect refused / timed out
    503 "upstream connect error ... connection termination"   UC  the pod dropped the connection
    (whatever status was being sent)                          DC  the client hung up first

Faults from the admin API (`_faults.FaultTable`, Istio's `fault.delay` / `fault.abort`) apply after
the routing decision, to the chosen version's requests only: delays first, then aborts, which
Envoy answers itself without contacting a pod:

    (the fault's http_status) "fault filter abort"           FI  an abort fault hit
    (whatever the request got, after delay_ms)                DI  a delay fault hit

Probes (`/healthz`, also as `/canary/healthz`) are never faulted, as kubelet probes bypass the
VirtualService. Every request is recorded in Istio's metrics (`_istio`), timed from the moment the
router received it until the response is written, so an injected delay shows in the histogram.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from loadkit.sandbox._faults import ABORT_BODY, NO_FAULT, FaultTable
from loadkit.sandbox._istio import IstioMetrics, response_flags
from loadkit.sandbox._pods import ReplicaSet
from loadkit.sandbox._routing import Route, choose_route, end_to_end_headers
from loadkit.sandbox._site import HEALTH_PATH
from loadkit.sandbox._spec import Version

_CONNECT_ERROR = "upstream connect error or disconnect/reset before headers. reset reason: "
_CONNECT_FAILURE = _CONNECT_ERROR + "connection failure"
_CONNECT_TERMINATION = _CONNECT_ERROR + "connection termination"
_CONNECT_TIMEOUT_S = 2.0


def create_upstream_session() -> aiohttp.ClientSession:
    """A pooled client session that forwards exactly what the client sent, and nothing else."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        # No total timeout: Istio has no default route timeout, and injected latency may be long.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT_S),
        auto_decompress=False,  # pass encoded bodies through untouched
        cookie_jar=aiohttp.DummyCookieJar(),  # a shared jar would leak one user's cart to the next
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


class Router:
    """Routes traffic like the users' VirtualService. Example: `web.Application` from `router.app()`."""

    def __init__(
        self,
        replica_sets: dict[Version, ReplicaSet],
        istio: IstioMetrics,
        session: aiohttp.ClientSession,
        *,
        canary_weight: int,
        faults: FaultTable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._replica_sets = replica_sets
        self._istio = istio
        self._session = session
        self._faults = faults if faults is not None else FaultTable()
        self.canary_weight = canary_weight
        self._rng = rng or random.Random()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        route = choose_route(request.raw_path, request.headers, self.canary_weight, self._rng.random() * 100)
        is_probe = route.path.partition("?")[0] == HEALTH_PATH
        fault = NO_FAULT if is_probe else self._faults.decide(route.version)
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.abort_status is not None:
            response, flag = _local_reply(fault.abort_status, ABORT_BODY), "-"
        else:
            response, flag = await self._upstream(request, route)
        response.headers["X-Served-By"] = route.version.workload
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionResetError:
            flag = "DC"  # Envoy's "downstream connection termination": the client went away
        flags = response_flags((*fault.flags, flag))
        self._istio.record(route.version, response.status, flags, (time.perf_counter() - started) * 1000)
        return response

    async def _upstream(self, request: web.Request, route: Route) -> tuple[web.Response, str]:
        pod = self._replica_sets[route.version].pick()
        if pod is None or pod.port is None:
            return _local_reply(503, "no healthy upstream"), "UH"
        return await self._forward(request, pod.port, route.path)

    async def _forward(self, request: web.Request, port: int, path: str) -> tuple[web.Response, str]:
        body = await request.read()
        headers = end_to_end_headers(request.headers.items())
        if request.remote:
            headers.append(("X-Forwarded-For", request.remote))
        url = URL(f"http://127.0.0.1:{port}{path}", encoded=True)
        sent = time.perf_counter()
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
        except (aiohttp.ClientConnectorError, TimeoutError):
            return _local_reply(503, _CONNECT_FAILURE), "UF"
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            return _local_reply(503, _CONNECT_TERMINATION), "UC"
        response_headers = CIMultiDict(end_to_end_headers(upstream.headers.items()))
        response_headers["x-envoy-upstream-service-time"] = str(round((time.perf_counter() - sent) * 1000))
        response = web.Response(
            status=upstream.status, reason=upstream.reason, body=payload, headers=response_headers
        )
        return response, "-"


def _local_reply(status: int, text: str) -> web.Response:
    """A response Envoy generates itself rather than relaying from a pod."""
    return web.Response(status=status, text=text, headers={"server": "istio-envoy"})
