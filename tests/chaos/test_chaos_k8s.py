"""The Kubernetes experiments against an HTTP-level fake API server, with the real `kubernetes`
client and real chaosk8s; the load goes to the sandbox."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import chaos_env, chaos_run, interrupt_mid_fault
from tests.chaos.fake_k8s import FakeKubernetes
from tests.conftest import run_loadkit

pytestmark = pytest.mark.slow


@pytest.fixture
def k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(recreate_after_s=0.5) as fake:
        yield fake


def env_for(sandbox: SandboxProcess, k8s: FakeKubernetes) -> dict[str, str]:
    return k8s.subprocess_env(chaos_env(sandbox))


def loadkit_vs(k8s: FakeKubernetes) -> list[dict[str, Any]]:
    return [vs for vs in k8s.virtualservices("bruno")
            if vs["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "loadkit"]


def test_pod_kill_terminates_one_canary_pod_only(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    primary = {p["metadata"]["name"] for p in k8s.pods("bruno", "app=bruno-site-primary")}
    canary = {p["metadata"]["name"] for p in k8s.pods("bruno", "app=bruno-site")}
    code, result, stderr = chaos_run(sandbox, "pod-kill-canary.yaml", "--var", "observe_seconds:int=2", "-u", "20",
                                     env=env_for(sandbox, k8s))  # 2 s phases: 20 users for min_samples
    assert result is not None, stderr
    assert len(k8s.deleted_pods) == 1 and k8s.deleted_pods[0] in canary
    assert {p["metadata"]["name"] for p in k8s.pods("bruno", "app=bruno-site-primary")} == primary
    assert len(k8s.pods("bruno", "app=bruno-site")) == 2  # the Deployment replaced it
    assert result["steady_state_before_met"] is True and result["rollbacks"]["run"] == 1
    assert next(c for c in result["checks"] if c["name"] == "method")["passed"] is True
    assert code == 0, [(c["name"], c["reason"]) for c in result["checks"] if not c["passed"]]
    assert not k8s.unexpected_requests


def test_the_primary_is_refused(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    code, result, stderr = chaos_run(sandbox, "pod-kill-canary.yaml", "--var", "canary=bruno-site-primary",
                                     env=env_for(sandbox, k8s))
    assert code == 2 and result is None
    assert "primary workload" in stderr and "--allow-primary" in stderr
    assert k8s.deleted_pods == [] and not [r for r in k8s.requests if r[0] == "DELETE"]


def test_system_namespaces_are_refused(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    code, _, stderr = chaos_run(sandbox, "pod-kill-canary.yaml", "--var", "namespace=kube-system",
                                env=env_for(sandbox, k8s))
    assert code == 2 and "system namespace" in stderr
    code, _, stderr = chaos_run(sandbox, "latency-canary.yaml", "--allow-namespace", "shop",
                                env=env_for(sandbox, k8s))
    assert code == 2 and "not in the allow-list" in stderr
    assert k8s.virtualservices() == []


def test_latency_virtualservice_exists_during_the_fault_and_is_gone_after(
        sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    seen: list[dict[str, Any]] = []
    watcher = threading.Thread(target=lambda: seen.extend(k8s.wait_for(lambda: loadkit_vs(k8s), timeout=60)))
    watcher.start()
    code, result, stderr = chaos_run(sandbox, "latency-canary.yaml", "--var", "fault_seconds:int=3",
                                     env=env_for(sandbox, k8s))
    watcher.join()
    assert result is not None and code == 0, stderr  # the mesh is faked: the sandbox load itself is fine
    [vs] = seen
    labels, spec = vs["metadata"]["labels"], vs["spec"]
    assert labels["loadkit.io/canary"] == "bruno-site" and labels["loadkit.io/run"]
    assert "loadkit.io/expires-at" in vs["metadata"]["annotations"]
    assert spec["hosts"] == ["bruno-site-canary.bruno.svc.cluster.local"]
    assert spec["http"][0]["fault"] == {"delay": {"fixedDelay": "600ms", "percentage": {"value": 100.0}}}
    assert loadkit_vs(k8s) == []  # removed by the rollback
    assert result["rollbacks"] == {"planned": 1, "run": 1, "failed": 0, "leftovers_removed": [], "leftovers_failed": []}
    assert all(vs["metadata"]["name"].startswith("loadkit-") for vs in seen)


def test_dependency_abort_targets_only_the_canarys_calls(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    seen: list[dict[str, Any]] = []
    watcher = threading.Thread(target=lambda: seen.extend(k8s.wait_for(lambda: loadkit_vs(k8s), timeout=60)))
    watcher.start()
    code, result, stderr = chaos_run(sandbox, "dependency-abort.yaml", "--var", "fault_seconds:int=2",
                                     env=env_for(sandbox, k8s))
    watcher.join()
    assert result is not None and code == 0, stderr
    [vs] = seen
    route = vs["spec"]["http"][0]
    assert vs["spec"]["hosts"] == ["payments.bruno.svc.cluster.local"]
    assert route["match"] == [{"sourceLabels": {"app": "bruno-site"}}]
    assert route["fault"] == {"abort": {"httpStatus": 503, "percentage": {"value": 10.0}}}
    # every other caller of the host keeps its route (a VirtualService with only a matched route
    # leaves them with none under Istio)
    assert vs["spec"]["http"][1:] == [{"route": [{"destination": {"host": "payments.bruno.svc.cluster.local"}}]}]
    assert loadkit_vs(k8s) == []


def test_sigterm_mid_fault_still_removes_the_virtualservice(sandbox: SandboxProcess, k8s: FakeKubernetes) -> None:
    code, result, stderr = interrupt_mid_fault(sandbox, "latency-canary.yaml", signal.SIGTERM, "--var",
                                               "fault_seconds:int=60", env=env_for(sandbox, k8s),
                                               fault_active=lambda: bool(loadkit_vs(k8s)))
    assert code == 130, stderr
    assert result["interrupted"] is True and result["rollbacks"]["run"] == 1
    assert loadkit_vs(k8s) == []


def test_cleanup_removes_planted_leftovers_only(k8s: FakeKubernetes) -> None:
    managed = {"app.kubernetes.io/managed-by": "loadkit"}
    k8s.plant_virtualservice("bruno", "loadkit-delay-bruno-site", labels=managed)
    k8s.plant_virtualservice("shop", "loadkit-abort-shop", labels=managed)
    k8s.plant_virtualservice("bruno", "bruno-site", labels={"app.kubernetes.io/managed-by": "flagger"})
    out = run_loadkit("chaos", "cleanup", "--namespace", "bruno", env=k8s.env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "removed VirtualService bruno/loadkit-delay-bruno-site"
    assert {vs["metadata"]["name"] for vs in k8s.virtualservices()} == {"loadkit-abort-shop", "bruno-site"}
    out = run_loadkit("chaos", "cleanup", env=k8s.env())
    assert "removed VirtualService shop/loadkit-abort-shop" in out.stdout
    assert {vs["metadata"]["name"] for vs in k8s.virtualservices()} == {"bruno-site"}  # Flagger's is untouched
    out = run_loadkit("chaos", "cleanup", env=k8s.env())
    assert out.stdout.strip() == "nothing left behind"


def test_cleanup_of_an_unreachable_cluster_says_so_and_exits_3() -> None:
    out = run_loadkit("chaos", "cleanup", env={"KUBECONFIG": "/dev/null/none", "KUBERNETES_HOST": "http://127.0.0.1:9"})
    assert out.returncode == 3, out.stdout
    assert "could not clean: Kubernetes, every namespace: cannot reach the API (" in out.stdout
    assert "Connection refused" in out.stdout and "Traceback" not in out.stderr


def test_cleanup_without_a_configured_cluster_skips_it_and_exits_0() -> None:
    out = run_loadkit("chaos", "cleanup", env={"KUBECONFIG": "/dev/null/none", "HOME": "/nonexistent"})
    assert out.returncode == 0, out.stdout
    assert "Kubernetes: none configured" in out.stdout and "nothing left behind" in out.stdout


def test_a_direct_chaosk8s_kill_over_the_cap_is_refused_before_the_run(sandbox: SandboxProcess,
                                                                         k8s: FakeKubernetes, tmp_path) -> None:
    import yaml

    from tests.chaos.conftest import EXPERIMENTS

    experiment = yaml.safe_load((EXPERIMENTS / "pod-kill-canary.yaml").read_text())
    experiment["method"][0]["provider"] = {"type": "python", "module": "chaosk8s.pod.actions",
                                           "func": "terminate_pods",
                                           "arguments": {"label_selector": "app=bruno-site", "ns": "bruno", "qty": 2}}
    path = tmp_path / "kill-both.yaml"
    path.write_text(yaml.safe_dump(experiment))
    code, result, stderr = chaos_run(sandbox, path, env=env_for(sandbox, k8s))
    assert code == 2 and result is None and "killing 2 of 2 pods is over the cap" in stderr
    assert k8s.deleted_pods == []


def test_the_pod_kill_rollback_waits_for_every_replica(sandbox: SandboxProcess) -> None:
    with FakeKubernetes(recreate_after_s=4) as slow:
        code, result, stderr = chaos_run(sandbox, "pod-kill-canary.yaml", "--var", "observe_seconds=1",
                                         env=env_for(sandbox, slow))
        assert result is not None and code == 0, stderr
        ready = [p for p in slow.pods("bruno", "app=bruno-site") if p["status"]["phase"] == "Running"]
        assert len(ready) == 2  # the rollback returned only once the replacement was up
        assert result["rollbacks"]["failed"] == 0


def test_another_runs_active_fault_refuses_and_an_expired_one_is_removed(sandbox: SandboxProcess,
                                                                          k8s: FakeKubernetes) -> None:
    labels = {"app.kubernetes.io/managed-by": "loadkit", "loadkit.io/canary": "bruno-site", "loadkit.io/run": "old"}
    k8s.plant_virtualservice("bruno", "loadkit-delay-bruno-site-old", labels=labels)
    vs = k8s.virtualservices("bruno")[0]
    vs["metadata"]["annotations"] = {"loadkit.io/expires-at": "2099-01-01T00:00:00+00:00"}

    httpcalls.put(f"{k8s.url}/apis/networking.istio.io/v1beta1/namespaces/bruno/virtualservices/{vs['metadata']['name']}",
                  json=vs).raise_for_status()
    code, result, stderr = chaos_run(sandbox, "latency-canary.yaml", "--var", "fault_seconds=1",
                                     env=env_for(sandbox, k8s))
    assert code == 2 and "another loadkit fault is active on bruno/bruno-site" in stderr
    vs = k8s.virtualservices("bruno")[0]
    vs["metadata"]["annotations"] = {"loadkit.io/expires-at": "2000-01-01T00:00:00+00:00"}
    httpcalls.put(f"{k8s.url}/apis/networking.istio.io/v1beta1/namespaces/bruno/virtualservices/{vs['metadata']['name']}",
                  json=vs).raise_for_status()
    code, result, stderr = chaos_run(sandbox, "latency-canary.yaml", "--var", "fault_seconds=1", "-u", "20",
                                     env=env_for(sandbox, k8s))  # a 1 s fault: 20 users for min_samples in it
    assert result is not None and code == 0, [(c["name"], c["reason"]) for c in result["checks"] if not c["passed"]]
    assert any("expired loadkit fault" in w for w in result["warnings"])
    assert loadkit_vs(k8s) == []
