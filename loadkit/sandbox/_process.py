"""`SandboxProcess`: run `loadkit sandbox up` as a subprocess, for tests and `loadkit demo`.

A subprocess rather than an in-process server: the sandbox owns signal handlers and child
processes, and its metrics must not mix with the caller's. Stdlib only, so importing
`loadkit.sandbox` stays cheap.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from loadkit.errors import TargetError
from loadkit.sandbox._spec import DEFAULT_NAMESPACE

_STOP_TIMEOUT_S = 10.0


class SandboxProcess:
    """A running `loadkit sandbox up --port 0 --output json`, stopped on exit.

    >>> with SandboxProcess(canary_error_rate=0.1, pods=1) as sandbox:  # doctest: +SKIP
    ...     httpx.get(f"{sandbox.traffic_url}/canary/").headers["X-Served-By"]
    'bruno-site'

    `retries`, `retry_on`, `per_try_timeout_s` and `timeout_s` are `sandbox up`'s `--retries`,
    `--retry-on`, `--per-try-timeout` and `--timeout` (seconds), for both versions; off by default.
    """

    def __init__(
        self,
        *,
        pods: int = 2,
        canary_weight: int = 0,
        primary_error_rate: float = 0.0,
        canary_error_rate: float = 0.0,
        primary_latency_ms: int = 0,
        canary_latency_ms: int = 0,
        retries: int = 0,
        retry_on: str | None = None,
        per_try_timeout_s: float | None = None,
        timeout_s: float | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        start_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        dependencies: bool = False,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "loadkit",
            "sandbox",
            "up",
            "--port",
            "0",
            "--output",
            "json",
            "--host",
            host,
            "--pods",
            str(pods),
            "--canary-weight",
            str(canary_weight),
            "--primary-error-rate",
            repr(primary_error_rate),
            "--canary-error-rate",
            repr(canary_error_rate),
            "--primary-latency-ms",
            str(primary_latency_ms),
            "--canary-latency-ms",
            str(canary_latency_ms),
            "--namespace",
            namespace,
            "--exit-with-parent",
            *_route_args(retries, retry_on, per_try_timeout_s, timeout_s),
            *(["--deps"] if dependencies else []),
            *extra_args,
        ]
        self.start_timeout = start_timeout
        self._env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._info: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SandboxProcess:
        """Start the sandbox and wait for its ready line; raises TargetError if it never comes."""
        if self._process is not None:
            raise RuntimeError("this SandboxProcess was already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the sandbox
        # Its own session: a Ctrl-C in the terminal reaches loadkit, which stops the load first and
        # then the sandbox (a sandbox dying under Locust would read as the canary failing).
        self._process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=self._env,
            start_new_session=True,
        )
        try:
            self._info = self._parse_ready_line(self._read_ready_line())
        except BaseException:
            self.stop()
            self._close_stderr()
            raise
        return self

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code; safe to call twice."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- what the caller reads -------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        """The parsed ready line (see `loadkit.sandbox.models.SandboxInfo`)."""
        if self._info is None:
            raise RuntimeError("the sandbox is not running: call start() or use it as a context manager")
        return self._info

    @property
    def traffic_url(self) -> str:
        return str(self.info["traffic_url"])

    @property
    def admin_url(self) -> str:
        return str(self.info["admin_url"])

    @property
    def metrics_url(self) -> str:
        return str(self.info["metrics_url"])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def stderr_tail(self, lines: int = 30) -> str:
        """The last lines the sandbox wrote to stderr (its log)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------------

    def _read_ready_line(self) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        lines: list[bytes] = []
        # A thread, because a pipe read cannot time out; it ends at EOF when the sandbox exits.
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if lines and lines[0]:
            return lines[0]
        if not lines:
            raise self._failure(f"did not print its ready line within {self.start_timeout:.0f} s")
        code = self._wait_briefly()
        raise self._failure(f"exited with code {code} before it was ready")

    def _wait_briefly(self) -> int | None:
        assert self._process is not None
        try:
            return self._process.wait(2.0)
        except subprocess.TimeoutExpired:
            return None

    def _parse_ready_line(self, line: bytes) -> dict[str, Any]:
        try:
            info = json.loads(line)
        except ValueError as exc:
            raise self._failure(f"printed {line[:200]!r} instead of its JSON ready line") from exc
        if not isinstance(info, dict) or "traffic_url" not in info:
            raise self._failure(f"printed an unexpected ready line: {line[:200]!r}")
        return info

    def _failure(self, what: str) -> TargetError:
        tail = self.stderr_tail()
        return TargetError(
            f"loadkit sandbox {what}" + (f"; its stderr ends with:\n{tail}" if tail else ""),
            hint=f"run it by hand to see everything: {shlex.join(['loadkit', *self.argv[3:]])}",
        )


def _route_args(retries: int, retry_on: str | None, per_try_timeout_s: float | None,
                timeout_s: float | None) -> list[str]:
    """The route options, only those set, so the default command line stays what it always was."""
    args = ["--retries", str(retries)] if retries else []
    if retry_on is not None:
        args += ["--retry-on", retry_on]
    if per_try_timeout_s is not None:
        args += ["--per-try-timeout", _seconds(per_try_timeout_s)]
    if timeout_s is not None:
        args += ["--timeout", _seconds(timeout_s)]
    return args


def _seconds(value: float) -> str:
    """A bare number of seconds `--timeout` parses: 0.1 -> "0.1", never "1e-05"."""
    return f"{float(value):.6f}".rstrip("0").rstrip(".")
