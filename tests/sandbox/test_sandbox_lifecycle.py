"""Process lifecycle: orderly shutdown, pods that die with their supervisor, pod restarts.

Each test owns its sandbox, since each one kills something.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    """Exited; a zombie counts, since reaping an orphan is init's business, not the sandbox's."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _pod_pids(sandbox: SandboxProcess) -> list[int]:
    return [pod["pid"] for workload in sandbox.info["workloads"].values() for pod in workload["pods"]]


def test_sigterm_stops_every_pod_and_exits_0(hermetic_env: dict[str, str], poll: Any) -> None:
    with SandboxProcess(pods=2, env=hermetic_env) as sandbox:
        pids = _pod_pids(sandbox)
        assert len(pids) == 4 and not any(_gone(pid) for pid in pids)
        assert sandbox.stop() == 0
        poll(lambda: all(_gone(pid) for pid in pids), timeout=5)
        assert "stopping (SIGTERM)" in sandbox.stderr_tail()


def test_pods_follow_a_killed_supervisor(hermetic_env: dict[str, str], poll: Any) -> None:
    with SandboxProcess(pods=1, env=hermetic_env) as sandbox:
        pids = _pod_pids(sandbox)
        assert sandbox.pid is not None
        os.kill(sandbox.pid, signal.SIGKILL)  # no chance to clean up: stdin EOF must stop the pods
        poll(lambda: all(_gone(pid) for pid in pids), timeout=10)


def test_killed_pod_is_restarted(hermetic_env: dict[str, str], poll: Any, scrape: Any, total: Any) -> None:
    with SandboxProcess(pods=1, env=hermetic_env) as sandbox:
        old = sandbox.info["workloads"]["canary"]["pods"][0]
        os.kill(old["pid"], signal.SIGKILL)
        poll(lambda: _gone(old["pid"]), timeout=5)

        # Until the restart (after a 1 s delay) the router answers like Envoy with no endpoint.
        down = httpcalls.get(f"{sandbox.traffic_url}/canary/", timeout=10)
        assert (down.status_code, down.headers["X-Served-By"]) == (503, "bruno-site")
        assert "upstream" in down.text
        metrics = httpcalls.get(sandbox.metrics_url, timeout=10)
        assert metrics.status_code == 200
        assert any(f.name == "istio_requests" for f in text_string_to_metric_families(metrics.text))
        samples = scrape(sandbox.metrics_url)
        flags = {
            dict(pairs)["response_flags"]
            for (name, pairs) in samples
            if name == "istio_requests_total" and dict(pairs)["response_code"] == "503"
        }
        assert flags and flags <= {"UF", "UH"}

        def restarted() -> dict[str, Any] | None:
            pod = httpcalls.get(f"{sandbox.admin_url}/sandbox", timeout=10).json()["workloads"]["canary"]["pods"][
                0
            ]
            return pod if pod["alive"] and pod["pid"] != old["pid"] else None

        new = poll(restarted, timeout=15)
        assert (new["name"], new["restarts"]) == ("bruno-site-0", 1)
        up = httpcalls.get(f"{sandbox.traffic_url}/canary/about", timeout=10)
        assert (up.status_code, up.headers["X-Pod"]) == (200, "bruno-site-0")
        assert total(scrape(sandbox.metrics_url), "loadkit_sandbox_pod_up", pod="bruno-site-0") == 1
        assert "exited with code -9; restarting it" in sandbox.stderr_tail()
