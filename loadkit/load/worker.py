"""`loadkit worker`: a Locust worker for a loadkit master elsewhere (a worker pod's command).

The worker starts `locust --worker -f -`: Locust downloads the master's locustfiles (loadkit's plugin
and the run's locustfile) into a private temporary directory, and the plugin asks the master for the
plan ("loadkit_hello" with this loadkit version; a master of another version refuses it). Until the
plan arrives the worker refuses every TCP connection, so no load leaves it unplanned.

A master ends its run by telling its workers to quit. Unless `once`, the worker then waits for the
next master at the same address (a Deployment's pods serve run after run); a refusal ends it (exit 2).

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


def serve_worker(host: str, port: int, *, once: bool = False) -> int:
    """Work for the master at host:port; 0 after a run (with `once`), raises on a refusal or failure."""
    while True:
        code, no_master = _one_run(host, port)
        if code == REFUSED_EXIT:
            raise UsageError(f"the loadkit master at {host}:{port} refused this worker (see its reason above)",
                             hint="run the same loadkit version (image) for the master and its workers")
        if once:
            if code == 0:
                return 0
            if no_master:
                raise DriverError(f"no loadkit master answered at {host}:{port}",
                                  hint="start the run first (loadkit run --workers N --master-bind HOST:PORT, "
                                       "or loadkit serve with server.workers), and check the address and port")
            raise DriverError(f"the Locust worker exited with {code} (see its log above)",
                              hint="check the master's address, and that the locustfile imports on this machine")
        if code != 0:
            log.warning("the Locust worker exited with %s; waiting for the next master at %s:%s", code, host, port)
            time.sleep(1.0)


def _one_run(host: str, port: int) -> tuple[int, bool]:
    """One Locust worker process, to the end of one run. Its output goes to our stderr."""
    with tempfile.TemporaryDirectory(prefix="loadkit-worker-") as tmp:
        # TMPDIR: where Locust writes the downloaded locustfiles; private, so two workers on one
        # machine never import each other's half-written copy.
        env = locust_env(LOADKIT_WORKER="1", TMPDIR=tmp)
        log_path = os.path.join(tmp, "worker.log")
        try:
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(worker_command(host, port, "-"), env=env, stdin=subprocess.DEVNULL,
                                        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
                tail = _follow(proc, log_path)
        except OSError as exc:
            raise DriverError(f"cannot start a Locust worker: {exc}", hint="reinstall loadkit") from exc
        return proc.returncode, _NO_MASTER in tail


def _follow(proc: subprocess.Popen[bytes], log_path: str) -> str:
    """Wait for the worker, copying its log to stderr; Ctrl-C/SIGTERM stop it in order, then kill it."""
    seen = 0
    tail = ""
    try:
        while proc.poll() is None:
            seen, tail = _copy_new(log_path, seen, tail)
            time.sleep(0.2)
    except (KeyboardInterrupt, Interrupted):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)  # its final window goes to the master
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seen, tail = _copy_new(log_path, seen, tail)
    return tail


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
