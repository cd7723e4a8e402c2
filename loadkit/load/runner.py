"""Run Locust in its own process and collect the plugin's stats stream.

The loadkit process never imports locust (it monkey-patches everything with gevent). We start
Locust's own CLI with our plugin beside the user's locustfile, hand it the plan in LOADKIT_PLAN,
and read one JSON line per second from a pipe (LOADKIT_STATS_FD).

Stopping: Locust runs in its own session so a terminal Ctrl-C reaches only us; we then send its
master SIGINT (Locust installs its SIGTERM handler only after a load shape finishes, but turns
SIGINT into an orderly quit at any time): workers send their last windows, the plugin writes its
final snapshot, and we score what arrived. A second Ctrl-C, or a stop that hangs, kills the
process group; so does every exit, so no forked worker outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from loadkit.errors import ConfigError, DriverError, Interrupted
from loadkit.load._timeline import MAX_POINTS, Timeline
from loadkit.load._workers import check_bind, end_workers, locust_env, master_port, spawn_worker, workers_error
from loadkit.load.shapes import RateStage, Stage, peak_rate, total_duration
from loadkit.models.wire import Snapshot, Stats, WorkerEvent, WorkerEventKind

log = logging.getLogger(__name__)

PLUGIN = Path(__file__).with_name("locust_plugin.py")
STARTUP_ALLOWANCE_S = 60.0
STOP_GRACE_S = 15.0
RATE_DRAIN_S = 10.0  # an open-model run's Locust may run this long past its schedule (the plugin's _RATE_LIMIT_S)


@dataclass(frozen=True)
class LoadPlan:
    """Everything one Locust run needs.

    With `pin_to_target` the Locust process may open TCP connections only to the target's origin
    (its host's addresses and port): a redirect or an absolute URL elsewhere fails as a refused
    connection, before anything is sent. `loadkit serve` needs it (its allow-list admits the target,
    not where the target redirects); `loadkit run` from a terminal goes where the locustfile says.

        LoadPlan(target="http://127.0.0.1:8080/canary", locustfile=Path("locustfiles/website.py"),
                 stages=[Stage(30, 10, 5)], pin_to_target=True)

    An open-model plan (a rate) has `rate_stages`; its `stages` are then one stage of 0 users over the
    schedule's length (Locust's lifecycle), and `max_in_flight` (0: the default) bounds the iterations
    running at once per process, `max_lateness_s` how late an iteration may start before it is dropped.
    """

    target: str
    locustfile: Path
    stages: list[Stage]
    headers: dict[str, str] = field(default_factory=dict)
    processes: int = 1
    profile: str = "custom"
    stop_timeout_s: float = 1.0
    pin_to_target: bool = False
    workers: int = 0  # Locust workers over TCP (0: none); local ones unless master_bind is given
    master_bind: tuple[str, int] | None = None  # bind here and wait for remote `loadkit worker`s
    workers_wait_s: float = 60.0  # how long the master waits for its workers to connect
    rate_stages: list[RateStage] = field(default_factory=list)
    max_in_flight: int = 0
    max_lateness_s: float = 1.0

    @property
    def open_model(self) -> bool:
        return bool(self.rate_stages)

    @property
    def peak_rate(self) -> float:
        return peak_rate(self.rate_stages)

    @property
    def duration_s(self) -> float:
        return total_duration(self.stages)

    def plugin_env(self) -> str:
        return json.dumps({
            "stages": [s.__dict__ for s in self.stages],
            "headers": self.headers,
            "processes": self.processes,
            "pin_to_target": self.pin_to_target,
            "workers": self.workers,
            "workers_wait_s": self.workers_wait_s,
            **({"rate_stages": [s.__dict__ for s in self.rate_stages], "max_in_flight": self.max_in_flight,
                "max_lateness_s": self.max_lateness_s} if self.rate_stages else {}),
        })


@dataclass
class LoadOutcome:
    """What came back from Locust: the stream, the final numbers and how the run ended.

    `snapshots` are the run's windows, one a second (coarser past `MAX_POINTS`: a `Timeline`), kept small
    (their window's numbers, users, CPU and lag; no encoded histogram, no status codes, an empty
    cumulative) but for the last, which is whole: enough for the timeline and the generator's health.
    `final` is the run's cumulative Stats (the last snapshot's), `histogram` its exact HdrHistogram.
    """

    started_at: datetime
    ended_at: datetime
    snapshots: Sequence[Snapshot]
    final: Stats
    endpoints: list[list[Any]]
    errors: list[list[Any]]
    histogram: str
    interrupted: bool
    notes: list[str]
    log_path: Path | None  # None unless kept (log_dir given)
    workers: list[WorkerEvent] = field(default_factory=list)  # a distributed run's joined/lost/refused workers
    # interrupted by the caller's `stop` event (fail fast, the webhook), not by a signal (Ctrl-C, SIGTERM)
    stop_requested: bool = False


class _StopRequested(Exception):
    """The caller set the stop event (another thread: the webhook's post-rollout or shutdown)."""


class _Stream:
    """Reads the plugin's JSON lines on a thread and keeps what matters.

    Memory stays bounded however long the run: `on_snapshot` gets each snapshot whole, but what is
    kept of it for the result (the timeline and the generator's health) is a row of its window's
    numbers in a `Timeline` (at most `max_points` rows, coarser past that), once the next one arrives:
    only the last snapshot is kept whole. The run's total histogram, endpoint and error tables come
    once, in the plugin's end line.
    """

    def __init__(self, pipe: IO[str], on_snapshot: Callable[[Snapshot], None] | None,
                 max_points: int = MAX_POINTS) -> None:
        self.pipe = pipe
        self.on_snapshot = on_snapshot
        self.started = threading.Event()
        self.notes: list[str] = []
        self.snapshots = Timeline(max_points)  # all but the last as rows of numbers: see the class docstring
        self.end: dict[str, Any] | None = None
        self.workers: list[WorkerEvent] = []
        self.fatal: dict[str, Any] | None = None
        self.refused: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._read, name="loadkit-stats", daemon=True)

    def _read(self) -> None:
        with self.pipe:
            for line in self.pipe:
                try:
                    self._handle(json.loads(line))
                except (ValueError, KeyError) as exc:
                    log.warning("ignoring a malformed stats line from Locust: %s", exc)

    def _handle(self, record: dict[str, Any]) -> None:
        kind = record.pop("type")
        if kind == "start":
            self.notes.extend(str(n) for n in record.get("notes", []))
            self.started.set()
        elif kind == "snapshot":
            snap = Snapshot.model_validate(record)
            self.snapshots.append(snap)  # the one before is no longer the last: a row of its numbers
            if self.on_snapshot is not None:
                try:
                    self.on_snapshot(snap)
                except Exception:  # a display bug must never lose the run
                    log.exception("snapshot callback failed")
        elif kind == "end":
            self.end = record
        elif kind == "worker":
            event = WorkerEvent.model_validate(record)
            self.workers.append(event)
            if event.event is not WorkerEventKind.JOINED:
                log.warning("load generator worker %s %s: %s", event.node, event.event.value, event.reason)
        elif kind == "note":  # e.g. a forked Locust process (--processes) went missing mid-run
            self.notes.append(str(record["message"]))
            log.warning("%s", record["message"])
        elif kind == "fatal":
            self.fatal = record
        elif kind == "refused":
            self.refused = record


class LocustDriver:
    """The seam between loadkit and Locust: `run(plan) -> LoadOutcome`."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir

    def run(self, plan: LoadPlan, on_snapshot: Callable[[Snapshot], None] | None = None,
            stop: threading.Event | None = None) -> LoadOutcome:
        """Run Locust to the end of the plan, or until Ctrl-C/SIGTERM or `stop` is set (then it is
        stopped in order and `interrupted` is True)."""
        if "," in str(plan.locustfile):
            raise ConfigError(f"locustfile path {plan.locustfile} contains a comma",
                              hint="Locust splits -f on commas; rename or move the file")
        with master_port(plan):
            if plan.master_bind is not None:
                check_bind(plan.master_bind)  # a busy or foreign address: said plainly, before Locust starts
            return self._run(plan, on_snapshot, stop)

    def _run(self, plan: LoadPlan, on_snapshot: Callable[[Snapshot], None] | None,
             stop: threading.Event | None) -> LoadOutcome:
        read_fd, write_fd = os.pipe()
        log_file = self._open_log()
        started_at = datetime.now(UTC)
        port = (plan.master_bind[1] if plan.master_bind else _free_port()) if plan.workers else None
        workers: list[subprocess.Popen[bytes]] = []
        try:
            proc = self._spawn(plan, write_fd, log_file, port)
            if port is not None and plan.master_bind is None:
                workers = [spawn_worker(plan, port, log_file, PLUGIN) for _ in range(plan.workers)]
        except BaseException:
            os.close(read_fd)
            log_file.close()
            end_workers(workers)
            raise
        finally:
            os.close(write_fd)
        stream = _Stream(os.fdopen(read_fd, "r", encoding="utf-8"), on_snapshot)
        stream.thread.start()
        interrupted = requested = False

        def dead_worker() -> str | None:
            """A local worker that exited before the load started: say so now, not after --workers-wait."""
            if stream.snapshots:
                return None
            dead = next((w for w in workers if w.poll() is not None), None)
            if dead is None:
                return None
            log_file.flush()
            return (f"a local Locust worker (pid {dead.pid}) exited with {dead.returncode} before the run started:\n"
                    f"{_tail(Path(log_file.name))}")
        try:
            self._wait(proc, plan, stop, dead_worker)
        except _StopRequested:
            interrupted = requested = True
            _stop(proc)
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
            _stop(proc)
        finally:
            _kill(proc)  # the master is gone or must go; its forked workers go with it
            end_workers(workers)  # local TCP workers: their own sessions, ended one by one
            stream.thread.join(timeout=STOP_GRACE_S)
            log_file.close()
        log_path = Path(log_file.name)
        try:
            outcome = self._outcome(plan, proc, stream, started_at, interrupted, log_path)
            outcome.stop_requested = requested
            return outcome
        finally:
            if self.log_dir is None:
                log_path.unlink(missing_ok=True)  # a temporary log; errors above quote its tail

    def _open_log(self) -> IO[bytes]:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            return open(self.log_dir / "locust.log", "wb")  # closed in run()
        return tempfile.NamedTemporaryFile(prefix="loadkit-locust-", suffix=".log", delete=False)

    def _spawn(self, plan: LoadPlan, write_fd: int, log_file: IO[bytes],
               port: int | None) -> subprocess.Popen[bytes]:
        env = locust_env(LOADKIT_PLAN=plan.plugin_env(), LOADKIT_STATS_FD=str(write_fd))
        try:
            return subprocess.Popen(
                _locust_command(plan, port), env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True,
            )
        except OSError as exc:
            raise DriverError(f"cannot start Locust: {exc}", hint="reinstall loadkit (pip install loadkit)") from exc

    def _wait(self, proc: subprocess.Popen[bytes], plan: LoadPlan, stop: threading.Event | None,
              failed: Callable[[], str | None] = lambda: None) -> None:
        """Wait for Locust; a hard timeout stops a run that overstays its plan, `failed()` (why it
        cannot go on, or None) one that cannot start."""
        budget = STARTUP_ALLOWANCE_S + plan.duration_s + plan.stop_timeout_s + STOP_GRACE_S + RATE_DRAIN_S
        if plan.workers:
            budget += plan.workers_wait_s + STOP_GRACE_S  # waiting for workers, then for their final windows
        deadline = time.monotonic() + budget
        while True:
            try:
                proc.wait(timeout=0.2)
                return
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    raise _StopRequested from None
                if (why := failed()) is not None:
                    _stop(proc)
                    raise DriverError(why, hint="see the worker's log above: fix the locustfile (it must import in "
                                      "every worker), or check with: locust -f FILE --headless -u 1 -t 5s") from None
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise DriverError(
                        f"Locust was still running {budget:.0f}s after start (planned {plan.duration_s:g}s) "
                        "and was stopped",
                        hint="see the Locust log; a task that never returns keeps Locust from stopping",
                    ) from None

    def _outcome(self, plan: LoadPlan, proc: subprocess.Popen[bytes], stream: _Stream,
                 started_at: datetime, interrupted: bool, log_path: Path) -> LoadOutcome:
        if stream.fatal is not None:
            raise DriverError(str(stream.fatal.get("message")), hint=stream.fatal.get("hint"))
        if stream.refused is not None:
            raise ConfigError(str(stream.refused["message"]), hint=str(stream.refused["hint"]))
        log = _read(log_path)
        if plan.workers and not interrupted and not stream.snapshots and stream.end is None and (
                stream.started.is_set() or "was busy" in log):
            raise workers_error(plan, stream.workers, log, _tail_text(log))
        if not stream.started.is_set():
            if interrupted:
                raise Interrupted("interrupted before Locust started")
            failed = locustfile_error(log, plan.locustfile)
            if failed is not None:
                raise DriverError(failed, hint=f"fix the locustfile, then check it alone with: locust -f "
                                  f"{plan.locustfile} --headless -u 1 -t 5s")
            raise DriverError(f"Locust failed to start (exit {proc.returncode}):\n{_tail(log_path)}",
                              hint="fix the locustfile error above, or run it alone with: locust -f FILE")
        if stream.end is None and not interrupted:
            raise DriverError(
                f"Locust stopped unexpectedly (exit {proc.returncode}) after "
                f"{round(stream.snapshots[-1].elapsed_s) if stream.snapshots else 0}s:\n{_tail(log_path)}",
                hint="see the Locust log above",
            )
        final = stream.snapshots[-1].cumulative if stream.snapshots else Stats()
        end = stream.end or {}
        return LoadOutcome(
            started_at=started_at, ended_at=datetime.now(UTC), snapshots=stream.snapshots, final=final,
            endpoints=end.get("endpoints", []), errors=end.get("errors", []),
            histogram=end.get("histogram", ""),
            interrupted=interrupted, notes=stream.notes, log_path=log_path if self.log_dir is not None else None,
            workers=stream.workers,
        )


def _locust_command(plan: LoadPlan, port: int | None = None) -> list[str]:
    cmd = [
        sys.executable, "-m", "locust", "-f", f"{PLUGIN},{plan.locustfile}",
        "--headless", "--host", plan.target, "--loglevel", "WARNING", "--only-summary",
        "--stop-timeout", f"{plan.stop_timeout_s:g}", "--exit-code-on-error", "0",
    ]
    if plan.workers and port is not None:
        host = plan.master_bind[0] if plan.master_bind else "127.0.0.1"
        cmd += ["--master", "--master-bind-host", host, "--master-bind-port", str(port),
                "--expect-workers", str(plan.workers), "--expect-workers-max-wait", f"{plan.workers_wait_s:g}"]
    elif plan.processes > 1:
        port = _free_port()
        cmd += ["--processes", str(plan.processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port), "--master-port", str(port)]
    return cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask Locust to quit (it writes its final snapshot), wait, then kill. Ctrl-C again kills at once."""
    try:
        # Only the master: it tells its workers to quit and waits for their last windows.
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=STOP_GRACE_S)
    except ProcessLookupError:
        return
    except (subprocess.TimeoutExpired, KeyboardInterrupt, Interrupted):
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL Locust's whole process group (its own session: only Locust lives there)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no Locust log)"
    return _tail_text(_read(path), lines)


def _tail_text(log: str, lines: int = 15) -> str:
    text = log.strip().splitlines()
    return "\n".join("  " + line for line in text[-lines:]) or "  (Locust printed nothing)"


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


def locustfile_error(log: str, locustfile: Path) -> str | None:
    """One line for a locustfile that failed to import: its file and line (the last traceback frame
    in it, or in a module it imported) and the exception. None when the log holds no such traceback.

        >>> locustfile_error('Traceback (most recent call last):\\n  File "/x/lf.py", line 2, in <module>\\n'
        ...                  '    import nope\\nModuleNotFoundError: No module named \\'nope\\'', Path("/x/lf.py"))
        "locustfile /x/lf.py:2 failed to import: ModuleNotFoundError: No module named 'nope'"
    """
    lines = log.strip().splitlines()
    if not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return None
    frames = [(m["file"], m["line"]) for line in lines if (m := _FRAME.match(line))]
    target = str(locustfile.resolve()) if locustfile.exists() else str(locustfile)
    in_file = [f for f in frames if f[0] == target]
    if not in_file:
        return None
    where = in_file[-1]
    last_user_frame = next((f for f in reversed(frames) if "site-packages" not in f[0] and "<frozen" not in f[0]),
                           where)
    exception = next((line.strip() for line in reversed(lines) if line and not line.startswith(" ")), "")
    via = f" (in {last_user_frame[0]}:{last_user_frame[1]})" if last_user_frame != where else ""
    return f"locustfile {where[0]}:{where[1]} failed to import: {exception}{via}"
