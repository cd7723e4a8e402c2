"""Injected faults and traffic weights, measured from the outside as a load test would see them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

pytestmark = pytest.mark.slow

PRIMARY, CANARY = "bruno-site-primary", "bruno-site"
LATENCY_MS = 150


@pytest.fixture(scope="module")
def weighted(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """30% canary weight, and a canary that fails exactly 10% of its requests."""
    return start_sandbox(pods=2, canary_weight=30, canary_error_rate=0.1)


@pytest.fixture(scope="module")
def slow_canary(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """All traffic to a canary that adds 150 ms to every answer."""
    return start_sandbox(pods=1, canary_weight=100, canary_latency_ms=LATENCY_MS)


def test_error_rate_is_exact_per_pod(weighted: SandboxProcess, scrape: Any, total: Any, poll: Any) -> None:
    canary = {"destination_workload": CANARY}
    before = scrape(weighted.metrics_url)
    with httpx.Client(base_url=weighted.traffic_url, timeout=10) as client:
        responses = [client.get("/canary/about") for _ in range(200)]
    failed = [r for r in responses if r.status_code == 503]
    assert len(failed) == 20
    assert Counter(r.headers["X-Pod"] for r in failed) == {"bruno-site-0": 10, "bruno-site-1": 10}
    assert all(r.headers["X-Served-By"] == CANARY for r in failed)
    assert {r.status_code for r in responses} == {200, 503}

    def flagger_success_rate() -> float:
        # Flagger's request-success-rate: non-5xx over all requests to the canary workload, in percent.
        after = scrape(weighted.metrics_url)
        every = total(after, "istio_requests_total", **canary) - total(
            before, "istio_requests_total", **canary
        )
        errors = total(after, "istio_requests_total", response_code="503", **canary) - total(
            before, "istio_requests_total", response_code="503", **canary
        )
        return (every - errors) / every * 100 if every == 200 else 0.0

    assert poll(flagger_success_rate, timeout=5) == pytest.approx(90.0)


def test_weight_splits_unmatched_traffic(weighted: SandboxProcess) -> None:
    with httpx.Client(base_url=weighted.traffic_url, timeout=10) as client:
        served = Counter(client.get("/blog").headers["X-Served-By"] for _ in range(1000))
    assert set(served) == {PRIMARY, CANARY}
    # Binomial(1000, 0.3): the standard deviation is 14.5 requests, so this band is about ±4 sigma.
    assert 240 <= served[CANARY] <= 360, served


def test_primary_without_faults_never_fails(weighted: SandboxProcess) -> None:
    with httpx.Client(base_url=weighted.traffic_url, timeout=10) as client:
        responses = [client.get("/about") for _ in range(100)]
    primary = [r for r in responses if r.headers["X-Served-By"] == PRIMARY]
    assert len(primary) > 30
    assert {r.status_code for r in primary} == {200}


def test_weight_100_sends_everything_to_canary(slow_canary: SandboxProcess) -> None:
    with httpx.Client(base_url=slow_canary.traffic_url, timeout=10) as client:
        served = {client.get(path).headers["X-Served-By"] for path in ("/", "/about", "/blog/1", "/canary/")}
    assert served == {CANARY}


def test_latency_is_added_to_app_requests_only(slow_canary: SandboxProcess, scrape: Any, total: Any) -> None:
    with httpx.Client(base_url=slow_canary.traffic_url, timeout=10) as client:
        elapsed = []
        for _ in range(4):
            started = time.perf_counter()
            assert client.get("/about").status_code == 200
            elapsed.append(time.perf_counter() - started)
    assert min(elapsed) >= LATENCY_MS / 1000
    pod_port = slow_canary.info["workloads"]["canary"]["pods"][0]["port"]
    probes = []
    with httpx.Client(base_url=f"http://127.0.0.1:{pod_port}", timeout=10) as pod:  # kept alive, as above
        for _ in range(6):  # the fastest of a few: a busy machine may stall any one request, never all
            started = time.perf_counter()
            assert pod.get("/healthz").text == "ok"
            probes.append(time.perf_counter() - started)
    # probes are never delayed: the fastest is well clear of the fastest app request, which carries the
    # 150 ms (on a busy machine both carry the same scheduling delay on top)
    assert min(probes) + LATENCY_MS / 2000 < min(elapsed), (probes, elapsed)
    samples = scrape(slow_canary.metrics_url)
    canary = {"destination_workload": CANARY}
    assert total(samples, "istio_request_duration_milliseconds_bucket", le="100.0", **canary) == 0
    count = total(samples, "istio_request_duration_milliseconds_count", **canary)
    assert total(samples, "istio_request_duration_milliseconds_sum", **canary) >= LATENCY_MS * count > 0


def test_client_hanging_up_is_recorded_as_dc(
    slow_canary: SandboxProcess, scrape: Any, total: Any, poll: Any
) -> None:
    dc = {"destination_workload": CANARY, "response_flags": "DC"}
    before = total(scrape(slow_canary.metrics_url), "istio_requests_total", **dc)
    with pytest.raises(httpx.TimeoutException):
        httpcalls.get(f"{slow_canary.traffic_url}/about", timeout=LATENCY_MS / 1000 / 3)
    # Envoy's "downstream connection termination", counted once the pod's answer finds no client.
    poll(
        lambda: total(scrape(slow_canary.metrics_url), "istio_requests_total", **dc) == before + 1, timeout=5
    )
