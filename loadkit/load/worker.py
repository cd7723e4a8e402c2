"""`loadkit worker`: a Locust worker for a loadkit master elsewhere (a worker pod's command).

The worker starts Locust's worker with loadkit's plugin loaded first (from this installation) and
`-f -`: Locust downloads the master's locustfiles into a private temporary directory and imports them
(code from the master runs here: `locustfile` names a baked-in one instead), and the plugin asks the
master for the plan ("loadkit_hello" with this loadkit version; a master of another version refuses it). Until the
plan arrives the worker refuses every TCP connection, so no load leaves it unplanned.

A master ends its run by telling its workers to quit. Unless `once`, the worker then waits for the
next master at the same address (a Deployment's pods serve run after run); a refusal ends it (exit 2).
With `once`, no master answering within `connect_timeout_s` is exit 3, and so is a master that ended
before it gave this worker a plan. With `pin` the worker refuses a plan that does not pin its load to
the target (pin_to_target); with LOADKIT_WORKER_TOKEN it obeys only a master that proves it knows it.

    serve_worker("loadkit-master.loadkit", 5557, once=True)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from loadkit.errors import DriverError, Interrupted, UsageError
from loadkit.load._workers import locust_env, worker_command
from loadkit.load.runner import STOP_GRACE_S

log = logging.getLogger(__name__)

REFUSED_EXIT = 2  # the plugin's exit code when the master refused this worker
_NO_MASTER = "Got no locustfile response from master"
_PLANNED = "holds the plan"  # the plugin's log line once the master's plan arrived
_LOADED = "started its load"  # ... and once its users (or its share of the schedule) started


def serve_worker(host: str, port: int, *, once: bool = False, pin: bool = False,
                 connect_timeout_s: float = 60.0, locustfile: str | None = None) -> int:
    """Work for the master at host:port; 0 after a run (with `once`), raises on a refusal or failure."""
    while True:
        code, no_master, loaded = _one_run(host, port, pin=pin, connect_timeout_s=connect_timeout_s,
                                           locustfile=locustfile)
        if code == REFUSED_EXIT:
            raise UsageError(f"the loadkit master at {host}:{port} refused this worker, or this worker refused its "
                             "plan (see the reason above)",
                             hint="run the same loadkit version (image) and LOADKIT_WORKER_TOKEN for the master and "
                                  "its workers")
        if once:
            if code == 0 and loaded:
                return 0
            if code == 0:
                raise DriverError(f"the loadkit master at {host}:{port} ended before any load ran on this worker",
                                  hint="check the master's output: it was stopped or failed before the run started")
            if no_master:
                raise DriverError(f"no loadkit master answered at {host}:{port} within {connect_timeout_s:g}s",
                                  hint="start the run first (loadkit run --workers N --master-bind HOST:PORT, "
                                       "or loadkit serve with server.workers), and check the address and port")
            raise DriverError(f"the Locust worker exited with {code} (see its log above)",
                              hint="check the master's address, and that the locustfile imports on this machine")
        if code != 0:
            log.warning("the Locust worker exited with %s; waiting for the next master at %s:%s", code, host, port)
            time.sleep(1.0)


def _one_run(host: str, port: int, *, pin: bool = False, connect_timeout_s: float = 60.0,
             locustfile: str | None = None) -> tuple[int, bool, bool]:
    """One Locust worker process, to the end of one run: (exit code, no master answered, its load started).
    Its output goes to our stderr."""
    with tempfile.TemporaryDirectory(prefix="loadkit-worker-") as tmp:
        # TMPDIR: where Locust writes the downloaded locustfiles; private, so two workers on one
        # machine never import each other's half-written copy.
        env = locust_env(LOADKIT_WORKER="1", TMPDIR=tmp, **({"LOADKIT_WORKER_PIN": "1"} if pin else {}))
        log_path = os.path.join(tmp, "worker.log")
        try:
            with open(log_path, "wb") as log_file:
                command = worker_command(host, port, locustfile or "-", preload=True)
                proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
                tail, timed_out, loaded = _follow(proc, log_path, connect_timeout_s)
        except OSError as exc:
            raise DriverError(f"cannot start a Locust worker: {exc}", hint="reinstall loadkit") from exc
        return proc.returncode, timed_out or _NO_MASTER in tail, loaded


def _follow(proc: subprocess.Popen[bytes], log_path: str, connect_timeout_s: float) -> tuple[str, bool, bool]:
    """Wait for the worker, copying its log to stderr: (log tail, no plan within the connect timeout,
    its load started). Ctrl-C/SIGTERM stop a planned worker in order (its final window goes to the
    master), an unplanned one at once (nothing to send, and Locust's own KeyboardInterrupt traceback
    while it connects is noise); whatever is left is killed."""
    seen, tail, planned, loaded, timed_out = 0, "", False, False, False
    deadline = time.monotonic() + connect_timeout_s
    try:
        while proc.poll() is None:
            seen, tail = _copy_new(log_path, seen, tail)
            planned, loaded = planned or _PLANNED in tail, loaded or _LOADED in tail
            if not planned and time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.2)
    except (KeyboardInterrupt, Interrupted):
        if planned:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE_S)
        else:
            seen = -1  # do not copy the rest of its log
        raise
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if seen >= 0:
            seen, tail = _copy_new(log_path, seen, tail)
            loaded = loaded or _LOADED in tail
    return tail, timed_out, loaded


def _copy_new(path: str, seen: int, tail: str) -> tuple[int, str]:
    try:
        with open(path, "rb") as f:
            f.seek(seen)
            chunk = f.read()
    except OSError:
        return seen, tail
    if chunk:
        sys.stderr.write(chunk.decode("utf-8", "replace"))
        sys.stderr.flush()
    return seen + len(chunk), (tail + chunk.decode("utf-8", "replace"))[-4000:]
