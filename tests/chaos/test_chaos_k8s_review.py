"""Kubernetes findings of the review: kills add up over a run (4b), a fault never outlives
--max-fault-duration (10), two faults of a kind in one run (15), and a live run's VirtualService
is never removed by someone else's clean-up (9). HTTP-level fake API, real chaosk8s."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit import httpcalls
from loadkit.chaos.guards import owner_record
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import chaos_env, chaos_run, interrupt_mid_fault
from tests.chaos.fake_k8s import FakeKubernetes
from tests.conftest import ROOT, loadkit_cmd, run_loadkit

pytestmark = pytest.mark.slow

QUICK = ("--cooldown", "1s", "--recovery-window", "1s")
MANAGED = "app.kubernetes.io/managed-by"


@pytest.fixture
def k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(recreate_after_s=0.5, terminate_after_s=1.0) as fake:  # pods go Terminating first
        yield fake


def loadkit_vs(k8s: FakeKubernetes) -> list[dict[str, Any]]:
    return [vs for vs in k8s.virtualservices("bruno") if vs["metadata"].get("labels", {}).get(MANAGED) == "loadkit"]


def write(tmp_path: Path, *method: dict[str, Any], **extra: Any) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"title": "t", "description": "d", "method": list(method), **extra}))
    return path


def k8s_action(step: str, func: str, module: str = "loadkit.chaos.k8s", pause_s: float = 0,
               **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": step, "pauses": {"after": pause_s},
            "provider": {"type": "python", "module": module, "func": func, "arguments": {"ns": "bruno", **arguments}}}


REMOVE = k8s_action("rm", "remove_faults", name="bruno-site")


def test_kills_add_up_over_a_run(sandbox: SandboxProcess, k8s: FakeKubernetes, tmp_path: Path) -> None:
    """Two kills of one pod each, the replacement up in between: 2 of the workload's 2 pods in one
    run, over the cap (each alone is within it, so only the run-time ledger can refuse)."""
    kill = {"label_selector": "app=bruno-site", "qty": 1}
    path = write(tmp_path, k8s_action("kill-1", "terminate_pods", "chaosk8s.pod.actions", pause_s=2, **kill),
                 k8s_action("kill-2", "terminate_pods", "chaosk8s.pod.actions", **kill))
    code, result, stderr = chaos_run(sandbox, path, *QUICK, env=k8s.subprocess_env(chaos_env(sandbox)))
    assert result is not None, stderr
    assert len(k8s.deleted_pods) == 1, k8s.deleted_pods
    assert "this run already killed 1 of its 2" in json.dumps(result) + stderr
    assert code != 0 and result["verdict"] != "pass"


def test_a_fault_never_outlives_the_max_fault_duration(sandbox: SandboxProcess, k8s: FakeKubernetes,
                                                       tmp_path: Path) -> None:
    """Each step is within 5 s, together they are 12 s: the watchdog rolls back at 5 s."""
    lifetime: list[float] = []

    def watch() -> None:
        k8s.wait_for(lambda: loadkit_vs(k8s), timeout=60, what="the VirtualService")
        seen = time.monotonic()
        k8s.wait_for(lambda: not loadkit_vs(k8s), timeout=60, what="its removal")
        lifetime.append(time.monotonic() - seen)

    waits = {"window_s": 1, "min_samples": 10**9, "wait_s": 4}
    path = write(tmp_path, k8s_action("delay", "add_canary_delay", name="bruno-site", expires_in="5s", pause_s=4),
                 {"type": "probe", "name": "wait", "provider": {"type": "python", "module": "loadkit.chaos.probes",
                                                                "func": "rps", "arguments": waits}},
                 k8s_action("noop", "list_faults", pause_s=4), rollbacks=[REMOVE])
    watcher = threading.Thread(target=watch)
    watcher.start()
    code, result, stderr = chaos_run(sandbox, path, *QUICK, "--max-fault-duration", "5s",
                                     env=k8s.subprocess_env(chaos_env(sandbox)))
    watcher.join()
    assert result is not None, stderr
    assert lifetime and lifetime[0] < 7, lifetime
    # expires_in can be at most --max-fault-duration: whichever of the two watchdogs fires first
    assert code == 3 and result["verdict"] == "error", result["reason"]
    assert "--max-fault-duration" in result["reason"] or "reached its own expiry" in result["reason"], result["reason"]
    assert result["fault"]["duration_s"] < 7.5


def test_two_faults_of_a_kind_in_one_run(sandbox: SandboxProcess, k8s: FakeKubernetes, tmp_path: Path) -> None:
    seen: list[list[dict[str, Any]]] = []
    watcher = threading.Thread(target=lambda: seen.append(k8s.wait_for(
        lambda: (found if len(found := loadkit_vs(k8s)) == 2 else None), timeout=60)))
    watcher.start()
    path = write(tmp_path, k8s_action("abort-1", "add_canary_abort", name="bruno-site", percentage=5),
                 k8s_action("abort-2", "add_canary_abort", name="bruno-site", percentage=5, pause_s=1),
                 rollbacks=[REMOVE])
    code, result, stderr = chaos_run(sandbox, path, *QUICK, "-u", "20",  # 1 s phases: 20 users for min_samples
                                     env=k8s.subprocess_env(chaos_env(sandbox)))
    watcher.join()
    assert result is not None, stderr
    assert len({vs["metadata"]["name"] for vs in seen[0]}) == 2
    assert code == 0, result["reason"]
    assert next(c for c in result["checks"] if c["name"] == "method")["passed"] is True, result["reason"]
    assert loadkit_vs(k8s) == []


def test_a_live_runs_virtualservice_is_never_removed_by_cleanup(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    env = k8s.subprocess_env(chaos_env(sandbox))
    kept: list[str] = []

    def clean_up_from_outside() -> None:  # while the run's fault is in place
        [vs] = loadkit_vs(k8s)
        out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", env=k8s.env())
        kept.append(out.stdout)
        assert [v["metadata"]["name"] for v in loadkit_vs(k8s)] == [vs["metadata"]["name"]]

    code, _result, stderr = interrupt_mid_fault(sandbox, "latency-canary.yaml", signal.SIGINT, "--var",
                                               "fault_seconds:int=90", *QUICK, env=env,
                                               fault_active=lambda: bool(loadkit_vs(k8s)) and
                                               (clean_up_from_outside() or True))
    assert code == 130, stderr
    assert kept and "kept VirtualService bruno/" in kept[0] and "is still going" in kept[0], kept
    assert loadkit_vs(k8s) == []  # removed by its own run


def test_cleanup_keeps_what_a_live_run_owns(k8s: FakeKubernetes) -> None:
    """A planted VirtualService owned by a live process (this test's), unexpired: kept; expired: removed."""
    labels = {MANAGED: "loadkit", "loadkit.io/canary": "bruno-site", "loadkit.io/run": "live"}
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat(timespec="seconds")
    owner = json.dumps(owner_record("live"))
    k8s.plant_virtualservice("bruno", "loadkit-delay-live", labels=labels,
                             annotations={"loadkit.io/expires-at": expires, "loadkit.io/owner": owner})
    out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", env=k8s.env())
    assert out.returncode == 0 and "kept VirtualService bruno/loadkit-delay-live" in out.stdout, out.stdout
    assert len(k8s.virtualservices("bruno")) == 1
    out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", "--run", "live", env=k8s.env())
    assert "removed VirtualService bruno/loadkit-delay-live" in out.stdout and k8s.virtualservices("bruno") == []


def _unshare() -> list[str] | None:
    for prefix in (["unshare", "--pid", "--fork"], ["unshare", "--pid", "--fork", "--map-root-user"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


def test_a_live_run_in_another_pid_namespace_is_never_touched(sandbox: SandboxProcess) -> None:
    """Its pid means nothing here: cleanup keeps its fault (and says why) until its run is named."""
    prefix = _unshare()
    if prefix is None:
        pytest.skip("unshare --pid is not available here (needs CAP_SYS_ADMIN or user namespaces)")
    import psutil

    proc = subprocess.Popen([*prefix, *loadkit_cmd(
        "chaos", "run", str(ROOT / "experiments" / "local-latency.yaml"), "--target", f"{sandbox.traffic_url}/canary",
        "--var", "fault_seconds=90", *QUICK, "-o", "json")], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=chaos_env(sandbox))
    try:
        deadline = time.monotonic() + 60
        while not (present := httpcalls.get(f"{sandbox.admin_url}/faults", timeout=5).json()["faults"]):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        out = run_loadkit("chaos", "cleanup", "--sandbox", sandbox.admin_url, "--skip-kubernetes")
        assert f"kept sandbox fault {present[0]['id']}" in out.stdout and "cannot check" in out.stdout, out.stdout
        assert [f["id"] for f in httpcalls.get(f"{sandbox.admin_url}/faults", timeout=5).json()["faults"]] == \
            [present[0]["id"]]
        inner = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "loadkit" in p.cmdline() and "chaos" in p.cmdline()]
        assert inner, "loadkit did not start inside the namespace"
        inner[0].send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert httpcalls.get(f"{sandbox.admin_url}/faults", timeout=5).json()["faults"] == [], stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        httpcalls.delete(f"{sandbox.admin_url}/faults", timeout=5)
