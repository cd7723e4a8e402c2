"""The processes of a distributed run (`--workers N`): local Locust workers over TCP, the master's
bound port, and why a run's workers never came. Never imports locust.

    with master_port(plan):      # one run at a time per bound address (serve's worker pool)
        workers = [spawn_worker(plan, port, log_file, PLUGIN) for _ in range(plan.workers)]
        ...
        end_workers(workers)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from loadkit.errors import DriverError, UsageError
from loadkit.load._distributed import TOKEN_ENV
from loadkit.models.wire import WorkerEvent, WorkerEventKind
from loadkit.units import host_port

if TYPE_CHECKING:
    from loadkit.load.runner import LoadPlan


_BOUND: dict[tuple[str, int], threading.Lock] = {}
_BOUND_LOCK = threading.Lock()


@contextlib.contextmanager
def master_port(plan: LoadPlan) -> Iterator[None]:
    """One run at a time per bound master address (`loadkit serve`'s worker pool has one port): a
    second waits for the first, up to workers_wait_s."""
    if plan.master_bind is None:
        yield
        return
    with _BOUND_LOCK:
        lock = _BOUND.setdefault(plan.master_bind, threading.Lock())
    if not lock.acquire(timeout=plan.workers_wait_s):
        raise DriverError(f"the worker pool at {host_port(*plan.master_bind)} was busy with another run for "
                          f"{plan.workers_wait_s:g}s",
                          hint="retry later, or raise server.workers.min_users so fewer runs need the pool")
    try:
        yield
    finally:
        lock.release()


def check_bind(bind: tuple[str, int]) -> None:
    """Before Locust starts: the master can listen on `bind` (a name that resolves, an address of this
    machine, a free port). UsageError for a name that does not resolve, DriverError otherwise."""
    host, port = bind
    where = host_port(host, port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--master-bind {where}: {host!r} does not resolve ({exc})",
                         hint="give an address of this machine, e.g. --master-bind 0.0.0.0:5557") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise DriverError(f"the Locust master cannot listen on {where}: {exc.strerror or exc}",
                              hint="choose a free port on an address of this machine (--master-bind, "
                                   "server.workers.bind), or stop what holds it") from None


def locust_env(**extra: str) -> dict[str, str]:
    """The environment of a Locust child: the caller's, minus its LOCUST_*/LOADKIT_* settings (but
    the shared worker token, LOADKIT_WORKER_TOKEN, which master and workers check each other with)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "LOADKIT_")) or k == TOKEN_ENV}
    env.update(PYTHONUNBUFFERED="1", LOADKIT_PARENT_PID=str(os.getpid()), **extra)
    return env


def worker_command(master_host: str, master_port: int, locustfiles: str, *, preload: bool = False) -> list[str]:
    """A Locust worker of a loadkit master; `locustfiles` "-" downloads them from the master. With
    `preload` (`loadkit worker`) loadkit's plugin is loaded before them, from this installation, so
    its checks (the plan, the token, --pin) do not depend on what a master sends."""
    locust = ["-m", "loadkit.load.locust_plugin"] if preload else ["-m", "locust"]
    return [sys.executable, *locust, "--worker", "--master-host", master_host,
            "--master-port", str(master_port), "-f", locustfiles, "--loglevel", "WARNING"]


def spawn_worker(plan: LoadPlan, port: int, log_file: IO[bytes], plugin: Path) -> subprocess.Popen[bytes]:
    """One local worker over TCP, as a remote one would be (the plan comes by message, not env)."""
    try:
        return subprocess.Popen(
            worker_command("127.0.0.1", port, f"{plugin},{plan.locustfile}"), env=locust_env(LOADKIT_WORKER="1"),
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        raise DriverError(f"cannot start a Locust worker: {exc}", hint="reinstall loadkit") from exc


def end_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """Local workers quit when their master tells them to; whatever is left after a moment is killed."""
    deadline = time.monotonic() + 5.0
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGKILL)  # its own session: only it lives there
        worker.wait()


def workers_error(plan: LoadPlan, events: list[WorkerEvent], log: str, tail: str) -> DriverError:
    """Why a distributed run never started: a refused worker, a busy port, or too few workers."""
    refused = [e for e in events if e.event is WorkerEventKind.REFUSED]
    if refused:
        return DriverError(f"the master refused its worker: {refused[0].reason}",
                           hint="use the same loadkit image for `loadkit worker` and the master")
    if "was busy" in log or "Address already in use" in log:
        where = host_port(*plan.master_bind) if plan.master_bind else "its port"
        return DriverError(f"the Locust master could not bind {where}: the address is in use",
                           hint="choose another --master-bind port, or stop what holds it")
    joined = sum(e.event is WorkerEventKind.JOINED for e in events)
    where = host_port(*plan.master_bind) if plan.master_bind else "127.0.0.1"
    return DriverError(f"only {joined} of {plan.workers} Locust workers connected to the master on {where} "
                       f"within {plan.workers_wait_s:g}s:\n{tail}",
                       hint="start them with: loadkit worker --master HOST:PORT (the master's address as the "
                            "workers reach it), or ask for fewer with --workers, or wait longer with --workers-wait")
