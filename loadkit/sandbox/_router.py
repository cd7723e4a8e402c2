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
VirtualService.

Each version's route may carry Istio's `retries:` and `timeout:` (`_spec.RoutePolicy`, off by
default). They work as in Envoy's router, behind the fault filter: an abort is answered before any
try and never retried, a delay waits once before the first try. Then a try that `retryOn` covers
(`_retries.should_retry`) is retried after a jittered back-off, on another pod of the version
when there is one, at most `attempts` times; the last failure is the answer, flagged URX when
retries ran out. The route timeout starts once the request is read and bounds every try and
back-off; each try is also bounded by the per-try timeout:

    504 "upstream request timeout"                          UT  a timeout ran out

Every response that went to routing carries `x-envoy-attempt-count`. Istio's metrics (`_istio`)
get one `reporter="destination"` sample per try, timed from its start (the first: from the
request's arrival, so an injected delay shows) to its answer, the last one until the response is
written; with a route policy, also one `reporter="source"` sample per request, with its final code.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from loadkit.sandbox._faults import ABORT_BODY, ABORT_FLAG, DELAY_FLAG, NO_FAULT, FaultTable
from loadkit.sandbox._istio import IstioMetrics, Reporter, response_flags
from loadkit.sandbox._pods import ReplicaSet
from loadkit.sandbox._retries import RETRY_BUFFER_LIMIT, backoff_s, should_retry
from loadkit.sandbox._routing import Route, choose_route, end_to_end_headers
from loadkit.sandbox._site import HEALTH_PATH
from loadkit.sandbox._spec import NO_RETRIES, RoutePolicy, Version

_CONNECT_ERROR = "upstream connect error or disconnect/reset before headers. reset reason: "
_CONNECT_FAILURE = _CONNECT_ERROR + "connection failure"
_CONNECT_TERMINATION = _CONNECT_ERROR + "connection termination"
_CONNECT_TIMEOUT_S = 2.0
_UPSTREAM_TIMEOUT = "upstream request timeout"
ATTEMPT_COUNT = "x-envoy-attempt-count"


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


@dataclass
class _Try:
    """One try at a pod (or at finding one): what the pod's sidecar records."""

    response: web.Response
    flag: str  # "-", or Envoy's flag for what went wrong: UH, UF, UC, UT; FI for a fault abort
    started: float  # perf_counter; the first try starts when the request arrived
    injected: tuple[str, ...] = ()  # DI on the first try when a delay fault preceded it
    route_timeout: bool = False  # UT from the route's timeout, which is never retried


@dataclass
class _Outcome:
    """What the client gets, and what the client's sidecar records about the request as a whole."""

    last: _Try | None  # the try whose answer is the response; None when time ran out between tries
    response: web.Response
    flags: tuple[str, ...]
    attempts: int  # x-envoy-attempt-count; 0 when no try was made (a fault abort)


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
        policies: Mapping[Version, RoutePolicy] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._replica_sets = replica_sets
        self._istio = istio
        self._session = session
        self._faults = faults if faults is not None else FaultTable()
        self._policies = dict(policies or {})
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
        delayed = (DELAY_FLAG,) if fault.delay_ms else ()
        policy = self._policies.get(route.version, NO_RETRIES)
        if fault.abort_status is not None:  # the fault filter answers before the router tries anything
            abort = _Try(_local_reply(fault.abort_status, ABORT_BODY), ABORT_FLAG, started, delayed)
            outcome = _Outcome(abort, abort.response, (ABORT_FLAG,), attempts=0)
        else:
            outcome = await self._tries(request, route, policy, started, delayed)
        response = outcome.response
        response.headers["X-Served-By"] = route.version.workload
        if outcome.attempts:
            response.headers[ATTEMPT_COUNT] = str(outcome.attempts)
        hung_up = () if await _send(response, request) else ("DC",)  # DC: the client went away
        if outcome.last is not None:
            self._record(route.version, outcome.last, hung_up)
        if policy.active:
            flags = response_flags((*delayed, *outcome.flags, *hung_up))
            duration_ms = (time.perf_counter() - started) * 1000
            self._istio.record(route.version, response.status, flags, duration_ms, Reporter.SOURCE)
        return response

    async def _tries(
        self, request: web.Request, route: Route, policy: RoutePolicy, started: float, delayed: tuple[str, ...]
    ) -> _Outcome:
        """The first try and its retries; every failed try but the last is recorded here."""
        body = await request.read()
        may_retry = len(body) <= RETRY_BUFFER_LIMIT  # any method: the whole body is at hand
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.timeout_s if policy.timeout_s else None
        tried: list[str] = []
        while True:
            pod = self._replica_sets[route.version].pick(avoid=tried)
            injected = () if tried else delayed
            if pod is None or pod.port is None:
                none_left = _Try(_local_reply(503, "no healthy upstream"), "UH", started, injected)
                return _Outcome(none_left, none_left.response, ("UH",), len(tried) + 1)
            tried.append(pod.name)
            attempt = await self._try(request, body, pod.port, route.path, len(tried), policy, deadline)
            attempt.started, attempt.injected = started, injected
            retriable = may_retry and not attempt.route_timeout and should_retry(
                policy, attempt.response.status, attempt.flag
            )
            if not retriable or len(tried) > policy.attempts:
                exhausted = ("URX",) if retriable and policy.attempts else ()
                return _Outcome(attempt, attempt.response, (attempt.flag, *exhausted), len(tried))
            self._record(route.version, attempt)  # a failed try the client never sees
            wait = backoff_s(len(tried), self._rng.random())
            if deadline is not None and loop.time() + wait >= deadline:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                return _Outcome(None, _local_reply(504, _UPSTREAM_TIMEOUT), ("UT",), len(tried))
            await asyncio.sleep(wait)
            started = time.perf_counter()

    async def _try(
        self,
        request: web.Request,
        body: bytes,
        port: int,
        path: str,
        number: int,
        policy: RoutePolicy,
        deadline: float | None,
    ) -> _Try:
        """One forward to a pod, within the per-try timeout and what is left of the route timeout."""
        started = time.perf_counter()
        remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        per_try = policy.per_try_timeout_s
        per_try_bound = per_try is not None and (remaining is None or per_try < remaining)
        timeout = asyncio.timeout(per_try if per_try_bound else remaining)
        try:
            async with timeout:
                response, flag = await self._forward(request, body, port, path, number)
        except TimeoutError:
            if not timeout.expired():
                raise
            return _Try(_local_reply(504, _UPSTREAM_TIMEOUT), "UT", started, route_timeout=not per_try_bound)
        return _Try(response, flag, started)

    def _record(self, version: Version, attempt: _Try, hung_up: tuple[str, ...] = ()) -> None:
        flags = response_flags((*attempt.injected, attempt.flag, *hung_up))
        duration_ms = (time.perf_counter() - attempt.started) * 1000
        self._istio.record(version, attempt.response.status, flags, duration_ms)

    async def _forward(
        self, request: web.Request, body: bytes, port: int, path: str, attempt: int
    ) -> tuple[web.Response, str]:
        headers = [(k, v) for k, v in end_to_end_headers(request.headers.items()) if k.lower() != ATTEMPT_COUNT]
        headers.append((ATTEMPT_COUNT, str(attempt)))  # Istio turns on Envoy's include_request_attempt_count
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


async def _send(response: web.Response, request: web.Request) -> bool:
    """Write the response; False when the client hung up first."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionResetError:
        return False
    return True


def _local_reply(status: int, text: str) -> web.Response:
    """A response Envoy generates itself rather than relaying from a pod."""
    return web.Response(status=status, text=text, headers={"server": "istio-envoy"})
