"""deploy/: manifests parse, carry the right kinds and apiVersions, and agree with loadkit itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.cli import cli
from loadkit.config import load_config
from loadkit.units import parse_duration
from loadkit.webhook.models import FlaggerPayload, HookKind
from loadkit.webhook.policy import Policy, resolve
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
API_VERSIONS = {
    "Namespace": "v1", "ServiceAccount": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1", "Canary": "flagger.app/v1beta1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "CronJob": "batch/v1",
    "AuthorizationPolicy": "security.istio.io/v1", "PeerAuthentication": "security.istio.io/v1",
}
EXAMPLES = sorted(p.name for p in (DEPLOY / "examples").glob("*.yaml"))
# The webhook's documented metadata keys (deploy/README.md), written out so that these tests do not
# lean on the policy module's internals.
RUN_KEYS = {"profile", "target", "duration", "users", "spawn_rate", "headers", "thresholds", "service", "workload"}
METADATA_KEYS = RUN_KEYS | {"gate", "rollback_on"}
RUN_HOOKS = {"pre-rollout", "rollout"}
GATE_HOOKS = {"confirm-rollout", "confirm-traffic-increase", "confirm-promotion"}
FLAGGER_PRINCIPAL = "cluster.local/ns/istio-system/sa/flagger"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifests_parse_with_known_kinds(path: Path) -> None:
    if path.name == "loadkit.yaml":
        return  # loadkit's own config, checked below
    for doc in documents(path):
        assert API_VERSIONS[doc["kind"]] == doc["apiVersion"], path


def example(name: str) -> dict[str, Any]:
    [canary] = documents(DEPLOY / "examples" / name)
    return canary


def hooks(name: str) -> list[dict[str, Any]]:
    return list(example(name)["spec"]["analysis"]["webhooks"])


def pod_template() -> dict[str, Any]:
    [deployment] = documents(DEPLOY / "base" / "deployment.yaml")
    return dict(deployment["spec"]["template"])


def test_kustomization_lists_files_that_exist() -> None:
    [kustomization] = documents(DEPLOY / "base" / "kustomization.yaml")
    kinds = set()
    for resource in kustomization["resources"]:
        kinds |= {d["kind"] for d in documents(DEPLOY / "base" / resource)}
    assert kinds == {"Namespace", "ServiceAccount", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"}
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (DEPLOY / "base" / file).is_file()


def test_the_shipped_server_config_is_valid() -> None:
    config = load_config(DEPLOY / "base" / "loadkit.yaml")
    assert {"smoke", "steady", "checkout"} <= set(config.profiles) and "strict" in config.threshold_sets


def test_deployment_runs_loadkit_serve_with_valid_options() -> None:
    [deployment] = documents(DEPLOY / "base" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[0] == "serve"
    known = serve_options()
    # --log-format is new in loadkit serve; its own test below says when it is missing.
    parsed = [a for a in args[1:] if "--log-format" in known or not a.startswith("--log-format")]
    cli.commands["serve"].make_context("serve", parsed)  # every option exists and parses
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/loadkit", "/var/lib/loadkit", "/tmp"} <= mounts


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_canaries_use_real_hooks_profiles_and_metadata(name: str) -> None:
    [canary] = documents(DEPLOY / "examples" / name)
    assert (canary["metadata"]["name"], canary["metadata"]["namespace"]) == ("bruno-site", "bruno")
    analysis = canary["spec"]["analysis"]
    metrics = {m["name"]: m["thresholdRange"] for m in analysis["metrics"]}
    assert metrics == {"request-success-rate": {"min": 99}, "request-duration": {"max": 500}}
    config = load_config(DEPLOY / "base" / "loadkit.yaml")
    types = set()
    for hook in analysis["webhooks"]:
        kind = HookKind(hook["type"])
        types.add(kind)
        assert hook["url"] == f"http://loadkit.loadkit/flagger/{kind.value}"
        meta = hook.get("metadata", {})
        assert set(meta) <= METADATA_KEYS
        assert all(isinstance(v, str) for v in meta.values())  # Flagger metadata is strings only
        if "profile" in meta:
            assert meta["profile"] in config.profiles
    assert {HookKind.PRE_ROLLOUT, HookKind.ROLLOUT, HookKind.CONFIRM_PROMOTION, HookKind.ROLLBACK} <= types


@pytest.mark.parametrize("name", ["canary.yaml", "ab-testing.yaml", "blue-green.yaml"])
def test_example_hooks_pass_the_servers_own_policy(name: str) -> None:
    """What the shipped server (default allow-lists, shipped config) says to each example hook."""
    [canary] = documents(DEPLOY / "examples" / name)
    config = load_config(DEPLOY / "base" / "loadkit.yaml")
    for hook in canary["spec"]["analysis"]["webhooks"]:
        kind = HookKind(hook["type"])
        payload = FlaggerPayload(name=canary["metadata"]["name"], namespace=canary["metadata"]["namespace"],
                                 phase="Progressing", checksum="85d557f47b", metadata=hook.get("metadata"))
        call = resolve(kind, payload, config, Policy())  # raises on any refusal
        if kind in (HookKind.PRE_ROLLOUT, HookKind.ROLLOUT):
            assert call.target.startswith("http://bruno-site") and ".svc" in call.target
            assert call.profile is not None
            duration = call.duration_s or call.profile.duration_s
            timeout = float(hook.get("timeout", "10s").removesuffix("s"))
            if kind is HookKind.PRE_ROLLOUT:
                assert timeout > duration + 5, "the webhook must wait for the whole pre-rollout run"
            assert hook.get("retries", 0) >= 1


def test_the_canary_example_follows_the_plan() -> None:
    [canary] = documents(DEPLOY / "examples" / "canary.yaml")
    analysis = canary["spec"]["analysis"]
    assert (analysis["interval"], analysis["threshold"], analysis["stepWeight"], analysis["maxWeight"]) == \
        ("30s", 10, 10, 50)


def test_ab_example_matches_the_insider_header() -> None:
    [canary] = documents(DEPLOY / "examples" / "ab-testing.yaml")
    analysis = canary["spec"]["analysis"]
    assert analysis["match"] == [{"headers": {"x-canary": {"exact": "insider"}}}]
    rollout = next(h for h in analysis["webhooks"] if h["type"] == "rollout")
    assert rollout["metadata"]["headers"] == "x-canary: insider"


def test_dockerfile_serves_as_non_root_on_8080() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and "EXPOSE 8080" in dockerfile
    assert 'ENTRYPOINT ["loadkit"]' in dockerfile and '"serve"' in dockerfile


def test_game_day_cronjob_runs_shipped_experiments_with_just_enough_rbac() -> None:
    [cronjob] = documents(DEPLOY / "chaos" / "cronjob.yaml")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = " ".join(pod["containers"][0]["args"])
    for name in ("pod-kill-canary.yaml", "latency-canary.yaml"):
        assert f"/experiments/{name}" in script and (ROOT / "experiments" / name).is_file()
    assert pod["serviceAccountName"] == "loadkit-chaos"
    role = next(d for d in documents(DEPLOY / "chaos" / "rbac.yaml") if d["kind"] == "Role")
    verbs = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert verbs[(("",), ("pods",))] >= {"list", "delete"}
    assert "delete" not in verbs[(("apps",), ("deployments",))]
    assert "COPY experiments /experiments" in (ROOT / "Dockerfile").read_text()


# -- Istio: deploy/istio = deploy/base + mTLS and an AuthorizationPolicy for Flagger's identity ----------


def test_istio_kustomization_adds_only_istio_policies_to_base() -> None:
    [kustomization] = documents(DEPLOY / "istio" / "kustomization.yaml")
    assert kustomization["namespace"] == "loadkit"
    resources = kustomization["resources"]
    assert "../base" in resources and (DEPLOY / "istio" / "../base" / "kustomization.yaml").is_file()
    kinds = set()
    for resource in resources:
        path = DEPLOY / "istio" / resource
        assert path.exists(), resource
        if path.is_file():
            kinds |= {d["kind"] for d in documents(path)}
    assert kinds == {"AuthorizationPolicy", "PeerAuthentication"}


def test_peer_authentication_is_strict_for_the_namespace() -> None:
    [peer] = documents(DEPLOY / "istio" / "peerauthentication.yaml")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}  # no selector: every workload in the namespace


def _matches(pattern: str, path: str) -> bool:
    """Istio's string match for paths: exact, `prefix*`, `*suffix`, or `*` (any)."""
    if pattern == "*":
        return bool(path)
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def _allowed(policy: dict[str, Any], principal: str | None, path: str) -> bool:
    """An ALLOW AuthorizationPolicy's answer, for the fields it uses (the test fails on any other)."""
    assert policy["spec"]["action"] == "ALLOW"
    path = path.partition("?")[0]  # Istio matches paths without the query
    for rule in policy["spec"]["rules"]:
        assert set(rule) <= {"from", "to"}
        sources = [f["source"] for f in rule.get("from", [])]
        operations = [t["operation"] for t in rule.get("to", [])]
        for source in sources:
            assert set(source) == {"principals"}, "extend _allowed for new source fields"
        for operation in operations:
            assert set(operation) <= {"paths", "notPaths"}, "extend _allowed for new operation fields"
        source_ok = not sources or any(principal is not None and any(_matches(p, principal) for p in s["principals"])
                                       for s in sources)
        operation_ok = not operations or any(
            (not o.get("paths") or any(_matches(p, path) for p in o["paths"]))
            and not any(_matches(p, path) for p in o.get("notPaths", []))
            for o in operations)
        if source_ok and operation_ok:
            return True
    return False


OTHER = "cluster.local/ns/bruno/sa/default"


@pytest.mark.parametrize(("principal", "path", "allowed"), [
    (FLAGGER_PRINCIPAL, "/flagger/rollout", True),
    (FLAGGER_PRINCIPAL, "/flagger/pre-rollout", True),
    (FLAGGER_PRINCIPAL, "/flagger/event?x=1", True),
    (FLAGGER_PRINCIPAL, "/healthz", True),
    (OTHER, "/flagger/rollout", False),
    (OTHER, "/flagger/confirm-promotion", False),
    ("cluster.local/ns/flagger-system/sa/flagger-loadtester", "/flagger/rollback", False),
    (None, "/flagger/rollout", False),
    # Istio's default normalization keeps %2F, loadkit's server decodes it into a hook's path:
    (OTHER, "/flagger%2Frollout", False),
    (OTHER, "/flagger%2frollback", False),
    (OTHER, "/healthz", True),
    (OTHER, "/readyz", True),
    (OTHER, "/metrics", True),
    (OTHER, "/runs/0b7c", True),
    (OTHER, "/admin/freeze", True),  # the bearer token protects it
    (None, "/metrics", True),
], ids=lambda v: str(v))
def test_authorization_policy_keeps_the_hooks_for_flagger(principal: str | None, path: str, allowed: bool) -> None:
    [policy] = documents(DEPLOY / "istio" / "authorizationpolicy.yaml")
    assert _allowed(policy, principal, path) is allowed


def test_authorization_policy_selects_the_loadkit_pod_and_names_one_principal() -> None:
    [policy] = documents(DEPLOY / "istio" / "authorizationpolicy.yaml")
    labels = pod_template()["metadata"]["labels"]
    assert policy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    principals = [p for rule in policy["spec"]["rules"] for f in rule.get("from", [])
                  for p in f["source"]["principals"]]
    assert principals == [FLAGGER_PRINCIPAL]  # no wildcard: exactly Flagger's service account


def test_network_policy_admits_flagger_and_prometheus_on_the_app_and_merged_metrics_ports() -> None:
    [policy] = documents(DEPLOY / "base" / "networkpolicy.yaml")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_template()["metadata"]["labels"].items()
    admitted: dict[int, set[str]] = {}
    for rule in policy["spec"]["ingress"]:
        namespaces = set()
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector"}  # whole namespaces, matched by their immutable name label
            namespaces.add(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            admitted.setdefault(port["port"], set()).update(namespaces)
    assert set(admitted) == {8080, 15020}
    assert {"istio-system", "flagger-system", "monitoring"} <= admitted[8080]  # hooks; direct scrapes
    assert {"istio-system", "monitoring"} <= admitted[15020]  # Istio's merged metrics


def test_pod_keeps_istio_metrics_merging_on() -> None:
    template = pod_template()
    annotations, labels = template["metadata"]["annotations"], template["metadata"]["labels"]
    # Istio's injector rewrites these to the sidecar's 15020 and merges loadkit's /metrics into it.
    # Any other annotation must be added here on purpose: several Istio ones turn merging off.
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                           "prometheus.io/path": "/metrics"}
    assert labels["sidecar.istio.io/inject"] == "true"
    [container] = template["spec"]["containers"]
    assert {"name": "http", "containerPort": 8080} in container["ports"]


def test_deployment_sets_pod_namespace_and_json_logs() -> None:
    [container] = pod_template()["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "--log-format=json" in container["args"]


def serve_options() -> set[str]:
    return {opt for param in cli.commands["serve"].params for opt in getattr(param, "opts", [])}


def test_loadkit_serve_accepts_the_deployments_log_format() -> None:
    if "--log-format" not in serve_options():
        pytest.skip("loadkit serve has no --log-format option yet; the Deployment passes --log-format=json")
    cli.commands["serve"].make_context("serve", ["--log-format=json"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
@pytest.mark.parametrize("overlay", ["base", "istio"])
def test_kustomize_builds(overlay: str) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    istio = {d["kind"] for d in docs if d["apiVersion"].startswith("security.istio.io/")}
    # base must apply on clusters without Istio's CRDs; istio adds exactly its two policies
    assert istio == (set() if overlay == "base" else {"AuthorizationPolicy", "PeerAuthentication"})
    assert all(d["metadata"].get("namespace") == "loadkit" for d in docs if d["kind"] != "Namespace")


# -- examples: gates, run-starting hooks, timeouts --------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_gate_hooks_alert_only_when_a_person_must_act(name: str) -> None:
    gates = [h for h in hooks(name) if h["type"] in GATE_HOOKS]
    assert gates, "every example has at least confirm-promotion"
    for hook in gates:
        manual = hook.get("metadata", {}).get("gate") in ("manual", "both")
        # a load gate waits by design (muted); a manual one waits for someone, who must hear of it
        assert hook.get("muteAlert", False) is not manual, f"{hook['name']}: muteAlert should be {not manual}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_metadata_belongs_to_its_hook(name: str) -> None:
    for hook in hooks(name):
        meta = hook.get("metadata", {})
        if hook["type"] == "event":
            continue  # any user metadata is passed along with Flagger's event
        assert set(meta) <= METADATA_KEYS, hook["name"]
        assert all(isinstance(v, str) for v in meta.values()), hook["name"]
        if hook["type"] in RUN_HOOKS:
            assert set(meta) <= RUN_KEYS, hook["name"]
        elif hook["type"] in GATE_HOOKS:
            assert set(meta) <= {"gate"} and meta.get("gate", "load") in {"load", "manual", "both"}, hook["name"]
        elif hook["type"] == "rollback":
            assert set(meta) <= {"rollback_on"}, hook["name"]
            assert meta.get("rollback_on", "manual") in {"manual", "decisive-breach"}, hook["name"]
        else:
            assert not meta, hook["name"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_run_hooks_retry_wait_long_enough_and_load_the_whole_analysis(name: str) -> None:
    config = load_config(DEPLOY / "base" / "loadkit.yaml")
    analysis = example(name)["spec"]["analysis"]
    rollout_timeouts = 0.0
    for hook in analysis["webhooks"]:
        if hook["type"] not in RUN_HOOKS:
            continue
        meta = hook.get("metadata", {})
        assert hook.get("retries", 0) >= 1, f"{hook['name']}: a 429 or 503 would cost a failed check"
        timeout = parse_duration(hook.get("timeout", "10s"))  # Flagger's default
        profile = config.profiles[meta.get("profile") or config.server.default_profiles[hook["type"]]]
        if hook["type"] == "pre-rollout":
            duration = meta.get("duration")
            run_s = parse_duration(duration) if duration else profile.duration_s
            assert timeout > run_s + 5, f"{hook['name']}: the hook must wait for the whole {run_s:.0f} s run"
        else:
            rollout_timeouts += timeout
            assert meta.get("duration") == "analysis", f"{hook['name']}: load for the whole analysis"
            constant = profile.shape == "constant" and not profile.stages
            assert constant, f"{hook['name']}: stages need a planned length, which `analysis` lacks"
    interval = parse_duration(analysis["interval"])
    assert rollout_timeouts < interval, "Flagger: rollout hooks' timeouts must sum below the interval"


def test_the_canary_example_rolls_back_on_a_decisive_breach() -> None:
    [rollback] = [h for h in hooks("canary.yaml") if h["type"] == "rollback"]
    assert rollback["metadata"] == {"rollback_on": "decisive-breach"}


def test_the_manual_gate_example_waits_for_people_twice() -> None:
    gates = {h["type"]: h.get("metadata", {}).get("gate") for h in hooks("manual-gate.yaml") if h["type"] in GATE_HOOKS}
    assert gates == {"confirm-rollout": "manual", "confirm-promotion": "manual"}
    [rollback] = [h for h in hooks("manual-gate.yaml") if h["type"] == "rollback"]
    assert rollback.get("metadata", {}).get("rollback_on", "manual") == "manual"
    text = (DEPLOY / "examples" / "manual-gate.yaml").read_text()
    assert "loadkit gate approve bruno/bruno-site --server http://loadkit.loadkit" in text


def test_readme_installs_istio_and_lists_every_example() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "kubectl apply -k deploy/istio" in readme and "kubectl apply -k deploy/base" in readme
    for name in EXAMPLES:
        assert f"`examples/{name}`" in readme, name
