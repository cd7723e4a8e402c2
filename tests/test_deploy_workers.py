"""deploy/workers: Locust worker pods for `loadkit serve`'s big runs (`server.workers`): the manifests
parse, agree with each other (labels, ports, command) and with loadkit's own config and CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.cli import cli
from loadkit.config import WorkersSpec, load_config
from loadkit.errors import ConfigError
from loadkit.load.runner import LoadPlan
from loadkit.load.shapes import Stage
from loadkit.units import parse_host_port
from loadkit.webhook.hooks import on_workers
from tests.conftest import ROOT

WORKERS = ROOT / "deploy" / "workers"
BASE = ROOT / "deploy" / "base"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in documents(path) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def worker_spec() -> WorkersSpec:
    spec = load_config(WORKERS / "loadkit.yaml").server.workers
    assert spec is not None
    return spec


def test_the_config_is_base_plus_server_workers() -> None:
    base, workers = yaml.safe_load((BASE / "loadkit.yaml").read_text()), yaml.safe_load(
        (WORKERS / "loadkit.yaml").read_text())
    added = workers["server"].pop("workers")
    assert workers == base, "deploy/workers/loadkit.yaml drifted from deploy/base/loadkit.yaml"
    assert set(added) == {"expect", "bind", "min_users", "wait"}
    assert load_config(BASE / "loadkit.yaml").server.workers is None


def test_worker_pods_run_loadkit_worker_against_the_master_service() -> None:
    deployment = one(WORKERS / "workers.yaml", "Deployment")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert "command" not in container  # args only: the image's tini entrypoint stays PID 1
    ctx = cli.commands["worker"].make_context("worker", list(container["args"][1:]))
    assert container["args"][0] == "worker"
    host, port = parse_host_port(ctx.params["master"])
    service = one(WORKERS / "master-service.yaml", "Service")
    assert host == f"{service['metadata']['name']}.loadkit"
    [service_port] = service["spec"]["ports"]
    assert port == service_port["port"] == worker_spec().address[1]
    # The same image as the master (another loadkit version is refused).
    [master] = one(BASE / "deployment.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == master["image"]
    assert deployment["spec"]["replicas"] == worker_spec().expect
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app"] != "loadkit"  # the master Service must not pick workers
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_the_master_service_reaches_the_loadkit_pods_named_port() -> None:
    service = one(WORKERS / "master-service.yaml", "Service")
    master_pod = one(BASE / "deployment.yaml", "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= master_pod["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    assert port["name"].startswith("tcp-")  # Istio: plain TCP, never sniffed as HTTP
    [patched] = one(WORKERS / "master-port.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in patched["ports"]}
    assert named[port["targetPort"]] == worker_spec().address[1] and named["http"] == 8080


def test_only_worker_pods_may_reach_the_master_port_and_nothing_reaches_a_worker() -> None:
    master = one(WORKERS / "networkpolicy.yaml", "NetworkPolicy", "loadkit-master-from-workers")
    worker_labels = one(WORKERS / "workers.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert master["spec"]["podSelector"]["matchLabels"] == {"app": "loadkit"}
    [rule] = master["spec"]["ingress"]
    [source] = rule["from"]
    assert set(source) == {"podSelector"}  # this namespace's worker pods only, no namespaceSelector
    assert source["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": worker_spec().address[1]}]
    closed = one(WORKERS / "networkpolicy.yaml", "NetworkPolicy", "loadkit-worker-ingress")
    assert closed["spec"]["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert closed["spec"]["policyTypes"] == ["Ingress"] and closed["spec"]["ingress"] == []


def test_worker_pods_may_reach_only_their_master_dns_and_the_target_namespaces() -> None:
    egress = one(WORKERS / "networkpolicy.yaml", "NetworkPolicy", "loadkit-worker-egress")
    worker_labels = one(WORKERS / "workers.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    master_labels = one(BASE / "deployment.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert egress["spec"]["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert egress["spec"]["policyTypes"] == ["Egress"]
    rules = egress["spec"]["egress"]
    # Every rule names where it goes: no rule without `to` (that would be anywhere).
    assert rules and all(r.get("to") for r in rules)
    master, dns, load, istiod = rules
    [to_master] = master["to"]
    assert to_master["podSelector"]["matchLabels"].items() <= master_labels.items()
    assert master["ports"] == [{"protocol": "TCP", "port": worker_spec().address[1]}]
    assert {p["port"] for p in dns["ports"]} == {53}
    [to_load] = load["to"]
    assert to_load == {"namespaceSelector": {"matchLabels": {"loadkit.io/target": "true"}}}
    assert istiod["ports"] == [{"protocol": "TCP", "port": 15012}]


def test_worker_pods_pin_their_load_and_share_a_token_with_the_master() -> None:
    [container] = one(WORKERS / "workers.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    ctx = cli.commands["worker"].make_context("worker", list(container["args"][1:]))
    assert ctx.params["pin"] is True
    [master] = one(WORKERS / "master-port.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    worker_ref = next(e for e in container["env"] if e["name"] == "LOADKIT_WORKER_TOKEN")["valueFrom"]
    master_ref = next(e for e in master["env"] if e["name"] == "LOADKIT_WORKER_TOKEN")["valueFrom"]
    assert worker_ref == master_ref and not worker_ref["secretKeyRef"].get("optional", False)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_the_workers_overlay_builds_on_base() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(WORKERS)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "loadkit"), ("Deployment", "loadkit-worker"), ("Service", "loadkit-master"),
            ("NetworkPolicy", "loadkit-ingress"), ("NetworkPolicy", "loadkit-master-from-workers")} <= names
    [serve] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "loadkit"]
    [container] = serve["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in container["ports"]} == {8080, 5557}
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert "workers:" in config["data"]["loadkit.yaml"]
    assert all(d["metadata"].get("namespace") == "loadkit" for d in docs if d["kind"] != "Namespace")


def _plan(users: int) -> LoadPlan:
    return LoadPlan(target="http://site-canary.bruno.svc:80", locustfile=Path("website.py"),
                    stages=[Stage(60, users, 50)], pin_to_target=False)


def test_serve_sends_runs_at_or_above_min_users_to_the_workers() -> None:
    spec = worker_spec()
    small, big = on_workers(_plan(spec.min_users - 1), spec), on_workers(_plan(spec.min_users), spec)
    assert small.workers == 0 and small.master_bind is None
    assert big.workers == spec.expect and big.master_bind == ("0.0.0.0", 5557) and big.workers_wait_s == spec.wait
    # Pinned by on_workers itself, whatever the plan it was given: the worker pods' --pin refuses
    # any other plan, so an unpinned worker run would never start.
    assert big.pin_to_target is True and small.pin_to_target is False
    assert on_workers(_plan(10_000), None).workers == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("server:\n  workers: {expect: 2, min_user: 5}\n", ["server.workers.min_user", "did you mean 'min_users'"]),
    ("server:\n  workers: {expect: 0}\n", ["server.workers.expect", "greater than or equal to 1"]),
    ("server:\n  workers: {expect: 2, bind: 'nowhere'}\n", ["server.workers.bind", "HOST:PORT"]),
    ("server:\n  worker: {expect: 2}\n", ["server.worker", "did you mean 'workers'"]),
    ("server:\n  max_users: 100\n  workers: {expect: 2, min_users: 200}\n",
     ["server.workers.min_users", "above server.max_users"]),
    ("server:\n  workers: {expect: true}\n", ["server.workers.expect", "integer"]),
    ("server:\n  workers: {expect: 2, bind: 'fe80::1:5557'}\n", ["server.workers.bind", "brackets"]),
], ids=["typo", "zero", "bad-bind", "typo-section", "min-above-max", "bool-expect", "ipv6-no-brackets"])
def test_bad_server_workers_are_refused_with_the_field(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "loadkit.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value.message) + str(err.value.hint or "")
    for part in expected:
        assert part in message, message


def test_serve_refuses_a_worker_bind_on_its_own_port(loadkit_in_process: Any, tmp_path: Path) -> None:
    path = tmp_path / "loadkit.yaml"
    path.write_text("schema_version: 1\nserver:\n  workers: {expect: 2, bind: '0.0.0.0:8080'}\n")
    proc = loadkit_in_process("serve", "--config", str(path), "--db", str(tmp_path / "db"), "--port", "8080")
    assert proc.returncode == 2, proc.stderr
    assert "server.workers.bind" in proc.stderr and "fix:" in proc.stderr
