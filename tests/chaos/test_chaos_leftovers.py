"""No fault is ever left behind: SIGTERM to loadkit as PID 1, SIGKILL mid-fault, an immediate Ctrl-C
inside a pause, and clean-up within namespace-scoped permissions. Real sandboxes, real chaoslib,
real Locust; Kubernetes is the HTTP-level fake.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import EXPERIMENTS, chaos_env, chaos_run, faults
from tests.chaos.fake_k8s import FakeKubernetes
from tests.conftest import ROOT, loadkit_cmd, run_loadkit

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def started(sandbox: SandboxProcess, experiment: str | Path, *args: str, prefix: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """A `loadkit chaos run` in its own process group; whatever the test does, nothing of it outlives the test."""
    path = str(EXPERIMENTS / experiment) if isinstance(experiment, str) else str(experiment)
    proc = subprocess.Popen(
        [*prefix, *loadkit_cmd("chaos", "run", path, "--target", f"{sandbox.traffic_url}/canary", "--cooldown", "2s",
                               "-o", "json", *args)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or chaos_env(sandbox),
        start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        httpcalls.delete(f"{sandbox.admin_url}/faults", timeout=5)  # the next test starts clean, pass or fail


def wait_for_fault(sandbox: SandboxProcess, proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (present := faults(sandbox)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    return present[0]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_sigterm_to_loadkit_as_pid_1_rolls_back(sandbox: SandboxProcess) -> None:
    """As in a container without an init: loadkit is PID 1 of its own PID namespace."""
    with started(sandbox, "local-latency.yaml", "--var", "fault_seconds=30",
                 prefix=("unshare", "--pid", "--fork", "--mount-proc")) as proc:
        wait_for_fault(sandbox, proc)
        [pid_one] = [p for p in psutil.Process(proc.pid).children() if "loadkit" in " ".join(p.cmdline())]
        with open(f"/proc/{pid_one.pid}/status") as status:  # it is PID 1 inside its namespace
            nspid = next(line for line in status if line.startswith("NSpid:")).split()
        assert nspid[-1] == "1", nspid
        pid_one.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=90)
        assert faults(sandbox) == [], stderr
        result = json.loads(stdout)
        assert result["journal_status"] == "interrupted" and result["rollbacks"]["run"] == 1
        assert result["fault"]["duration_s"] < 5


def test_kill_9_mid_fault_then_cleanup_leaves_nothing_and_the_next_run_names_it(sandbox: SandboxProcess) -> None:
    with started(sandbox, "local-latency.yaml", "--var", "fault_seconds=30") as proc:
        fault = wait_for_fault(sandbox, proc)
        assert fault["owner"]["pid"] == proc.pid and fault["owner"]["run"]
        proc.kill()  # SIGKILL: no handler, no rollback
        proc.communicate(timeout=30)
        assert faults(sandbox), "the fault should still be there: nothing removed it"
        _, result, stderr = chaos_run(sandbox, "local-latency.yaml", "--var", "fault_seconds=1")
        assert result is not None, stderr
        assert any(f"removed a leftover: the delay fault {fault['id']}" in w for w in result["warnings"]), result
        assert faults(sandbox) == []


def test_plain_cleanup_after_kill_9_leaves_zero_faults(sandbox: SandboxProcess) -> None:
    with started(sandbox, "local-latency.yaml", "--var", "fault_seconds=30") as proc:
        wait_for_fault(sandbox, proc)
        proc.kill()
        proc.communicate(timeout=30)
        out = run_loadkit("chaos", "cleanup", "--sandbox", sandbox.admin_url,
                          env={"KUBECONFIG": "/nonexistent", "HOME": "/nonexistent"})
        assert out.returncode == 0, out.stdout
        assert "removed sandbox fault" in out.stdout and "Kubernetes: none configured" in out.stdout
        assert faults(sandbox) == []


def test_a_live_runs_fault_is_never_touched(sandbox: SandboxProcess) -> None:
    with started(sandbox, "local-latency.yaml", "--var", "fault_seconds=90") as proc:  # ended by the SIGINT
        fault = wait_for_fault(sandbox, proc)
        code, _, stderr = chaos_run(sandbox, "local-abort.yaml")  # another run against the same canary
        assert code == 2 and "another loadkit run is faulting this sandbox" in stderr
        out = run_loadkit("chaos", "cleanup", "--sandbox", sandbox.admin_url,
                          env={"KUBECONFIG": "/nonexistent", "HOME": "/nonexistent"})
        assert out.returncode == 0 and f"kept sandbox fault {fault['id']}" in out.stdout, out.stdout
        assert [f["id"] for f in faults(sandbox)] == [fault["id"]]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        assert faults(sandbox) == []


def test_ctrl_c_while_an_action_runs_does_not_wait_out_its_pause(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """chaoslib pauses in a `finally:`: a signal landing in the action would still wait 20 s with the fault on."""
    data = yaml.safe_load((EXPERIMENTS / "local-latency.yaml").read_text())
    slow_probe = {"type": "probe", "name": "wait-for-samples", "pauses": {"after": 20},
                  "provider": {"type": "python", "module": "loadkit.chaos.probes", "func": "thresholds_met",
                               "arguments": {"window_s": 5, "min_samples": 10**9, "wait_s": 10}}}
    data["method"] = [{**data["method"][0], "pauses": {}}, slow_probe]
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(data))
    with started(sandbox, path) as proc:
        wait_for_fault(sandbox, proc)
        time.sleep(1.0)  # inside the probe's wait, not yet in its pause
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        while faults(sandbox):
            assert time.monotonic() - sent < 2.0, "the fault outlived the Ctrl-C by 2 s"
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr


def test_clean_up_works_with_namespace_scoped_permissions(sandbox: SandboxProcess) -> None:
    with FakeKubernetes(namespaced_only=True) as k8s:
        env = k8s.subprocess_env(chaos_env(sandbox))
        code, result, stderr = chaos_run(sandbox, "latency-canary.yaml", "--var", "fault_seconds:int=2", env=env)
        assert result is not None and code == 0, stderr
        assert not [w for w in result["warnings"] if "could not check Kubernetes" in w]
        k8s.plant_virtualservice("bruno", "loadkit-delay-bruno-site-old", labels={
            "app.kubernetes.io/managed-by": "loadkit", "loadkit.io/canary": "bruno-site", "loadkit.io/run": "gone"},
            annotations={"loadkit.io/expires-at": "2026-01-01T00:00:00+00:00"})
        wide = run_loadkit("chaos", "cleanup", "--expired", env=env)
        assert wide.returncode == 3 and "pass --namespace NS" in wide.stdout  # a cluster-wide list is forbidden
        reaped = run_loadkit("chaos", "cleanup", "--expired", "--namespace", "bruno", env=env)
        assert reaped.returncode == 0 and "loadkit-delay-bruno-site-old" in reaped.stdout
        assert k8s.virtualservices("bruno") == []
