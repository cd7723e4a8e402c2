"""`loadkit compare` for real: Locust against both routes of a sandbox, and Prometheus' series of both.

The sandbox's primary and canary are the same app with the same 50 ms of latency; faults (Istio
style, from the sandbox's admin API) make the canary slower, and a second sandbox gives it 2 %
more errors (deterministic: exactly 2 in every 100 canary requests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import run_loadkit, scraped

pytestmark = pytest.mark.slow

LATENCY_MS = 50
RUNS = 4  # the false-alarm rate itself is measured in tests/scoring (Monte Carlo over the judge)

# Many short requests: a one-second run gives each side ~150 latency samples.
STEADY = """
from locust import FastHttpUser, constant, task


class Visitor(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def catalogue(self):
        self.client.get("/api/products")
"""


@pytest.fixture(scope="module")
def twins(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=1, primary_latency_ms=LATENCY_MS, canary_latency_ms=LATENCY_MS)


@pytest.fixture(scope="module")
def prometheus(twins: SandboxProcess, start_prometheus: Callable[[list[str]], str]) -> str:
    return start_prometheus([twins.admin_url.removeprefix("http://")])


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "steady.py"
    path.write_text(STEADY)
    return path


def compare(sandbox: SandboxProcess, locustfile: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = run_loadkit("compare", "--target", f"{sandbox.traffic_url}/canary", "--baseline", sandbox.traffic_url,
                      "-f", str(locustfile), "-u", "10", "-r", "100", "-q", "-o", "json", *extra)
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def metrics(comparison: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in comparison["metrics"]}


def test_identical_primary_and_canary_measure_alike_end_to_end(twins: SandboxProcess, steady: Path) -> None:
    """The judge's false-alarm rate is measured in tests/scoring (Monte Carlo); here the two real routes
    measure alike, run after run: no systematic difference between canary and baseline in the load, the
    routing or the scoring (a shared, busy 2-core machine makes either side a few percent slower at times)."""
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: compare(twins, steady, "-t", "1s"), range(RUNS)))
    effects = []
    for code, comparison in runs:
        assert comparison["schema_version"] == 1
        assert set(metrics(comparison)) == {"latency", "error-rate"}
        latency, errors = metrics(comparison)["latency"], metrics(comparison)["error-rate"]
        assert latency["baseline_samples"] >= 50 and latency["canary_samples"] >= 50
        # the app sleeps 50 ms: never less (a loaded machine adds scheduling delay on top, to both sides)
        assert latency["baseline"] >= LATENCY_MS and latency["canary"] >= LATENCY_MS, latency
        assert errors["classification"] == "pass" and errors["canary"] == errors["baseline"] == 0, errors
        assert code == (0 if comparison["verdict"] == "pass" else 1), comparison  # the exit code follows the verdict
        effects.append(latency["effect_pct"])
    assert max(abs(e) for e in effects) < 15, effects
    assert any(code == 0 for code, _ in runs), [c["reason"] for _, c in runs]


@pytest.fixture
def slower_canary(twins: SandboxProcess) -> Iterator[None]:
    """Istio-style delay on every canary request: 50 + 10 ms, 20 % slower."""
    fault = {"version": "canary", "kind": "delay", "delay_ms": LATENCY_MS // 5, "percentage": 100, "ttl_s": 120}
    answer = httpcalls.post(f"{twins.admin_url}/faults", json=fault, timeout=5)
    assert answer.status_code == 201, answer.text
    yield
    httpcalls.delete(f"{twins.admin_url}/faults", timeout=5).raise_for_status()


@pytest.mark.usefixtures("slower_canary")
def test_a_canary_20pct_slower_fails_from_load_and_from_prometheus(twins: SandboxProcess, steady: Path,
                                                                  prometheus: str) -> None:
    code, comparison = compare(twins, steady, "-t", "8s")
    assert code == 1 and comparison["verdict"] == "fail"
    latency = metrics(comparison)["latency"]
    assert latency["classification"] == "high" and 15 <= latency["effect_pct"] <= 25
    assert "significantly slower, more than the allowed 5%" in latency["reason"]
    assert metrics(comparison)["error-rate"]["classification"] == "pass"

    # The same run seen by Prometheus: both workloads' Istio series over a window that holds the 8 s
    # however late a busy machine makes these calls, one mean-latency point a second (idle seconds
    # before and after have no requests: left out)
    out = run_loadkit("compare", "--prometheus", prometheus, "--canary", "bruno-site", "--namespace", "bruno",
                      "--interval", "45s", "--step", "1s", "--min-samples", "5", "-o", "json")
    assert out.returncode == 1, out.stderr
    seen = json.loads(out.stdout)
    assert seen["verdict"] == "fail" and seen["baseline"] == "bruno/bruno-site-primary"
    server_latency = metrics(seen)["latency"]
    assert server_latency["classification"] == "high" and 10 <= server_latency["effect_pct"] <= 30
    assert server_latency["canary_samples"] >= 5 and seen["queries"]

    text = run_loadkit("compare", "--prometheus", prometheus, "--canary", "bruno-site", "--namespace", "bruno",
                       "--interval", "45s", "--step", "1s", "--min-samples", "5")
    assert text.returncode == 1 and "FAIL" in text.stdout and "significantly slower" in text.stdout


def test_a_canary_with_2pct_more_errors_fails_from_load_and_from_prometheus(
        steady: Path, start_prometheus: Callable[[list[str]], str]) -> None:
    with SandboxProcess(pods=1, primary_latency_ms=LATENCY_MS, canary_latency_ms=LATENCY_MS,
                        canary_error_rate=0.02) as erring:
        prometheus = start_prometheus([erring.admin_url.removeprefix("http://")])
        code, comparison = compare(erring, steady, "-t", "4s")
        sent = metrics(comparison)["error-rate"]["canary_samples"] + 1  # and loadkit's pre-flight request
        scraped(prometheus, 'sum(istio_requests_total{destination_workload="bruno-site"})', sent)
        # Istio's counters of the same run: the canary's 503 series is born inside the window
        seen = run_loadkit("compare", "--prometheus", prometheus, "--canary", "bruno-site", "--namespace", "bruno",
                           "--interval", "30s", "--step", "1s", "--min-samples", "3", "-o", "json")
    assert code == 1 and comparison["verdict"] == "fail"
    errors = metrics(comparison)["error-rate"]
    assert errors["classification"] == "high" and errors["critical"]
    assert 1.5 <= errors["canary"] - errors["baseline"] <= 2.1
    assert "significantly more errors" in errors["reason"]
    assert metrics(comparison)["latency"]["classification"] in {"pass", "low"}

    assert seen.returncode == 1, seen.stderr
    server_errors = metrics(json.loads(seen.stdout))["error-rate"]
    assert server_errors["classification"] == "high" and 1.5 <= server_errors["canary"] <= 2.1
    assert server_errors["canary_samples"] == sent  # Istio counted every request loadkit sent
