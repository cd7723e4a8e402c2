"""The supervisor: one asyncio loop running the pods, the router and the admin API.

`run_sandbox` binds both ports first (so "port in use" fails fast, before any pod starts), starts
every pod in parallel, reports readiness through `on_ready`, then serves until SIGINT or SIGTERM.
Shutdown is orderly: stop accepting traffic, then stop every pod (SIGTERM, then SIGKILL).

The CLI installs a SIGTERM handler that raises `Interrupted`; an exception raised inside a running
event loop would skip that order, so while the loop runs the loop's own handlers take over both
signals, and the previous handlers are put back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import disable_created_metrics

from loadkit.errors import EXIT_INTERRUPTED, EXIT_PASS, UsageError
from loadkit.sandbox import _deps, _hostfaults
from loadkit.sandbox._admin import AdminApi
from loadkit.sandbox._chaos import ChaosApi, fault_infos
from loadkit.sandbox._faults import Dependency, FaultTable
from loadkit.sandbox._istio import IstioMetrics
from loadkit.sandbox._pods import Log, ReplicaSet
from loadkit.sandbox._router import Router, create_upstream_session
from loadkit.sandbox._spec import SandboxConfig, Version
from loadkit.sandbox.models import PodInfo, RetriesInfo, SandboxInfo, WorkloadInfo

_SHUTDOWN_GRACE_S = 1.0
_BACKLOG = 1024  # load tests open many connections at once
_PARENT_POLL_S = 0.5


def bind(host: str, port: int, option: str) -> socket.socket:
    """Listen on host:port now, turning "address in use" into a UsageError that names `option`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"{option} {port}: {host}:{port} is already in use",
                hint=f"stop whatever listens there, pass another {option}, or use --port 0 for free ports",
            ) from exc
        raise UsageError(
            f"{option} {port}: cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="check --host (an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)",
        ) from exc


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # reachable locally; print an address a browser can open
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Sandbox:
    """The running stack. `await start()`, read `info()`, then always `await close()`."""

    def __init__(self, config: SandboxConfig, log: Log) -> None:
        self.config = config
        self._log = log
        self.istio = IstioMetrics(config.namespace)
        self.faults = FaultTable()
        self.replica_sets = {
            spec.version: ReplicaSet(spec, config.namespace, log) for spec in config.versions
        }
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._state_dir = None if not config.dependencies else _deps.make_state_dir()
        self._database: _deps.Postgres | None = None
        self.proxies: dict[tuple[Version, Dependency], _deps.DependencyProxy] = {}
        self.dependencies_note = "start it with `loadkit sandbox up --deps`"
        self.traffic_url = ""
        self.admin_url = ""

    async def start(self) -> None:
        config = self.config
        traffic_sock = bind(config.host, config.port, "--port")
        try:
            admin_sock = bind(config.host, config.resolved_admin_port, "--admin-port")
        except UsageError:
            traffic_sock.close()
            raise
        self.traffic_url, self.admin_url = _url(traffic_sock), _url(admin_sock)
        self._session = create_upstream_session()
        router = Router(
            self.replica_sets,
            self.istio,
            self._session,
            canary_weight=config.canary_weight,
            faults=self.faults,
            policies={spec.version: spec.route for spec in config.versions},
        )
        for left in _hostfaults.reap():
            self._log(f"removed a dead sandbox's leftover fault: {left}")
        host = _hostfaults.HostFaults(self.replica_sets, self.proxies, self.dependencies_note)
        admin = AdminApi(
            istio=self.istio,
            replica_sets=self.replica_sets,
            session=self._session,
            status=lambda: self.info(live=True),
            chaos=ChaosApi(faults=self.faults, replica_sets=self.replica_sets, log=self._log, host=host),
        )
        await self._serve(router.app(), traffic_sock)
        await self._serve(admin.app(), admin_sock)
        if self._state_dir is not None:
            await self._start_dependencies(self._state_dir)
        self._log(f"starting {self.pod_count} pods")
        replica_sets = self.replica_sets.values()
        outcomes = await asyncio.gather(*(rs.start() for rs in replica_sets), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _start_dependencies(self, state_dir: Path) -> None:
        """The database (when PostgreSQL is installed) and the shipping service, each behind a proxy per
        version; the pods get the proxies' ports."""
        upstream: dict[Dependency, int] = {}
        missing = _deps.Postgres.missing()
        if missing:
            self.dependencies_note = f"{missing}; the app runs without it (its stock pages answer 503)"
            self._log(f"database: {self.dependencies_note}")
        else:
            self._database = _deps.Postgres(state_dir, self._log)
            upstream[Dependency.DATABASE] = await self._database.start()
        shipping = bind("127.0.0.1", 0, "--deps")
        upstream[Dependency.EXTERNAL] = int(shipping.getsockname()[1])
        await self._serve(_deps.shipping_app(), shipping)
        self._log(f"external service: shipping on 127.0.0.1:{upstream[Dependency.EXTERNAL]}")
        flags = {Dependency.DATABASE: "--db-port", Dependency.EXTERNAL: "--external-port"}
        for version, rs in self.replica_sets.items():
            for dependency, port in upstream.items():
                proxy = _deps.DependencyProxy(f"{dependency.value}", port)
                self.proxies[(version, dependency)] = proxy
                proxy_port = await proxy.start()
                for pod in rs.pods:
                    pod.argv += [flags[dependency], str(proxy_port)]

    @property
    def pod_count(self) -> int:
        return sum(len(rs.pods) for rs in self.replica_sets.values())

    async def _serve(self, app: web.Application, sock: socket.socket) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_S)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock, backlog=_BACKLOG).start()

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._session is not None:  # first, so pods see no open keep-alive connections to drain
            await self._session.close()
        await asyncio.gather(*(rs.stop() for rs in self.replica_sets.values()))
        for proxy in self.proxies.values():
            await proxy.close()
        if self._database is not None:
            await self._database.stop()
        if self._state_dir is not None:
            _deps.remove_state_dir(self._state_dir)

    def info(self, *, live: bool) -> SandboxInfo:
        """What runs where and how it is routed; `live` adds each pod's alive flag and restart count,
        and the faults."""
        workloads = {
            version: WorkloadInfo(
                name=version.workload,
                error_rate=rs.spec.error_rate,
                latency_ms=rs.spec.latency_ms,
                pods=[
                    PodInfo(
                        name=pod.name,
                        port=pod.port,
                        pid=pod.pid,
                        alive=pod.alive if live else None,
                        restarts=pod.restarts if live else None,
                    )
                    for pod in rs.pods
                ],
                retries=RetriesInfo.of(rs.spec.route),
                timeout_s=rs.spec.route.timeout_s,
            )
            for version, rs in self.replica_sets.items()
        }
        return SandboxInfo(
            traffic_url=self.traffic_url,
            admin_url=self.admin_url,
            metrics_url=f"{self.admin_url}/metrics",
            namespace=self.config.namespace,
            canary_weight=self.config.canary_weight,
            workloads=workloads,
            faults=fault_infos(self.faults) if live else None,
        )


class _StopSignals:
    """Turns the first SIGINT/SIGTERM into an event; later ones are ignored while we shut down."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.received: signal.Signals | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)  # this resets to SIG_DFL, not to the previous handler
                if handler is not None:  # None: installed outside Python, nothing we can restore
                    signal.signal(sig, handler)

    def stop(self, sig: signal.Signals) -> None:
        self._on_signal(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig
            self.event.set()


async def _until_started_or_signalled(start: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """Wait for startup; False if a signal came first (startup is then cancelled)."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not start.done():
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        return False
    start.result()  # re-raises a startup error (port in use, pod failed to start)
    return True


async def run_sandbox(config: SandboxConfig, *, on_ready: Callable[[SandboxInfo], None], log: Log,
                      parent_pid: int | None = None) -> int:
    """Run until SIGINT (returns 130) or SIGTERM (returns 0); startup errors raise LoadkitError.
    With `parent_pid` it also stops when that process is gone (its parent changes): a sandbox
    started by `loadkit demo` or a test never outlives them, even after a SIGKILL."""
    disable_created_metrics()  # `_created` series only add noise to the merged exposition
    sandbox = Sandbox(config, log)
    with _StopSignals().installed() as signals:
        watch = asyncio.create_task(_watch_parent(parent_pid, signals, log)) if parent_pid else None
        try:
            if await _until_started_or_signalled(asyncio.create_task(sandbox.start()), signals.event):
                on_ready(sandbox.info(live=False))
                await signals.event.wait()
        finally:
            if watch is not None:
                watch.cancel()
            if signals.received is not None:
                log(f"stopping ({signals.received.name}): router, admin API and {sandbox.pod_count} pods")
            await sandbox.close()
    return EXIT_INTERRUPTED if signals.received == signal.SIGINT else EXIT_PASS


async def _watch_parent(parent_pid: int, signals: _StopSignals, log: Log) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(_PARENT_POLL_S)
    log(f"the process that started the sandbox ({parent_pid}) is gone")
    signals.stop(signal.SIGTERM)
