"""Chaos tests: real sandboxes, real Locust, real chaoslib; Kubernetes is tests/chaos/fake_k8s.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd

EXPERIMENTS = ROOT / "experiments"


def faults(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return list(httpcalls.get(f"{sandbox.admin_url}/faults", timeout=10).json()["faults"])


def pods(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in httpcalls.get(f"{sandbox.admin_url}/pods", timeout=10).json()["pods"]}


def chaos_env(sandbox: SandboxProcess, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    env["LOADKIT_SANDBOX_ADMIN_URL"] = sandbox.admin_url
    return {**env, **(extra or {})}


# The load of a chaos test's run unless it names its own (-u, --rate, --profile): the steady profile's 20
# users cost ~3 CPU-s of traffic per run on a 2-core machine, and what these tests look at (a fault's
# lifecycle, rollbacks, the verdict's logic) shows with fewer: 12 users are ~35 requests a second, enough for
# min_samples (100) in a phase of a few seconds.
LIGHT_LOAD = ("-u", "12")


def light(args: tuple[str, ...]) -> tuple[str, ...]:
    named = {"-u", "--users", "--rate", "-p", "--profile"} & {a.split("=", 1)[0] for a in args}
    return args if named else (*args, *LIGHT_LOAD)


def chaos_run(sandbox: SandboxProcess, experiment: str | Path, *args: str,
              env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, Any] | None, str]:
    """`loadkit chaos run` as a user runs it: (exit code, JSON result or None, stderr)."""
    out = subprocess.run(
        loadkit_cmd("chaos", "run", str(EXPERIMENTS / experiment if isinstance(experiment, str) else experiment),
                    "--target", f"{sandbox.traffic_url}/canary", "--cooldown", "3s", "--recovery-window", "3s",
                    "-o", "json", *light(args)),
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or chaos_env(sandbox), check=False,
    )
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


def interrupt_mid_fault(sandbox: SandboxProcess, experiment: str, sig: signal.Signals | int, *args: str,
                        env: dict[str, str] | None = None,
                        fault_active: Callable[[], bool] | None = None, when_logged: str | None = None,
                        descendants: list[psutil.Process] | None = None, signals: int = 1, times: int = 1,
                        gap_s: float = 0.3,
                        on_logged: tuple[str, Callable[[], None]] | None = None,
                        timing: dict[str, float] | None = None) -> tuple[int, dict[str, Any], str]:
    """Start a chaos run, wait until its fault is in place (or, with `when_logged`, until its stderr
    shows that line `times` times), send `sig` (`signals` times, `gap_s` apart), collect the result.
    `on_logged` runs a callable (once) when stderr shows its line; `timing` receives how long the
    run took to exit after the (last) signal. `descendants` receives the
    run's own Locust processes as they were when the signal was sent."""
    path = experiment if experiment.startswith("/") else str(EXPERIMENTS / experiment)
    proc = subprocess.Popen(
        loadkit_cmd("chaos", "run", path, "--target", f"{sandbox.traffic_url}/canary",
                    "--cooldown", "2s", "-o", "json", *light(args)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or chaos_env(sandbox))
    lines: list[str] = []

    def read() -> None:
        hook = on_logged
        for line in iter(proc.stderr.readline, "") if proc.stderr else ():
            lines.append(line)
            if hook is not None and hook[0] in line:
                hook[1]()  # `on_logged`: (a line to wait for, what to do then), once
                hook = None

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    active = fault_active or (lambda: bool(faults(sandbox)))
    if when_logged is not None:
        active = lambda: sum(when_logged in line for line in list(lines)) >= times  # noqa: E731
    deadline = time.monotonic() + 120  # generous: a loaded CI machine is slow, and this is not what is timed
    while not active():
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    if descendants is not None:
        descendants.extend(p for p in psutil.Process(proc.pid).children(recursive=True) if is_locust(p))
    for i in range(signals):
        if i:
            time.sleep(gap_s)
        proc.send_signal(sig)
    signalled = time.monotonic()
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(timeout=90)
    if timing is not None:
        timing["exit_after_signal_s"] = time.monotonic() - signalled
    reader.join(timeout=10)
    return proc.returncode, json.loads(stdout), "".join(lines)


def is_locust(process: psutil.Process) -> bool:
    """A Locust process (`python -m locust ...`); one that already ended is none."""
    try:
        return " -m locust " in f" {' '.join(process.cmdline())} "
    except psutil.Error:
        return False


def gone(processes: list[psutil.Process]) -> bool:
    """Every one of these processes has ended (a pid reused since is another process)."""
    return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)


class FlakyProxy:
    """A one-request-per-connection HTTP proxy in front of the sandbox's admin API that can lose
    requests the way a network does: `drop(prefix, n)` forwards the next n requests that start with
    `prefix` (e.g. b"POST /faults") and resets the connection instead of answering (the sandbox did
    it, the caller never hears); `refuse(prefix, n)` resets them before they reach the sandbox (the
    API is briefly unreachable); `hold(prefix, seconds)` answers the next one that late."""

    def __init__(self, target: str) -> None:
        import socketserver

        self.target = urlsplit(target)
        self.rules: list[list[Any]] = []  # [kind, prefix, remaining, seconds]
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def drop(self, prefix: bytes, n: int = 1) -> None:
        self._add("drop", prefix, n)

    def refuse(self, prefix: bytes, n: int = 1) -> None:
        self._add("refuse", prefix, n)

    def hold(self, prefix: bytes, seconds: float) -> None:
        self._add("hold", prefix, 1, seconds)

    def _add(self, kind: str, prefix: bytes, n: int, seconds: float = 0.0) -> None:
        with self._lock:
            self.rules.append([kind, prefix, n, seconds])

    def _rule(self, request: bytes) -> tuple[str, float]:
        with self._lock:
            self.seen.append(request.split(b"\r\n", 1)[0])
            for rule in self.rules:
                if rule[2] > 0 and request.startswith(rule[1]):
                    rule[2] -= 1
                    return rule[0], rule[3]
        return "pass", 0.0

    def _serve(self, client: socket.socket) -> None:
        request = _read_message(client)
        if not request:
            return
        kind, seconds = self._rule(request)
        if kind == "refuse":
            _reset(client)
            return
        with socket.create_connection((self.target.hostname, self.target.port), timeout=30) as upstream:
            upstream.sendall(request)
            response = _read_message(upstream)
        if kind == "drop":
            _reset(client)
            return
        if kind == "hold":
            time.sleep(seconds)
        with contextlib.suppress(OSError):
            client.sendall(response)


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (what httpx and the sandbox send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@pytest.fixture
def flaky(sandbox: SandboxProcess) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(sandbox.admin_url)
    yield proxy
    proxy.close()
