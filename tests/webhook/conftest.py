"""A real `loadkit serve` (subprocess, port 0) and real sandboxes, for webhook tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd

LOCAL_TARGETS = r"^http://127\.0\.0\.1:\d+(/.*)?$"

SERVE_CONFIG = """\
min_samples: 50
threshold_sets:
  strict:
    - name: request-duration
      thresholdRange: {max: 1}
profiles:
  quick:
    description: short constant load for tests
    users: 10
    spawn_rate: 10
    duration: 4s
  quick-rate:
    description: short arrival-rate load for tests
    start_rate: 10
    stages: [{duration: 4s, rate: 10}]
server:
  default_profiles: {pre-rollout: quick, rollout: quick}
"""


class Serve:
    """`loadkit serve` in a subprocess; `restart()` keeps the same --db."""

    def __init__(self, tmp: Path, *extra: str, local_targets: bool = True) -> None:
        self.tmp = tmp
        self.local_targets = local_targets
        self.db = tmp / "loadkit.db"
        self.config = tmp / "serve.yaml"
        self.config.write_text(SERVE_CONFIG)
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_path = tmp / "serve.stderr"

    def start(self, port: int = 0) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_"))}
        self.proc = subprocess.Popen(
            loadkit_cmd("serve", "--port", str(port), "--output", "json", "--db", str(self.db), "--config",
                        str(self.config), *(["--allow-target", LOCAL_TARGETS] if self.local_targets else []),
                        *self.extra),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.stderr_path.open("w"), text=True, env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"loadkit serve did not start: {self.stderr_path.read_text()}"
        self.url = json.loads(line)["url"]
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def restart(self) -> Serve:
        """Stop (SIGTERM) and start again on the same port, as a Deployment's pod comes back behind its Service."""
        port = int(self.url.rsplit(":", 1)[1])
        self.stop()
        return self.start(port)

    def hook(self, kind: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes | str) else json.dumps(body)
        return httpcalls.post(f"{self.url}/flagger/{kind}", content=content, timeout=120, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpcalls.get(f"{self.url}{path}", timeout=30, **kwargs)

    def admin(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpcalls.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


def payload(target: str, checksum: str = "85d557f47b", name: str = "bruno-site", namespace: str = "bruno",
            phase: str = "Progressing", **metadata: str) -> dict[str, Any]:
    """Flagger's CanaryWebhookPayload, as in Flagger's docs."""
    return {"name": name, "namespace": namespace, "phase": phase, "checksum": checksum,
            "metadata": {"target": target, **metadata}}


def poll(condition: Callable[[], Any], timeout: float = 30, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


@pytest.fixture(scope="module")
def healthy_site(healthy_sandbox: SandboxProcess) -> SandboxProcess:
    return healthy_sandbox  # runs load it, nothing faults it


@pytest.fixture(scope="module")
def faulty_site(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(canary_error_rate=0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = Serve(tmp_path_factory.mktemp("serve"), "--max-concurrent-runs", "8").start()
    yield serve
    serve.stop()
