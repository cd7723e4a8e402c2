"""deploy/: manifests parse, carry the right kinds and apiVersions, and agree with loadkit itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.cli import cli
from loadkit.config import load_config
from loadkit.webhook.models import FlaggerPayload, HookKind
from loadkit.webhook.policy import VALID_KEYS, Policy, resolve
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
API_VERSIONS = {
    "Namespace": "v1", "ServiceAccount": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1", "Canary": "flagger.app/v1beta1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1", "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1", "CronJob": "batch/v1",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifests_parse_with_known_kinds(path: Path) -> None:
    if path.name == "loadkit.yaml":
        return  # loadkit's own config, checked below
    for doc in documents(path):
        assert API_VERSIONS[doc["kind"]] == doc["apiVersion"], path


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
    cli.commands["serve"].make_context("serve", list(args[1:]))  # every option exists and parses
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/loadkit", "/var/lib/loadkit", "/tmp"} <= mounts


@pytest.mark.parametrize("name", ["canary.yaml", "ab-testing.yaml", "blue-green.yaml"])
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
        assert set(meta) <= set(VALID_KEYS)
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
