"""loadkit's Locust plugin: Locust loads it beside the user's locustfile.

    locust -f .../loadkit/load/locust_plugin.py,locustfiles/website.py --headless -H URL

Only the Locust child process imports this module (it imports locust, which monkey-patches the
whole process with gevent). Like every Locust plugin it registers its listeners at import time.
It is driven by two environment variables set by `loadkit.load.runner`:

- LOADKIT_PLAN      JSON: {"stages": [{duration_s, users, spawn_rate}], "headers": {...},
                    "processes": N, "pin_to_target": bool}; an open-model run (a rate) adds
                    "rate_stages": [{duration_s, start, end}], "max_in_flight", "max_lateness_s"
- LOADKIT_STATS_FD  a pipe to the parent; the master (or the only process) writes one JSON line
                    per second: {"type": "snapshot", ...}, and {"type": "end", ...} at the end.

Workers (with --processes) send their windows to the master as "loadkit_window" messages.
With "pin_to_target" every process refuses TCP connections outside the target's origin (loadkit.load._guard).

Distributed runs (`loadkit run --workers N`, `loadkit worker --master HOST:PORT`): a worker started
with LOADKIT_WORKER=1 has no plan of its own. It refuses every TCP connection until the master has
sent it one: it says "loadkit_hello" with its loadkit version, the master answers "loadkit_plan" (or
"loadkit_refused" for another version), and the master's shape holds the users back until every
expected worker holds the plan. The master tracks its workers (`_Workers`): one that goes missing
(no heartbeat) or leaves before the end is reported as {"type": "worker", "event": "lost", ...}; at
the end it asks every live worker to stop and waits for each one's final window before finishing.
With "rate_stages" Locust holds 0 users and each process (or worker) runs its share of the arrival
schedule (loadkit.load._arrivals) as single tasks of Locust users (loadkit.load._open_model).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import uuid
from typing import Any

import gevent
import gevent.event
import gevent.pool
from locust import LoadTestShape, events
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, Runner, WorkerRunner

from loadkit import __version__
from loadkit.load._arrivals import default_max_in_flight
from loadkit.load._collector import INTERVAL_S, Collector, Process
from loadkit.load._distributed import HELLO as _HELLO
from loadkit.load._distributed import PLAN as _PLAN_MESSAGE
from loadkit.load._distributed import REFUSED as _REFUSED
from loadkit.load._distributed import STOP as _STOP
from loadkit.load._distributed import TOKEN_ENV, Workers, plan_proof, proof, token, verify
from loadkit.load._guard import Connections, OriginGuard, refuse_until_planned
from loadkit.load._open_model import OpenModel, nested_task_sets
from loadkit.load.shapes import RateStage, Stage, peak_rate, tick

# `loadkit worker` runs Locust with this module loaded first (`python -m loadkit.load.locust_plugin`),
# so its checks hold whatever files a master sends; the master's own copy of it, downloaded with
# `-f -`, is then a second copy and stays inert.
_ACTIVE = not getattr(events, "_loadkit_plugin", False)
setattr(events, "_loadkit_plugin", True)  # noqa: B010 - a marker on Locust's event hub, not an attribute it has
_PLAN: dict[str, Any] = json.loads(os.environ.get("LOADKIT_PLAN") or "{}")
_STAGES = [Stage(**s) for s in _PLAN.get("stages", [])]
_GATE: Workers | None = None  # the master's workers, in a distributed run
_RATE = [RateStage(**s) for s in _PLAN.get("rate_stages", [])]
_RATE_END_S = math.fsum(s.duration_s for s in _RATE)
_RATE_LIMIT_S = 10.0  # an open-model run ends at the latest this long after its schedule (a process started late)
_MESSAGE = "loadkit_window"
_MASTER_SILENCE_S = 10.0  # a worker that hears no heartbeat from its master this long stops loading
_FINAL_WAIT_S = 10.0  # at the end, the master waits this long (beyond --stop-timeout) for final windows
logger = logging.getLogger("loadkit")
_COLLECTOR: Collector | None = None  # the master's (or only process's), for the open-model shape


def _shares() -> int:
    """How many processes split an open-model schedule: the distributed run's workers, else --processes."""
    return int(_PLAN.get("workers") or _PLAN.get("processes", 1))


def _share_of(runner: Runner) -> tuple[int, int]:
    """This process's place in the schedule: a distributed worker's comes with its plan, a forked one's
    from Locust's ack; the only process runs all of it."""
    if not isinstance(runner, WorkerRunner):
        return 0, 1
    return (int(_PLAN["index"]) if "index" in _PLAN else max(0, runner.worker_index)), _shares()


def _set_rate(plan: dict[str, Any]) -> None:
    """A distributed worker's open-model schedule, from the plan its master sent."""
    global _RATE_END_S
    _RATE[:] = [RateStage(**s) for s in plan.get("rate_stages", [])]
    _RATE_END_S = math.fsum(s.duration_s for s in _RATE)


class LoadkitShape(LoadTestShape):
    """The profile's stages, from LOADKIT_PLAN."""

    def tick(self) -> tuple[int, float] | None:
        if _GATE is not None and not _GATE.opened:
            # Distributed: no users before every expected worker holds the plan; the profile's
            # clock starts when they do.
            if not _GATE.wait():
                return None
            self.reset_time()
        if _RATE:  # no users: the processes' schedulers start the iterations; the run ends when they are done
            finished = _COLLECTOR is not None and _COLLECTOR.schedule_finished()
            return None if finished or self.get_run_time() > _RATE_END_S + _RATE_LIMIT_S else (0, 100.0)
        return tick(_STAGES, self.get_run_time())


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
        gevent.sleep(INTERVAL_S)
    who = "process that started this one" if _orphaned(parent) else "master (no heartbeat)"
    logger.warning("loadkit: the %s is gone; stopping", who)
    os.kill(os.getpid(), signal.SIGINT)
    gevent.sleep(_FINAL_WAIT_S)
    os._exit(3)


def _configure(environment: Environment, plan: dict[str, Any], target: str | None) -> None:
    """What every loadkit process applies before its first request: pinning and headers."""
    if plan.get("pin_to_target") is True:
        OriginGuard(target or environment.host or "").install()
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
    if not _ACTIVE or (not _PLAN and not remote):
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
    if _RATE and (nested := nested_task_sets(environment.user_classes)):
        _refuse(runner, f"an open-model run (a rate) runs one task per iteration, but {', '.join(nested)} "
                "is a TaskSet, whose tasks loop until the user stops",
                "move the TaskSet's tasks onto the User class (@task methods), or run with --users instead of --rate")
        return
    if isinstance(runner, WorkerRunner):
        _start_worker(environment, runner)
    else:
        _start_collector(environment, runner, notes)


def _start_planned_worker(environment: Environment, runner: WorkerRunner) -> None:
    """A worker of a distributed run: nothing leaves it until its master's plan arrives."""
    Connections.get().policy = refuse_until_planned
    planned: list[dict[str, Any]] = []
    secret, nonce = token(), uuid.uuid4().hex
    must_pin = os.environ.get("LOADKIT_WORKER_PIN") == "1"

    def refuse_plan(why: str) -> None:
        logger.error("loadkit: refusing the master's plan: %s", why)
        environment.process_exit_code = 2
        gevent.spawn(runner.quit)

    def on_plan(environment: Environment, msg: Any, **_kw: Any) -> None:
        if planned:
            return  # sent again (the worker reconnected): the first plan stands
        plan = dict(msg.data) if isinstance(msg.data, dict) else {}
        if secret and not verify(plan_proof(secret, nonce, plan), plan.get("proof")):
            refuse_plan(f"the master did not prove it knows this worker's {TOKEN_ENV}: it is not a master "
                        f"to obey (give the master the same {TOKEN_ENV})")
            return
        if must_pin and plan.get("pin_to_target") is not True:
            refuse_plan("this worker was started with --pin and the plan does not pin the load to its target")
            return
        planned.append(plan)
        # From here on this worker reads its plan as every loadkit process does (with "index" and
        # "workers": its place among the master's workers).
        _PLAN.update(plan)
        _STAGES[:] = [Stage(**s) for s in plan.get("stages", [])]
        _set_rate(plan)
        Connections.get().policy = None
        _configure(environment, plan, plan.get("target"))
        logger.warning("loadkit: worker %s of %s holds the plan (%s)", plan.get("index"), plan.get("workers"),
                       plan.get("target"))
        _start_worker(environment, runner)
        # `loadkit worker --once` reads this line: a run ended before it is not a run of this worker's.
        def started(**_kw: Any) -> None:
            logger.warning("loadkit: worker %s started its load", plan.get("index"))

        if runner.state in (STATE_SPAWNING, STATE_RUNNING):
            started()  # it joined a running test: Locust gave it users before the plan came
        else:
            environment.events.test_start.add_listener(started)

    def on_refused(environment: Environment, msg: Any, **_kw: Any) -> None:
        logger.error("loadkit: the master refused this worker: %s", (msg.data or {}).get("reason"))
        environment.process_exit_code = 2
        gevent.spawn(runner.quit)

    runner.register_message(_PLAN_MESSAGE, on_plan)
    runner.register_message(_REFUSED, on_refused)
    runner.send_message(_HELLO, {"version": __version__, "nonce": nonce, "token": bool(secret),
                                 "proof": proof(secret, "hello", nonce, runner.client_id)})
def _refuse(runner: Runner, message: str, hint: str) -> None:
    """A locustfile this plan cannot run: tell the parent (exit 2 there) and quit before any load."""
    logger.error("loadkit: %s; %s", message, hint)
    if isinstance(runner, WorkerRunner):
        return  # the master refuses and quits the run
    fd = os.environ.get("LOADKIT_STATS_FD")
    if fd:
        with os.fdopen(int(fd), "w", encoding="utf-8") as out:
            out.write(json.dumps({"type": "refused", "message": message, "hint": hint}) + "\n")
    os._exit(2)  # before the shape starts: nothing ran; the parent kills any forked worker


def _open_model(environment: Environment, runner: Runner, process: Process) -> None:
    """Open model: this process runs its share of the schedule from test start to test stopping."""
    if not _RATE:
        return
    process.open_model = model = OpenModel(
        environment, process.window, _RATE, share=lambda: _share_of(runner),
        max_in_flight=int(_PLAN.get("max_in_flight") or default_max_in_flight(peak_rate(_RATE), _shares())),
        max_lateness_s=float(_PLAN.get("max_lateness_s", 1.0)))
    environment.events.test_start.add_listener(model.begin)
    environment.events.test_stopping.add_listener(model.end)


def _start_worker(environment: Environment, runner: WorkerRunner) -> None:
    process = Process(_RATE)
    process.listen(environment)
    _open_model(environment, runner, process)

    def send(final: bool = False) -> None:
        window, cpu, lag = process.drain()
        runner.send_message(_MESSAGE, {"window": window.to_wire(), "cpu": cpu, "lag_ms": lag, "final": final,
                                       "busy": process.busy, "finished": process.finished,
                                       "run": _PLAN.get("run")})

    def loop() -> None:
        while True:
            process.sleep_measuring_lag(INTERVAL_S)
            send()

    gevent.spawn(loop)
    # The master's "loadkit_stop": stop the users now; test_stop then sends the final window.
    runner.register_message(_STOP, lambda **_: gevent.spawn(runner.stop))
    environment.events.test_start.add_listener(process.on_test_start)
    environment.events.test_stop.add_listener(lambda **_: send(final=True))


def _start_collector(environment: Environment, runner: Runner, notes: list[str]) -> None:
    global _GATE
    fd = os.environ.get("LOADKIT_STATS_FD")
    out = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8") if fd else open(os.devnull, "w")  # noqa: SIM115
    local = None if isinstance(runner, MasterRunner) else Process(_RATE)
    global _COLLECTOR
    collector = _COLLECTOR = Collector(runner, out, local, _RATE, _shares)
    if local is not None:
        local.listen(environment)
        _open_model(environment, runner, local)
    else:
        runner.register_message(_MESSAGE, collector.on_worker_window)
    collector.write({"type": "start", "processes": _PLAN.get("processes", 1), "pid": os.getpid(), "notes": notes})
    if isinstance(runner, MasterRunner) and _PLAN.get("workers"):
        def redispatch() -> None:
            if runner.state == STATE_RUNNING:
                gevent.spawn(runner.start, runner.target_user_count, runner.spawn_rate)

        collector.workers = _GATE = Workers(
            runner, {**_PLAN, "target": environment.host}, int(_PLAN["workers"]),
            float(_PLAN.get("workers_wait_s", 60.0)), collector.write, collector.elapsed,
            on_lost=lambda node: collector.cpu.pop(node, None), sleep=gevent.sleep, missing=STATE_MISSING,
            redispatch=redispatch, run_id=uuid.uuid4().hex, secret=token())
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
        else:  # --processes: the same for the forked processes
            collector.await_final_windows(environment.stop_timeout + _FINAL_WAIT_S)

    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stopping.add_listener(on_test_stopping)
    environment.events.test_stop.add_listener(on_test_stop)
    environment.events.quit.add_listener(lambda exit_code=0, **_: collector.finish("completed"))


if __name__ == "__main__":  # `loadkit worker`: Locust's own CLI, with this plugin loaded before any locustfile
    from locust.main import main

    main()
