"""loadkit's Locust plugin: Locust loads it beside the user's locustfile.

    locust -f .../loadkit/load/locust_plugin.py,locustfiles/website.py --headless -H URL

Only the Locust child process imports this module (it imports locust, which monkey-patches the
whole process with gevent). Like every Locust plugin it registers its listeners at import time.
It is driven by two environment variables set by `loadkit.load.runner`:

- LOADKIT_PLAN      JSON: {"stages": [{duration_s, users, spawn_rate}], "headers": {...}}
- LOADKIT_STATS_FD  a pipe to the parent; the master (or the only process) writes one JSON line
                    per second: {"type": "snapshot", ...}, and {"type": "end", ...} at the end.

Workers (with --processes) send their windows to the master as "loadkit_window" messages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import gevent
import psutil
from locust import LoadTestShape, events
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadkit.load._window import Window
from loadkit.load.shapes import Stage, tick

_PLAN: dict[str, Any] = json.loads(os.environ.get("LOADKIT_PLAN") or "{}")
_STAGES = [Stage(**s) for s in _PLAN.get("stages", [])]
_MESSAGE = "loadkit_window"
_INTERVAL_S = 1.0
logger = logging.getLogger("loadkit")


class LoadkitShape(LoadTestShape):
    """The profile's stages, from LOADKIT_PLAN."""

    def tick(self) -> tuple[int, float] | None:
        return tick(_STAGES, self.get_run_time())


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

    def on_worker_window(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data = msg.data
        self.pending.merge(Window.from_wire(data["window"]))
        self.cpu[str(msg.node_id)] = float(data["cpu"])
        self.lag_ms = max(self.lag_ms, float(data["lag_ms"]))

    def loop(self) -> None:
        while not self.ended:
            if self.local is not None:
                self.local.sleep_measuring_lag(_INTERVAL_S)
            else:
                gevent.sleep(_INTERVAL_S)
            self.emit_snapshot()
            if _orphaned():
                # Locust runs in its own session, so a parent killed with SIGKILL leaves it behind:
                # stop the way the parent would have asked, instead of loading the target on.
                logger.warning("loadkit: the loadkit process that started this run is gone; stopping")
                os.kill(os.getpid(), signal.SIGINT)
                return

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
            "endpoints": [[m, n, r, f] for (m, n), (r, f) in sorted(self.total.endpoints.items())],
            "errors": sorted(([m, c] for m, c in self.total.errors.items()), key=lambda e: -e[1]),
        })
        self.out.close()

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(record) + "\n")
        except (BrokenPipeError, ValueError):
            self.ended = True  # the parent is gone; nothing left to report to


def _orphaned() -> bool:
    parent = os.environ.get("LOADKIT_PARENT_PID")
    return parent is not None and os.getppid() != int(parent)


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
    if not _PLAN:
        return  # loaded without loadkit (plain `locust -f`): stay out of the way
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started from a background job (`loadkit run ... &`) SIGINT arrives ignored, but it is how
        # loadkit asks Locust for an orderly stop: restore Python's KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    logger.warning("loadkit: Locust's own request statistics are replaced by loadkit's exact ones; "
                "Locust's summary below shows none")
    if _PLAN.get("headers"):
        _apply_headers(environment, _PLAN["headers"])
    notes = []
    shapes = getattr(environment, "available_shape_classes", None) or {}
    if len(shapes) > 1:
        others = ", ".join(n for n in shapes if n != "LoadkitShape")
        notes.append(f"the locustfile's own load shape ({others}) was ignored: the profile's stages ran")
    if isinstance(runner, WorkerRunner):
        _start_worker(environment, runner)
    else:
        _start_collector(environment, runner, notes)


def _start_worker(environment: Environment, runner: WorkerRunner) -> None:
    process = _Process()
    process.listen(environment)

    def send() -> None:
        window, cpu, lag = process.drain()
        runner.send_message(_MESSAGE, {"window": window.to_wire(), "cpu": cpu, "lag_ms": lag})

    def loop() -> None:
        while True:
            process.sleep_measuring_lag(_INTERVAL_S)
            send()

    gevent.spawn(loop)
    environment.events.test_stop.add_listener(lambda **_: send())


def _start_collector(environment: Environment, runner: Runner, notes: list[str]) -> None:
    fd = os.environ.get("LOADKIT_STATS_FD")
    out = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8") if fd else open(os.devnull, "w")  # noqa: SIM115
    local = None if isinstance(runner, MasterRunner) else _Process()
    collector = _Collector(runner, out, local)
    if local is not None:
        local.listen(environment)
    else:
        runner.register_message(_MESSAGE, collector.on_worker_window)
    collector.write({"type": "start", "processes": _PLAN.get("processes", 1), "pid": os.getpid(), "notes": notes})

    def on_test_start(**_kw: Any) -> None:
        if collector.started is None:
            collector.started = collector.last_emit = time.monotonic()
            gevent.spawn(collector.loop)

    def on_test_stopping(**_kw: Any) -> None:
        if collector.stopping is None:
            collector.stopping = time.monotonic()

    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stopping.add_listener(on_test_stopping)
    environment.events.quit.add_listener(lambda exit_code=0, **_: collector.finish("completed"))
