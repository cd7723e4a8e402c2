"""What the Locust child collects: each process's window (`Process`) and, in the master or the only
process, the merge of every process's windows into the snapshot a second it writes to its parent
(`Collector`), with the bookkeeping of forked processes (--processes) that are lost or must be waited
for at the end. Only the Locust child imports this (loadkit.load.locust_plugin): it imports gevent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import psutil
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, Runner

from loadkit.load._distributed import FORKED_PROCESS_LOST, STOP, Workers
from loadkit.load._open_model import OpenModel, from_intended_start
from loadkit.load._window import Window, endpoint_rows
from loadkit.load.shapes import RateStage, rate_at

INTERVAL_S = 1.0  # a window a second


class Process:
    """What one Locust process collects: its current window, CPU and event-loop lag."""

    def __init__(self, rate: Sequence[RateStage]) -> None:
        self.rate = rate  # the open-model schedule (empty: users); a distributed worker's fills in with its plan
        self.window = Window()
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)
        self.lag_ms = 0.0
        self.since = -math.inf  # a worker sets it on test start; the only process measures from the first
        self.open_model: OpenModel | None = None

    @property
    def busy(self) -> int:
        """Open model: iterations running now (the run's "users")."""
        return self.open_model.busy if self.open_model is not None else 0

    @property
    def finished(self) -> bool:
        return self.open_model is not None and self.open_model.finished

    def listen(self, environment: Environment) -> None:
        """Record every request exactly, replacing Locust's own (rounded) request statistics.

        loadkit reports only its own numbers, so Locust's per-request bookkeeping would be pure
        overhead on the generator's CPU; dropping it keeps a loadkit run as fast as plain Locust.
        """
        handlers = environment.events.request._handlers
        for handler in list(handlers):
            if getattr(handler, "__qualname__", "") == "Runner.__init__.<locals>.on_request":
                environment.events.request.remove_listener(handler)
        environment.events.request.add_listener(from_intended_start(self.window.on_locust_request) if self.rate
                                                else self.window.on_locust_request)
        environment.events.user_error.add_listener(self.window.on_locust_user_error)

    def drain(self) -> tuple[Window, float, float]:
        lag, self.lag_ms = self.lag_ms, 0.0
        return self.window.take(), self.proc.cpu_percent(None), lag

    def sleep_measuring_lag(self, seconds: float) -> None:
        started = time.perf_counter()
        gevent.sleep(seconds)
        late_ms = (time.perf_counter() - started - seconds) * 1000.0
        if started >= self.since:
            self.lag_ms = max(self.lag_ms, late_ms)

    def on_test_start(self, **_kw: Any) -> None:
        """Lag counts from the test's start: a worker blocks while it connects to its master, before."""
        self.since = time.perf_counter()
        self.lag_ms = 0.0


class Collector:
    """In the master (or the only process): merge windows, write snapshots to the parent.

    `rate` is the open-model schedule (empty in a users run), `shares` how many processes split it.
    """

    def __init__(self, runner: Runner, out: Any, local: Process | None, rate: Sequence[RateStage],
                 shares: Callable[[], int]) -> None:
        self.runner = runner
        self.rate = rate
        self.shares = shares
        self.out = out
        self.local = local
        self.pending = Window()
        self.total = Window()
        self.cpu: dict[str, float] = {}
        self.busy: dict[str, int] = {}
        self.finished: set[str] = set()
        self.lost: set[str] = set()  # forked processes (--processes) that went missing mid-run
        self.finals: set[str] = set()  # forked processes (--processes) whose final window arrived
        self.last_window_s: dict[str, float] = {}  # forked processes: when each one's last window arrived
        self.lag_ms = 0.0
        self.started: float | None = None
        self.stopping: float | None = None
        self.last_emit = time.monotonic()
        self.ended = False
        self.workers: Workers | None = None

    def schedule_finished(self) -> bool:
        """Open model: every process has started (or dropped) its whole share and its iterations ended."""
        if self.local is not None:
            return self.local.finished
        return len(self.finished | self.lost) >= self.shares()

    def on_worker_window(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data = msg.data if isinstance(msg.data, dict) else {}
        node = str(msg.node_id)
        if self.workers is not None and not self.workers.accepts(node, data):
            return  # not from this run's planned workers: never merged (reported as dropped)
        window = Window.from_wire(data["window"])
        self.pending.merge(window)
        self.busy[node] = int(data.get("busy", 0))
        if data.get("finished"):
            self.finished.add(node)
        if data.get("final"):
            self.finals.add(node)
        self.last_window_s[node] = round(self.elapsed(), 3)
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
                self.local.sleep_measuring_lag(INTERVAL_S)
            else:
                gevent.sleep(INTERVAL_S)
            if self.workers is not None:
                self.workers.check()
            else:
                self.check_processes()
            self.emit_snapshot()

    def check_processes(self) -> None:
        """--processes: a forked Locust process that stops sending heartbeats (killed, crashed) is lost. Say so
        once, in the result too; its load after that never runs (its share of a schedule stays unaccounted)."""
        if not isinstance(self.runner, MasterRunner):
            return
        for node in list(self.runner.clients.values()):
            if node.state != STATE_MISSING or node.id in self.lost:
                continue
            share = " and its share of the schedule after that never ran" if self.rate else ""
            last = self.last_window_s.get(node.id, 0.0)
            self.lose_process(node.id, f"a Locust process (--processes) was lost about {last:.0f}s into the run "
                                       f"(its last window; no heartbeat since): its load until then is counted{share}")

    def lose_process(self, node: str, message: str) -> None:
        """Say so once, as a note and as a lost generator: a run that lost load is never a pass."""
        self.lost.add(node)
        self.cpu.pop(node, None)
        self.busy.pop(node, None)
        self.write({"type": "note", "message": message})
        # at_s: where its counted load ends (its last window), as for a worker; detected_s: now
        self.write({"type": "worker", "event": "lost", "node": node, "at_s": self.last_window_s.get(node, 0.0),
                    "detected_s": round(self.elapsed(), 3), "reason": FORKED_PROCESS_LOST})

    def await_final_windows(self, timeout_s: float) -> None:
        """--processes: Locust's headless quit does not wait for its forked processes' last reports (it
        allows 0.5 s), so on a busy machine a process's last second was lost, uncounted. Stop every live
        one's users and wait for its final window; one that sends none in time is lost (its last second
        is missing)."""
        runner = self.runner
        if not isinstance(runner, MasterRunner):
            return
        deadline = time.monotonic() + timeout_s

        def waiting() -> list[str]:
            return [c.id for c in runner.clients.values()
                    if c.id not in self.finals and c.id not in self.lost and c.state != STATE_MISSING]

        for node in waiting():  # a timed run's quit tells them only after this: stop their users now
            runner.send_message(STOP, None, client_id=node)
        while waiting() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        for node in waiting():
            self.lose_process(node, f"a Locust process (--processes) sent no final window within {timeout_s:g}s "
                                    "of the stop: its last second of load is not counted")

    def emit_snapshot(self) -> None:
        if self.local is not None:
            window, cpu, lag = self.local.drain()
            self.pending.merge(window)
            self.cpu["local"] = cpu
            self.busy["local"] = self.local.busy
            self.lag_ms = max(self.lag_ms, lag)
        now = time.monotonic()
        window, self.pending = self.pending, Window()
        self.total.merge(window)
        elapsed = now - (self.started or now)
        # Load runs from the first users until Locust starts stopping (planned end or interrupt);
        # the shutdown after that must not dilute the rate.
        active = (self.stopping or now) - (self.started or now)
        if self.rate:  # the schedule's length: the drain after it starts nothing; a schedule run to its end lasted
            # all of it, even when its last arrival came early (0.2/s over 3 s: one arrival, done in a second)
            end_s = math.fsum(s.duration_s for s in self.rate)
            active = end_s if self.schedule_finished() else min(active, end_s)
        span, self.last_emit = now - self.last_emit, now
        self.write({
            "type": "snapshot",
            "elapsed_s": round(elapsed, 3),
            "users": sum(self.busy.values()) if self.rate else self.runner.user_count,
            **({"rate": round(rate_at(self.rate, elapsed), 3)} if self.rate else {}),
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
        if self.workers is not None:
            self.workers.report_dropped()
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
