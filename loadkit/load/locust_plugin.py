"""loadkit's Locust plugin: Locust loads it beside the user's locustfile.

    locust -f .../loadkit/load/locust_plugin.py,locustfiles/website.py --headless -H URL

Only the Locust child process imports this module (it imports locust, which monkey-patches the
whole process with gevent). Like every Locust plugin it registers its listeners at import time.
It is driven by two environment variables set by `loadkit.load.runner`:

- LOADKIT_PLAN      JSON: {"stages": [{duration_s, users, spawn_rate}], "headers": {...},
                    "processes": N, "pin_to_target": bool}
- LOADKIT_STATS_FD  a pipe to the parent; the master (or the only process) writes one JSON line
                    per second: {"type": "snapshot", ...}, and {"type": "end", ...} at the end.

Workers (with --processes) send their windows to the master as "loadkit_window" messages.
With "pin_to_target" every process refuses TCP connections outside the target's origin (_OriginGuard).

Distributed runs (`loadkit run --workers N`, `loadkit worker --master HOST:PORT`): a worker started
with LOADKIT_WORKER=1 has no plan of its own. It refuses every TCP connection until the master has
sent it one: it says "loadkit_hello" with its loadkit version, the master answers "loadkit_plan" (or
"loadkit_refused" for another version), and the master's shape holds the users back until every
expected worker holds the plan. The master tracks its workers (`_Workers`): one that goes missing
(no heartbeat) or leaves before the end is reported as {"type": "worker", "event": "lost", ...}; at
the end it asks every live worker to stop and waits for each one's final window before finishing.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import psutil
from locust import LoadTestShape, events
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, Runner, WorkerRunner

from loadkit import __version__
from loadkit.load._distributed import HELLO as _HELLO
from loadkit.load._distributed import PLAN as _PLAN_MESSAGE
from loadkit.load._distributed import REFUSED as _REFUSED
from loadkit.load._distributed import STOP as _STOP
from loadkit.load._distributed import Workers
from loadkit.load._window import REFUSED_MARKER, Window, endpoint_rows
from loadkit.load.shapes import Stage, tick

_PLAN: dict[str, Any] = json.loads(os.environ.get("LOADKIT_PLAN") or "{}")
_STAGES = [Stage(**s) for s in _PLAN.get("stages", [])]
_GATE: Workers | None = None  # the master's workers, in a distributed run
_MESSAGE = "loadkit_window"
_MASTER_SILENCE_S = 10.0  # a worker that hears no heartbeat from its master this long stops loading
_FINAL_WAIT_S = 10.0  # at the end, the master waits this long (beyond --stop-timeout) for final windows
_INTERVAL_S = 1.0
_RESOLVE_EVERY_S = 5.0  # a refused destination re-resolves the target at most this often (Service DNS moves)
_REFUSALS_LOGGED = 20  # distinct refused destinations named in the Locust log; the error table counts them all
logger = logging.getLogger("loadkit")


class LoadkitShape(LoadTestShape):
    """The profile's stages, from LOADKIT_PLAN."""

    def tick(self) -> tuple[int, float] | None:
        if _GATE is not None and not _GATE.opened:
            # Distributed: no users before every expected worker holds the plan; the profile's
            # clock starts when they do.
            if not _GATE.wait():
                return None
            self.reset_time()
        return tick(_STAGES, self.get_run_time())


_V4_MAPPED = bytes(10) + b"\xff\xff"


def _ip(host: Any) -> bytes | None:
    """An IP literal packed (no scope id, IPv4-mapped IPv6 as IPv4); None for a name.

    inet_pton, not the ipaddress module: the same answer at a tenth of the cost, per connection.
    """
    if not isinstance(host, str):
        return None
    host = host.partition("%")[0]
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


def _host_port(host: Any, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _Connections:
    """gevent's socket class, patched once: `policy` (None: allow) sees every new TCP connection.

    Locust has monkey-patched the process by now, so every client socket is gevent's socket class:
    FastHttpUser's (geventhttpclient), HttpUser's (requests/urllib3) and a locustfile's own. The
    patch wraps that class's connect and connect_ex, so a refused destination fails before a byte
    is sent, whichever client. Clients pool connections: this runs once per new connection, never
    per request. ZeroMQ (the master/worker link) has sockets of its own and is not affected.
    """

    _installed: _Connections | None = None

    def __init__(self) -> None:
        self.policy: Any = None

    @classmethod
    def get(cls) -> _Connections:
        if cls._installed is None:
            cls._installed = cls()
            cls._installed._patch()
        return cls._installed

    def _patch(self) -> None:
        cls = socket.socket  # gevent's class, patched in by Locust; SSL sockets call its connect too
        connect, connect_ex = cls.connect, cls.connect_ex

        def check(sock: Any, address: Any) -> Any:
            return address if self.policy is None else self.policy(sock, address)

        def guarded_connect(sock: Any, address: Any) -> None:
            connect(sock, check(sock, address))

        def guarded_connect_ex(sock: Any, address: Any) -> int:
            try:
                address = check(sock, address)
            except ConnectionRefusedError:
                return errno.ECONNREFUSED
            return int(connect_ex(sock, address))

        setattr(cls, "connect", guarded_connect)  # noqa: B010 - mypy rejects assigning a method
        setattr(cls, "connect_ex", guarded_connect_ex)  # noqa: B010


def _refuse_until_planned(sock: Any, address: Any) -> Any:
    """A worker's policy until its master's plan arrives: no load goes anywhere without a plan."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type == socket.SOCK_DGRAM:
        return address
    raise ConnectionRefusedError(f"{REFUSED_MARKER}: this loadkit worker has no plan from its master yet")


class _OriginGuard:
    """Refuses every TCP connection but those to the target's origin (the plan's pin_to_target),
    through `_Connections`: a redirect or an absolute URL to another host or port fails before a
    byte is sent. It stops mistakes, not a hostile locustfile.
    """

    def __init__(self, host: str) -> None:
        url = urlsplit(host)
        if not url.hostname:
            raise ValueError(f"pin_to_target needs a target with a host, not {host!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.target = _host_port(self.host, self.port)
        self.allowed: frozenset[tuple[bytes, int]] = frozenset()
        self.resolved_at = -math.inf
        self.resolving: gevent.event.Event | None = None
        self.logged: set[str] = set()

    def install(self) -> None:
        _Connections.get().policy = self.check

    def check(self, sock: Any, address: Any) -> Any:
        """The address to connect to, or ConnectionRefusedError when it is outside the target."""
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type != socket.SOCK_DGRAM
        if not inet or not isinstance(address, tuple):
            return address  # Unix sockets, UDP (DNS): not where load goes
        ip = _ip(address[0])
        if ip is None:
            # A name: resolve it here (as gevent would) and connect to what was checked.
            address = socket.getaddrinfo(address[0], address[1], sock.family, socket.SOCK_STREAM)[0][4]
            ip = _ip(address[0])
        dest = (ip, address[1])
        if dest in self.allowed or (self._resolve() and dest in self.allowed):
            return address
        where = _host_port(address[0], address[1])
        if where not in self.logged and len(self.logged) < _REFUSALS_LOGGED:
            self.logged.add(where)
            logger.warning("loadkit: refusing connections to %s: outside the target %s", where, self.target)
        if not self.allowed:
            raise ConnectionRefusedError(f"{REFUSED_MARKER} to {where}: the target {self.target} "
                                         "did not resolve, so where it may go is unknown")
        raise ConnectionRefusedError(f"{REFUSED_MARKER} to {where}: outside the target {self.target} "
                                     "(a redirect or an absolute URL left the allowed target)")

    def _resolve(self) -> bool:
        """Refresh the target's addresses, unless done within the last few seconds."""
        if self.resolving is not None:
            # getaddrinfo yields to other greenlets: their misses wait for its answer (the first
            # connections of a run all miss), rather than be refused against the old addresses.
            self.resolving.wait()
            return True
        if time.monotonic() - self.resolved_at < _RESOLVE_EVERY_S:
            return False
        self.resolving = gevent.event.Event()
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
            self.allowed = frozenset((ip, self.port) for *_, addr in infos if (ip := _ip(addr[0])) is not None)
        except OSError as exc:
            logger.warning("loadkit: cannot resolve the target %s (%s); keeping its last addresses", self.target, exc)
        finally:
            self.resolved_at = time.monotonic()
            done, self.resolving = self.resolving, None
            done.set()
        return True


class _Process:
    """What one Locust process collects: its current window, CPU and event-loop lag."""

    def __init__(self) -> None:
        self.window = Window()
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)
        self.lag_ms = 0.0

    def listen(self, environment: Environment) -> None:
        """Record every request exactly, replacing Locust's own (rounded) request statistics.

        loadkit reports only its own numbers, so Locust's per-request bookkeeping would be pure
        overhead on the generator's CPU; dropping it keeps a loadkit run as fast as plain Locust.
        """
        handlers = environment.events.request._handlers
        for handler in list(handlers):
            if getattr(handler, "__qualname__", "") == "Runner.__init__.<locals>.on_request":
                environment.events.request.remove_listener(handler)
        environment.events.request.add_listener(self.window.on_locust_request)
        environment.events.user_error.add_listener(self.window.on_locust_user_error)

    def drain(self) -> tuple[Window, float, float]:
        lag, self.lag_ms = self.lag_ms, 0.0
        return self.window.take(), self.proc.cpu_percent(None), lag

    def sleep_measuring_lag(self, seconds: float) -> None:
        started = time.perf_counter()
        gevent.sleep(seconds)
        late_ms = (time.perf_counter() - started - seconds) * 1000.0
        self.lag_ms = max(self.lag_ms, late_ms)


class _Collector:
    """In the master (or the only process): merge windows, write snapshots to the parent."""

    def __init__(self, runner: Runner, out: Any, local: _Process | None) -> None:
        self.runner = runner
        self.out = out
        self.local = local
        self.pending = Window()
        self.total = Window()
        self.cpu: dict[str, float] = {}
        self.lag_ms = 0.0
        self.started: float | None = None
        self.stopping: float | None = None
        self.last_emit = time.monotonic()
        self.ended = False
        self.workers: Workers | None = None

    def on_worker_window(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data = msg.data
        window = Window.from_wire(data["window"])
        self.pending.merge(window)
        node = str(msg.node_id)
        if self.workers is not None:
            self.workers.on_window(node, window.requests, bool(data.get("final")))
            if self.workers.nodes.get(node) is not None and self.workers.nodes[node].lost:
                return  # a lost worker heard from again: its requests count, its CPU no longer does
        self.cpu[node] = float(data["cpu"])
        self.lag_ms = max(self.lag_ms, float(data["lag_ms"]))

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def loop(self) -> None:
        while not self.ended:
            if self.local is not None:
                self.local.sleep_measuring_lag(_INTERVAL_S)
            else:
                gevent.sleep(_INTERVAL_S)
            if self.workers is not None:
                self.workers.check()
            self.emit_snapshot()

    def emit_snapshot(self) -> None:
        if self.local is not None:
            window, cpu, lag = self.local.drain()
            self.pending.merge(window)
            self.cpu["local"] = cpu
            self.lag_ms = max(self.lag_ms, lag)
        now = time.monotonic()
        window, self.pending = self.pending, Window()
        self.total.merge(window)
        elapsed = now - (self.started or now)
        # Load runs from the first users until Locust starts stopping (planned end or interrupt);
        # the shutdown after that must not dilute the rate.
        active = (self.stopping or now) - (self.started or now)
        span, self.last_emit = now - self.last_emit, now
        self.write({
            "type": "snapshot",
            "elapsed_s": round(elapsed, 3),
            "users": self.runner.user_count,
            **({"workers": sum(not n.lost for n in self.workers.nodes.values())} if self.workers else {}),
            "cpu_pct": max(self.cpu.values(), default=0.0),
            "lag_ms": round(self.lag_ms, 1),
            "window": window.summary(span),
            "window_histogram": window.encoded_histogram(),
            "cumulative": self.total.summary(active),
        })
        self.lag_ms = 0.0

    def finish(self, reason: str) -> None:
        if self.ended:
            return
        self.emit_snapshot()
        self.ended = True
        self.write({
            "type": "end",
            "reason": reason,
            "histogram": self.total.encoded_histogram(),
            "endpoints": endpoint_rows(self.total.endpoints),
            "errors": sorted(([m, c] for m, c in self.total.errors.items()), key=lambda e: -e[1]),
        })
        self.out.close()

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(record) + "\n")
        except (BrokenPipeError, ValueError):
            self.ended = True  # the parent is gone; nothing left to report to


def _orphaned(parent: int | None) -> bool:
    return parent is not None and os.getppid() != parent


def _master_silent(runner: Runner) -> bool:
    heard = getattr(runner, "last_heartbeat_timestamp", None) if isinstance(runner, WorkerRunner) else None
    return heard is not None and time.time() - heard > _MASTER_SILENCE_S


def _watchdog(runner: Runner, parent: int | None) -> None:
    """Stop loading when whoever this process loads for is gone.

    Locust runs in its own session, so a parent killed with SIGKILL leaves it behind; a worker's
    master may vanish the same way (Locust itself waits 60 s). Stop the way the parent would have
    asked (SIGINT: an orderly quit), and if that hangs, exit: no orphan keeps loading the target.
    """
    while not (_orphaned(parent) or _master_silent(runner)):
        gevent.sleep(_INTERVAL_S)
    who = "process that started this one" if _orphaned(parent) else "master (no heartbeat)"
    logger.warning("loadkit: the %s is gone; stopping", who)
    os.kill(os.getpid(), signal.SIGINT)
    gevent.sleep(_FINAL_WAIT_S)
    os._exit(3)


def _configure(environment: Environment, plan: dict[str, Any], target: str | None) -> None:
    """What every loadkit process applies before its first request: pinning and headers."""
    if plan.get("pin_to_target") is True:
        _OriginGuard(target or environment.host or "").install()
    if plan.get("headers"):
        _apply_headers(environment, plan["headers"])


def _apply_headers(environment: Environment, headers: dict[str, str]) -> None:
    """Send the profile's headers (e.g. x-canary: insider) with every request of every user."""
    for user_class in environment.user_classes:
        if issubclass(user_class, FastHttpUser):
            user_class.default_headers = {**(user_class.default_headers or {}), **headers}
        elif hasattr(user_class, "client") or "HttpUser" in {c.__name__ for c in user_class.__mro__}:
            _wrap_http_user(user_class, headers)
        else:
            logger.warning("loadkit: %s is not an HTTP user; headers are not applied", user_class.__name__)


def _wrap_http_user(user_class: type, headers: dict[str, str]) -> None:
    """HttpUser builds its requests session in __init__; add the headers right after."""
    original: Any = getattr(user_class, "__init__")  # noqa: B009 - mypy rejects reading __init__ here

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.client.headers.update(headers)

    setattr(user_class, "__init__", __init__)  # noqa: B010 - mypy rejects assigning __init__


@events.init.add_listener
def _on_init(environment: Environment, runner: Runner, **_kw: Any) -> None:
    remote = isinstance(runner, WorkerRunner) and os.environ.get("LOADKIT_WORKER") == "1"
    if not _PLAN and not remote:
        return  # loaded without loadkit (plain `locust -f`): stay out of the way
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started from a background job (`loadkit run ... &`) SIGINT arrives ignored, but it is how
        # loadkit asks Locust for an orderly stop: restore Python's KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # The parent to outlive: loadkit (LOADKIT_PARENT_PID), or for a worker forked by --processes its master.
    forked = isinstance(runner, WorkerRunner) and not remote
    parent = os.getppid() if forked else int(os.environ.get("LOADKIT_PARENT_PID") or 0) or None
    gevent.spawn(_watchdog, runner, parent)
    logger.warning("loadkit: Locust's own request statistics are replaced by loadkit's exact ones; "
                "Locust's summary below shows none")
    if remote:
        assert isinstance(runner, WorkerRunner)
        _start_planned_worker(environment, runner)
        return
    # Every process runs this (--processes forks the workers before Locust fires init).
    _configure(environment, _PLAN, environment.host)
    notes = []
    shapes = getattr(environment, "available_shape_classes", None) or {}
    if len(shapes) > 1:
        others = ", ".join(n for n in shapes if n != "LoadkitShape")
        notes.append(f"the locustfile's own load shape ({others}) was ignored: the profile's stages ran")
    if isinstance(runner, WorkerRunner):
        _start_worker(environment, runner)
    else:
        _start_collector(environment, runner, notes)


def _start_planned_worker(environment: Environment, runner: WorkerRunner) -> None:
    """A worker of a distributed run: nothing leaves it until its master's plan arrives."""
    _Connections.get().policy = _refuse_until_planned
    planned: list[dict[str, Any]] = []

    def on_plan(environment: Environment, msg: Any, **_kw: Any) -> None:
        if planned:
            return  # sent again (the worker reconnected): the first plan stands
        plan = dict(msg.data)
        planned.append(plan)
        # From here on this worker reads its plan as every loadkit process does (with "index" and
        # "workers": its place among the master's workers).
        _PLAN.update(plan)
        _STAGES[:] = [Stage(**s) for s in plan.get("stages", [])]
        _Connections.get().policy = None
        _configure(environment, plan, plan.get("target"))
        logger.warning("loadkit: worker %s of %s holds the plan (%s)", plan.get("index"), plan.get("workers"),
                       plan.get("target"))
        _start_worker(environment, runner)

    def on_refused(environment: Environment, msg: Any, **_kw: Any) -> None:
        logger.error("loadkit: the master refused this worker: %s", (msg.data or {}).get("reason"))
        environment.process_exit_code = 2
        gevent.spawn(runner.quit)

    runner.register_message(_PLAN_MESSAGE, on_plan)
    runner.register_message(_REFUSED, on_refused)
    runner.send_message(_HELLO, {"version": __version__})


def _start_worker(environment: Environment, runner: WorkerRunner) -> None:
    process = _Process()
    process.listen(environment)

    def send(final: bool = False) -> None:
        window, cpu, lag = process.drain()
        runner.send_message(_MESSAGE, {"window": window.to_wire(), "cpu": cpu, "lag_ms": lag, "final": final})

    def loop() -> None:
        while True:
            process.sleep_measuring_lag(_INTERVAL_S)
            send()

    gevent.spawn(loop)
    # The master's "loadkit_stop": stop the users now; test_stop then sends the final window.
    runner.register_message(_STOP, lambda **_: gevent.spawn(runner.stop))
    environment.events.test_stop.add_listener(lambda **_: send(final=True))


def _start_collector(environment: Environment, runner: Runner, notes: list[str]) -> None:
    global _GATE
    fd = os.environ.get("LOADKIT_STATS_FD")
    out = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8") if fd else open(os.devnull, "w")  # noqa: SIM115
    local = None if isinstance(runner, MasterRunner) else _Process()
    collector = _Collector(runner, out, local)
    if local is not None:
        local.listen(environment)
    else:
        runner.register_message(_MESSAGE, collector.on_worker_window)
    collector.write({"type": "start", "processes": _PLAN.get("processes", 1), "pid": os.getpid(), "notes": notes})
    if isinstance(runner, MasterRunner) and _PLAN.get("workers"):
        collector.workers = _GATE = Workers(
            runner, {**_PLAN, "target": environment.host}, int(_PLAN["workers"]),
            float(_PLAN.get("workers_wait_s", 60.0)), collector.write, collector.elapsed,
            on_lost=lambda node: collector.cpu.pop(node, None), sleep=gevent.sleep, missing=STATE_MISSING)
        _GATE.register()

    def on_test_start(**_kw: Any) -> None:
        if collector.started is None:
            collector.started = collector.last_emit = time.monotonic()
            gevent.spawn(collector.loop)

    def on_test_stopping(**_kw: Any) -> None:
        if collector.stopping is None:
            collector.stopping = time.monotonic()
        if collector.workers is not None:
            collector.workers.stopping = True

    def on_test_stop(**_kw: Any) -> None:
        if collector.workers is not None:
            # Locust's headless quit does not wait for its workers' last reports (it allows 0.5 s):
            # loadkit waits for every live worker's final window, so none is lost at the end.
            collector.workers.flush(environment.stop_timeout + _FINAL_WAIT_S)

    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stopping.add_listener(on_test_stopping)
    environment.events.test_stop.add_listener(on_test_stop)
    environment.events.quit.add_listener(lambda exit_code=0, **_: collector.finish("completed"))
