"""The Chaos Mesh and dependency-delay experiments run for real (`loadkit chaos run`, real chaosk8s
and kubernetes client) against the HTTP-level fake API server: what the API received, that it is
deleted after the run, what is refused before anything is created, and cleanup after a kill -9."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import EXPERIMENTS, chaos_env, chaos_run
from tests.chaos.fake_k8s import FakeKubernetes
from tests.conftest import ROOT, loadkit_cmd, run_loadkit

pytestmark = pytest.mark.slow
CANARY_PODS = {"namespaces": ["bruno"], "labelSelectors": {"app": "bruno-site"}}


@pytest.fixture
def k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(recreate_after_s=0.5) as fake:
        yield fake


def env_for(sandbox: SandboxProcess, k8s: FakeKubernetes) -> dict[str, str]:
    return k8s.subprocess_env(chaos_env(sandbox))


def loadkit_vs(k8s: FakeKubernetes) -> list[dict[str, Any]]:
    return [vs for vs in k8s.virtualservices("bruno")
            if vs["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "loadkit"]


def watch(k8s: FakeKubernetes, present: Callable[[], list[dict[str, Any]]]) -> tuple[threading.Thread, list[Any]]:
    """Collect the objects as the API holds them while the fault is in place."""
    seen: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: seen.extend(k8s.wait_for(present, timeout=90)), daemon=True)
    thread.start()
    return thread, seen


def writes(k8s: FakeKubernetes) -> list[tuple[str, str]]:
    return [r for r in k8s.requests if r[0] in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.mark.parametrize("experiment,plural,kind,spec", [
    pytest.param("network-loss-canary.yaml", "networkchaos", "NetworkChaos",
                 {"action": "loss", "direction": "to", "loss": {"loss": "10", "correlation": "0"}}, id="network-loss"),
    pytest.param("stress-cpu-canary.yaml", "stresschaos", "StressChaos",
                 {"stressors": {"cpu": {"workers": 2, "load": 80}}}, id="stress-cpu"),
])
def test_a_chaos_mesh_fault_is_labelled_bounded_on_the_canary_only_and_deleted(
        sandbox: SandboxProcess, k8s: FakeKubernetes, experiment: str, plural: str, kind: str,
        spec: dict[str, Any]) -> None:
    watcher, seen = watch(k8s, lambda: k8s.chaos_objects(plural, "bruno"))
    code, result, stderr = chaos_run(sandbox, experiment, "--var", "fault_seconds:int=2", env=env_for(sandbox, k8s))
    watcher.join(timeout=5)
    assert result is not None and code == 0, stderr
    [obj] = seen
    meta = obj["metadata"]
    assert obj["kind"] == kind and obj["apiVersion"] == "chaos-mesh.org/v1alpha1"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "loadkit"
    assert meta["labels"]["loadkit.io/canary"] == "bruno-site" and meta["labels"]["loadkit.io/run"]
    assert meta["name"].startswith("loadkit-") and meta["namespace"] == "bruno"
    assert "loadkit.io/expires-at" in meta["annotations"]
    assert obj["spec"]["duration"] == "300s"  # the experiment's 5m
    assert obj["spec"]["selector"] == CANARY_PODS and obj["spec"]["mode"] == "all"
    assert {k: obj["spec"][k] for k in spec} == spec
    assert k8s.chaos_objects(plural) == []  # deleted by the rollback
    path = f"/apis/chaos-mesh.org/v1alpha1/namespaces/bruno/{plural}/{meta['name']}"
    assert ("DELETE", path) in k8s.requests
    assert result["rollbacks"]["run"] == 1 and result["rollbacks"]["failed"] == 0


@pytest.mark.parametrize("experiment", ["network-loss-canary.yaml", "stress-cpu-canary.yaml",
                                        "dependency-delay.yaml"])
def test_the_primary_is_refused_before_anything_is_created(sandbox: SandboxProcess, k8s: FakeKubernetes,
                                                           experiment: str) -> None:
    code, result, stderr = chaos_run(sandbox, experiment, "--var", "canary=bruno-site-primary",
                                     env=env_for(sandbox, k8s))
    assert code == 2 and result is None, stderr
    assert "primary" in stderr and "--allow-primary" in stderr
    assert writes(k8s) == []
    assert k8s.chaos_objects("networkchaos") == k8s.chaos_objects("stresschaos") == [] and loadkit_vs(k8s) == []


def test_a_dependency_delay_slows_only_the_canarys_calls_and_is_deleted(sandbox: SandboxProcess,
                                                                         k8s: FakeKubernetes) -> None:
    watcher, seen = watch(k8s, lambda: loadkit_vs(k8s))
    code, result, stderr = chaos_run(sandbox, "dependency-delay.yaml", "--var", "fault_seconds:int=2",
                                     env=env_for(sandbox, k8s))
    watcher.join(timeout=5)
    assert result is not None and code == 0, stderr
    [vs] = seen
    meta, route = vs["metadata"], vs["spec"]["http"][0]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "loadkit" and meta["labels"]["loadkit.io/run"]
    assert meta["labels"]["loadkit.io/canary"] == "bruno-site" and "loadkit.io/expires-at" in meta["annotations"]
    assert vs["spec"]["hosts"] == ["payments.bruno.svc.cluster.local"]
    assert route["match"] == [{"sourceLabels": {"app": "bruno-site"}}]
    assert route["fault"] == {"delay": {"fixedDelay": "500ms", "percentage": {"value": 100.0}}}
    assert loadkit_vs(k8s) == []
    assert [r for r in k8s.requests if r[0] == "DELETE" and r[1].endswith(f"/{meta['name']}")]


@pytest.mark.parametrize("variables,message", [
    pytest.param(["--var", "dependency_host=bruno-site.bruno.svc.cluster.local"], "host", id="the-apex-host"),
    pytest.param(["--var", "dependency_host=bruno-site-primary.bruno.svc.cluster.local"], "primary", id="the-primary"),
    pytest.param(["--var", "namespace=kube-system"], "system namespace", id="kube-system"),
])
def test_a_dependency_delay_on_the_canarys_own_hosts_or_a_system_namespace_is_refused(
        sandbox: SandboxProcess, k8s: FakeKubernetes, variables: list[str], message: str) -> None:
    code, result, stderr = chaos_run(sandbox, "dependency-delay.yaml", *variables, env=env_for(sandbox, k8s))
    assert code == 2 and result is None, stderr
    assert message in stderr
    assert writes(k8s) == [] and k8s.virtualservices() == []


def test_kill_9_mid_fault_then_cleanup_removes_the_chaos_mesh_object(sandbox: SandboxProcess,
                                                                      k8s: FakeKubernetes) -> None:
    proc = subprocess.Popen(
        loadkit_cmd("chaos", "run", str(EXPERIMENTS / "network-loss-canary.yaml"), "--target",
                    f"{sandbox.traffic_url}/canary", "--var", "fault_seconds:int=60", "-o", "json"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(sandbox, k8s))
    try:
        [obj] = k8s.wait_for(lambda: k8s.chaos_objects("networkchaos", "bruno"), timeout=90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(0.5)
    assert k8s.chaos_objects("networkchaos", "bruno"), "kill -9 leaves the object (what cleanup is for)"
    out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", env=k8s.env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert obj["metadata"]["name"] in out.stdout
    assert k8s.chaos_objects("networkchaos") == []
    out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", env=k8s.env())
    assert "nothing left behind" in out.stdout
