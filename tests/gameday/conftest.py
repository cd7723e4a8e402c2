"""Game-day tests: the real sandbox, real Locust and Chaos Toolkit, a real HTTP receiver for notifications."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd

EXPERIMENTS = ROOT / "experiments"
SANDBOX_PLAN = EXPERIMENTS / "gamedays" / "sandbox.yaml"


@dataclass
class Received:
    path: str
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 port 0; `status` is what it answers."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.received.append(Received(self.path, json.loads(self.rfile.read(length) or b"{}")))
            self.send_response(got.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            self.send_response(got.status)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def env_for(sandbox: SandboxProcess | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    if sandbox is not None:
        env["LOADKIT_SANDBOX_ADMIN_URL"] = sandbox.admin_url
    return {**env, **(extra or {})}


def gameday(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, dict[str, Any] | None, str]:
    """`loadkit gameday ...` as a user runs it: (exit code, JSON result or None, stderr)."""
    out = subprocess.run(loadkit_cmd("gameday", *args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env=env, check=False)
    try:
        result = json.loads(out.stdout) if out.stdout.strip().startswith("{") else None
    except json.JSONDecodeError:
        result = None
    return out.returncode, result, out.stderr


def write_plan(directory: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def scenario(name: str, experiment: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "experiment": str(EXPERIMENTS / experiment), "expect": "degrades", "weight": 3,
            "category": "network", **extra}


def faults(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return list(httpcalls.get(f"{sandbox.admin_url}/faults", timeout=10).json()["faults"])
