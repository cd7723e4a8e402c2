"""A real Prometheus scrapes the sandbox and answers Flagger's built-in queries, unchanged.

Needs Debian's `prometheus` (which ships promtool); `make test` installs it, so a missing binary fails
the test instead of skipping it silently.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

pytestmark = pytest.mark.slow

# Flagger's request-success-rate and request-duration templates for Istio, with the target filled in.
SUCCESS_RATE = (
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bruno",'
    'destination_workload=~"bruno-site",response_code!~"5.*"}[1m])) / '
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bruno",'
    'destination_workload=~"bruno-site"}[1m])) * 100'
)
P99_MS = (
    'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
    'destination_workload_namespace="bruno",destination_workload=~"bruno-site"}[1m])) by (le))'
)
CANARY_LATENCY_MS = 30


@pytest.fixture(scope="module")
def sandbox(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=1, canary_error_rate=0.1, canary_latency_ms=CANARY_LATENCY_MS)


@pytest.fixture(scope="module")
def prometheus(sandbox: SandboxProcess, start_prometheus: Callable[[list[str]], str]) -> str:
    return start_prometheus([sandbox.admin_url.removeprefix("http://")])


def _query(prometheus: str, promql: str) -> list[float]:
    response = httpcalls.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return [float(r["value"][1]) for r in response.json()["data"]["result"]]


def test_exposition_passes_promtool(sandbox: SandboxProcess) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make test`, which installs Debian's prometheus")
    httpcalls.get(f"{sandbox.traffic_url}/canary/")
    text = httpcalls.get(sandbox.metrics_url, timeout=10).text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    # Exit 3 means lint findings only; Istio's own metric name breaks the "base unit" rule.
    assert result.returncode in (0, 3), result.stderr
    findings = [line for line in result.stderr.splitlines() if line.strip()]
    assert all("istio_request_duration_milliseconds" in line for line in findings), findings


def test_flagger_queries_work_unchanged(sandbox: SandboxProcess, prometheus: str, poll: Any) -> None:
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=sandbox.traffic_url, timeout=10) as client:
            while not stop.is_set():
                client.get("/canary/about")

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        # Enough scrapes for a steady rate() over [1m]: five samples of the canary's error series
        # (with two, rate()'s extrapolation at the series' edges can move the ratio by points).
        samples = (
            'count_over_time(istio_requests_total{destination_workload="bruno-site",response_code="503"}[1m])'
        )
        poll(lambda: (_query(prometheus, samples) or [0])[0] >= 5, timeout=30, interval=0.2)
    finally:
        stop.set()
        sender.join(10)
    [success_rate] = _query(prometheus, SUCCESS_RATE)
    # Exactly 10% of canary requests fail; rate() extrapolation blurs that by a fraction of a point.
    assert 88.0 <= success_rate <= 92.0
    [p99] = _query(prometheus, P99_MS)
    # Istio's buckets around 30 ms are 25/50/100/250; a busy CI machine can push a few requests
    # past 100 ms, so the bound is the next bucket edge.
    assert CANARY_LATENCY_MS < p99 <= 250
