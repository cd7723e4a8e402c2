"""Real sandboxes for load tests: one per canary behaviour, shared across a module."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess


@pytest.fixture(scope="module")
def healthy(healthy_sandbox: SandboxProcess) -> SandboxProcess:
    return healthy_sandbox  # the tests count its requests before and after: traffic only


@pytest.fixture(scope="module")
def erroring_canary(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(canary_error_rate=0.03)


@pytest.fixture(scope="module")
def slow_canary(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(canary_latency_ms=600)


def istio_requests(sandbox: SandboxProcess) -> dict[str, float]:
    """istio_requests_total summed per destination_workload, read from the sandbox's /metrics."""
    text = httpcalls.get(sandbox.metrics_url, timeout=10).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("istio_requests_total{"):
            workload = re.search(r'destination_workload="([^"]+)"', line)
            assert workload is not None
            totals[workload.group(1)] = totals.get(workload.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def parse_result(stdout: str) -> dict:  # type: ignore[type-arg]
    return json.loads(stdout)


@pytest.fixture
def cpu_burner(tmp_path: Path) -> Path:
    path = tmp_path / "burner.py"
    path.write_text(
        "import time\n"
        "from locust import FastHttpUser, constant, task\n\n"
        "class Burner(FastHttpUser):\n"
        "    wait_time = constant(0)\n\n"
        "    @task\n"
        "    def burn(self):\n"
        "        end = time.perf_counter() + 0.5  # blocks the event loop: every other user waits\n"
        "        while time.perf_counter() < end:\n"
        "            pass\n"
        "        self.client.get('/healthz')\n"
    )
    return path
