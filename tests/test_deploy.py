"""deploy/: manifests parse, carry the right kinds and apiVersions, and agree with loadkit itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
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
    "ValidatingAdmissionPolicy": "admissionregistration.k8s.io/v1",
    "ValidatingAdmissionPolicyBinding": "admissionregistration.k8s.io/v1",
}
EXAMPLES = sorted(p.name for p in (DEPLOY / "examples").glob("*.yaml"))
# The webhook's documented metadata keys (deploy/README.md), written out so that these tests do not
# lean on the policy module's internals.
RUN_KEYS = {"profile", "target", "duration", "users", "spawn_rate", "rate", "headers", "thresholds", "service",
            "workload"}
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


# -- the image: tini as PID 1, loadkit as its child ------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = " ".join(line.rstrip().removesuffix("\\") if line.rstrip().endswith("\\") else line + "\n"
                      for line in lines)
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def test_dockerfile_runs_loadkit_under_tini_as_non_root() -> None:
    instructions = dockerfile_instructions()
    [entrypoint] = [json.loads(args) for word, args in instructions if word == "ENTRYPOINT"]
    assert entrypoint == ["/usr/bin/tini", "--", "loadkit"]  # exec form: tini is PID 1, no shell
    [cmd] = [json.loads(args) for word, args in instructions if word == "CMD"]
    assert cmd[0] == "serve"
    words = [word for word, _ in instructions]
    installs = [i for i, (word, args) in enumerate(instructions)
                if word == "RUN" and re.search(r"apt-get install\b[^&;]*\btini\b", args)]
    assert installs, "Debian's tini must be installed"
    users = [args for word, args in instructions if word == "USER"]
    assert users[-1] == "10001" and installs[0] < words.index("USER"), "installed as root, run as 10001"
    assert ("EXPOSE", "8080") in instructions
    assert ("COPY", "experiments /experiments") in instructions


# -- chaos: deploy/chaos (namespaced game days) and deploy/chaos/admission (cluster-scoped guards) -------

CHAOS = DEPLOY / "chaos"
CANARY_NAMESPACE, CHAOS_SA_NAMESPACE = "bruno", "loadkit"
GAMEDAY_ACCOUNT = "loadkit-gameday"  # deploy/gameday/rbac.yaml; tests/test_deploy_gameday.py checks its Role
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"}
# The least each kind of chaos Job needs, (apiGroup, resource) -> verbs; deploy/README.md says why.
CHAOS_ROLES = {
    "loadkit-chaos-pods": {
        ("", "pods"): {"get", "list", "watch", "delete"},
        ("apps", "deployments"): {"get", "list", "watch"},
        ("", "services"): {"get", "list"},
        ("networking.istio.io", "virtualservices"): {"get", "list", "delete"},
    },
    "loadkit-chaos-mesh": {
        ("networking.istio.io", "virtualservices"): {"get", "list", "watch", "create", "delete", "patch"},
        ("", "pods"): {"get", "list"},
        ("", "services"): {"get", "list"},
        ("apps", "deployments"): {"get", "list"},
        ("chaos-mesh.org", "networkchaos"): {"get", "list", "create", "delete"},
        ("chaos-mesh.org", "stresschaos"): {"get", "list", "create", "delete"},
    },
    "loadkit-chaos-reaper": {("networking.istio.io", "virtualservices"): {"get", "list", "delete"},
                             ("chaos-mesh.org", "networkchaos"): {"get", "list", "delete"},
                             ("chaos-mesh.org", "stresschaos"): {"get", "list", "delete"}},
}
# The service account an experiment runs as follows from the actions its method plays.
ACTION_KINDS = {
    ("loadkit.chaos.k8s", "kill_canary_pods"): "loadkit-chaos-pods",
    ("chaosk8s.pod.actions", "terminate_pods"): "loadkit-chaos-pods",
    ("loadkit.chaos.k8s", "add_canary_delay"): "loadkit-chaos-mesh",
    ("loadkit.chaos.k8s", "add_canary_abort"): "loadkit-chaos-mesh",
    ("loadkit.chaos.k8s", "add_dependency_abort"): "loadkit-chaos-mesh",
    ("loadkit.chaos.k8s", "add_dependency_delay"): "loadkit-chaos-mesh",
    ("loadkit.chaos.k8s", "add_canary_network_fault"): "loadkit-chaos-mesh",
    ("loadkit.chaos.k8s", "add_canary_stress"): "loadkit-chaos-mesh",
}


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(DEPLOY.rglob("*.yaml")) if path.name != "loadkit.yaml"
            for doc in documents(path)]


def containers(node: Any) -> list[dict[str, Any]]:
    """Every container and init container of every pod template in a manifest."""
    if isinstance(node, list):
        return [c for item in node for c in containers(item)]
    if not isinstance(node, dict):
        return []
    found = [c for key in ("containers", "initContainers") for c in node.get(key, [])]
    return found + [c for key, value in node.items() if key not in ("containers", "initContainers")
                    for c in containers(value)]


def cronjobs() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == "CronJob"}


def job_template(cronjob: dict[str, Any]) -> dict[str, Any]:
    return dict(cronjob["spec"]["jobTemplate"]["spec"]["template"])


def job_deadline(cronjob: dict[str, Any]) -> int:
    return int(cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"])


def loadkit_args(cronjob: dict[str, Any]) -> list[str]:
    [container] = job_template(cronjob)["spec"]["containers"]
    assert container["image"] == "loadkit" and "command" not in container
    return list(container["args"])


def chaos_runs() -> list[str]:
    return sorted(name for name, job in cronjobs().items() if loadkit_args(job)[:2] == ["chaos", "run"])


def parse_loadkit(args: list[str]) -> click.Context:
    """Parse a container's args with loadkit's real CLI, as the image's entrypoint will."""
    command: click.Command = cli
    name, rest = "loadkit", list(args)
    while isinstance(command, click.Group):
        name, *rest = rest
        command = command.commands[name]
    return command.make_context(name, rest)


def option(ctx: click.Context, flag: str) -> Any:
    """The parsed value of `flag`, whatever the command's Python name for it."""
    [param] = [p for p in ctx.command.params if flag in p.opts]
    return ctx.params[param.name or ""]


def chaos_documents(kind: str) -> list[dict[str, Any]]:
    return [doc for path, doc in manifests() if path.is_relative_to(CHAOS) and doc["kind"] == kind]


def test_no_container_runs_loadkit_under_a_shell() -> None:
    seen = 0
    for path, doc in manifests():
        for container in containers(doc):
            seen += 1
            where = f"{path.relative_to(DEPLOY)}: {container['name']}"
            command, args = container.get("command", []), container.get("args", [])
            assert not (command and Path(command[0]).name in SHELLS), f"{where}: a shell is PID 1"
            assert "-c" not in command + args, f"{where}: a `-c` script"
            if container["image"] == "loadkit":
                # `command:` replaces the image's entrypoint, and with it tini as PID 1
                assert "command" not in container, f"{where}: args only, the entrypoint runs loadkit"
    assert seen >= 1 + len(cronjobs())


def test_game_days_run_one_experiment_per_cronjob() -> None:
    assert chaos_runs() == ["loadkit-chaos-latency", "loadkit-chaos-pod-kill"]
    schedules = [cronjobs()[name]["spec"]["schedule"] for name in chaos_runs()]
    assert len(set(schedules)) == len(schedules), "two game days at once would fight over the canary"
    starts = []
    for schedule in schedules:
        minute, hour, *days = schedule.split()
        starts.append((tuple(days), int(hour) * 60 + int(minute)))
    if starts[0][0] == starts[1][0]:  # the same days: apart by more than a Job may last
        longest = max(job_deadline(cronjobs()[name]) for name in chaos_runs())
        assert abs(starts[0][1] - starts[1][1]) * 60 >= longest


@pytest.mark.parametrize("name", sorted(cronjobs()))
def test_every_cronjob_is_bounded_and_never_overlaps_itself(name: str) -> None:
    cronjob = cronjobs()[name]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert job_deadline(cronjob) > 0
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert job_template(cronjob)["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("name", chaos_runs())
def test_chaos_runs_get_time_to_roll_back_and_send_their_load_through_the_mesh(name: str) -> None:
    cronjob = cronjobs()[name]
    template = job_template(cronjob)
    grace = template["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 60, "SIGTERM -> rollbacks, loadkit's clean-up and Locust's stop (up to 15 s)"
    # Istio applies a VirtualService's fault in the calling sidecar: load without one is a false PASS.
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    annotations = template["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/nativeSidecar"] == "true"  # the Job can complete
    assert json.loads(annotations["proxy.istio.io/config"]) == {"holdApplicationUntilProxyStarts": True}
    [container] = template["spec"]["containers"]
    assert {"name": "CHAOSTOOLKIT_IN_POD", "value": "true"} in container["env"]


@pytest.mark.parametrize("name", chaos_runs())
def test_chaos_runs_parse_with_loadkit_and_play_a_shipped_experiment_as_its_kind(name: str) -> None:
    cronjob = cronjobs()[name]
    args = loadkit_args(cronjob)
    experiment = next(a for a in args if a.startswith("/experiments/"))
    local = ROOT / "experiments" / experiment.removeprefix("/experiments/")
    assert local.is_file(), f"{experiment} is not shipped (the image copies experiments/ to /experiments)"
    ctx = parse_loadkit([str(local) if a == experiment else a for a in args])
    assert ctx.params["experiment"] == local
    assert option(ctx, "--allow-namespace") == (CANARY_NAMESPACE,)
    [plan] = documents(local)
    assert plan["configuration"]["namespace"]["default"] == CANARY_NAMESPACE
    kinds = {ACTION_KINDS[(a["provider"]["module"], a["provider"]["func"])]
             for a in plan["method"] if a["type"] == "action"}
    assert kinds == {job_template(cronjob)["spec"]["serviceAccountName"]}, "the service account of its kind"


def reaper() -> dict[str, Any]:
    return cronjobs()["loadkit-chaos-reaper"]


def test_the_reaper_often_removes_expired_faults_in_the_canarys_namespace() -> None:
    cronjob = reaper()
    assert cronjob["spec"]["schedule"] == "*/5 * * * *"
    args = loadkit_args(cronjob)
    assert args[:2] == ["chaos", "cleanup"] and "--expired" in args
    spelled = " ".join(args).replace("=", " ")
    assert f"--namespace {CANARY_NAMESPACE}" in spelled, "clean-up is namespace-scoped (no cluster-wide list)"
    template = job_template(cronjob)
    assert template["spec"]["serviceAccountName"] == "loadkit-chaos-reaper"
    # it only talks to the API server; a classic sidecar would keep every reaper pod running
    assert template["metadata"]["labels"].get("sidecar.istio.io/inject") == "false"
    [container] = template["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "10m", "memory": "64Mi"}
    assert container["resources"]["limits"]["memory"] == "128Mi"


def test_the_reaper_args_parse_with_loadkit() -> None:
    ctx = parse_loadkit(loadkit_args(reaper()))
    assert option(ctx, "--expired") is True
    assert option(ctx, "--namespace") == (CANARY_NAMESPACE,)  # repeatable: one per namespace game days touch


def test_chaos_rbac_is_namespaced_and_minimal_per_kind() -> None:
    kinds = {doc["kind"] for path, doc in manifests() if path.is_relative_to(CHAOS)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = {role["metadata"]["name"]: role for role in chaos_documents("Role")}
    assert set(roles) == set(CHAOS_ROLES)
    for name, role in roles.items():
        assert role["metadata"]["namespace"] == CANARY_NAMESPACE
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, f"{name}: no resourceNames, no URLs"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
        assert granted == CHAOS_ROLES[name], name
    accounts = {sa["metadata"]["name"] for sa in chaos_documents("ServiceAccount")}
    assert accounts == set(CHAOS_ROLES)
    assert all(sa["metadata"]["namespace"] == CHAOS_SA_NAMESPACE for sa in chaos_documents("ServiceAccount"))
    bindings = {b["metadata"]["name"]: b for b in chaos_documents("RoleBinding")}
    assert set(bindings) == set(CHAOS_ROLES)
    for name, binding in bindings.items():
        assert binding["metadata"]["namespace"] == CANARY_NAMESPACE
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": CHAOS_SA_NAMESPACE}]
    for path, doc in manifests():
        if path.is_relative_to(CHAOS) and doc["kind"] == "CronJob":
            assert job_template(doc)["spec"]["serviceAccountName"] in accounts


def test_chaos_kustomization_keeps_the_roles_in_the_canarys_namespace() -> None:
    [kustomization] = documents(CHAOS / "kustomization.yaml")
    assert "namespace" not in kustomization, "it would move the Roles and RoleBindings out of bruno"
    kinds = set()
    for resource in kustomization["resources"]:
        for doc in documents(CHAOS / resource):
            kinds.add(doc["kind"])
            assert doc["metadata"]["namespace"] in (CANARY_NAMESPACE, CHAOS_SA_NAMESPACE)
    assert kinds == {"ServiceAccount", "Role", "RoleBinding", "CronJob"}  # cluster-scoped: admission/
    listed = {CHAOS / r for r in kustomization["resources"]}
    assert listed == {p for p in CHAOS.glob("*.yaml") if p.name != "kustomization.yaml"}


# The admission policy, read as text: no API server here. Each check names what the CEL must mention.

def admission_documents(kind: str) -> list[dict[str, Any]]:
    [kustomization] = documents(CHAOS / "admission" / "kustomization.yaml")
    return [doc for resource in kustomization["resources"] for doc in documents(CHAOS / "admission" / resource)
            if doc["kind"] == kind]


def admission_policy(resource: str) -> dict[str, Any]:
    [policy] = [p for p in admission_documents("ValidatingAdmissionPolicy")
                if any(resource in rule["resources"] for rule in p["spec"]["matchConstraints"]["resourceRules"])]
    return policy


def validations(policy: dict[str, Any]) -> str:
    return " && ".join(f"({v['expression']})" for v in policy["spec"]["validations"])


def test_admission_policies_are_cluster_scoped_bound_and_fail_closed() -> None:
    policies = admission_documents("ValidatingAdmissionPolicy")
    bindings = admission_documents("ValidatingAdmissionPolicyBinding")
    assert len(policies) == 2
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(p["metadata"]["name"] for p in policies)
    for doc in policies + bindings:
        assert "namespace" not in doc["metadata"]
    for binding in bindings:
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert "matchResources" not in binding["spec"], "wherever the service accounts are granted"
    for policy in policies:
        assert policy["spec"]["failurePolicy"] == "Fail"
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
            assert set(rule["operations"]) <= {"CREATE", "UPDATE", "DELETE"}  # PATCH arrives as UPDATE


@pytest.mark.parametrize("resource", ["pods", "virtualservices"])
def test_admission_policies_apply_to_every_chaos_service_account_and_no_one_else(resource: str) -> None:
    policy = admission_policy(resource)
    conditions = " ".join(c["expression"] for c in policy["spec"]["matchConditions"])
    assert "request.userInfo.username" in conditions
    named = set(re.findall(r"'(system:serviceaccount:[^']+)'", conditions))
    accounts = [*CHAOS_ROLES, GAMEDAY_ACCOUNT]  # the game day (deploy/gameday) deletes pods and VirtualServices too
    assert named == {f"system:serviceaccount:{CHAOS_SA_NAMESPACE}:{sa}" for sa in accounts}


def test_admission_denies_deleting_flaggers_primary_pods() -> None:
    policy = admission_policy("pods")
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == ([""], ["pods"], ["DELETE"])
    cel = validations(policy)
    # On DELETE `object` is null: only `oldObject` (the pod being deleted) may be read.
    assert "oldObject.metadata.labels" in cel and not re.search(r"(?<![A-Za-z])object\b", cel)
    assert "'app'" in cel and "endsWith('-primary')" in cel


def test_admission_keeps_chaos_to_loadkits_own_virtualservices() -> None:
    policy = admission_policy("virtualservices")
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["networking.istio.io"] and rule["apiVersions"] == ["*"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    cel = validations(policy)
    # oldObject is null on CREATE, object on DELETE: each is read only past its null check.
    for var in ("oldObject", "object"):
        assert f"{var} == null ||" in cel
        assert f"{var}.metadata.labels['app.kubernetes.io/managed-by'] == 'loadkit'" in cel


def _object(labels: dict[str, str] | None) -> dict[str, Any]:
    return {"metadata": {"name": "p", **({"labels": labels} if labels is not None else {})}}


MINE = {"app.kubernetes.io/managed-by": "loadkit", "loadkit.io/canary": "bruno-site", "loadkit.io/run": "0b7c"}
FLAGGERS = {"app": "bruno-site", "app.kubernetes.io/managed-by": "flagger"}


@pytest.mark.parametrize(("resource", "operation", "old", "new", "allowed"), [
    ("pods", "DELETE", {"app": "bruno-site"}, None, True),
    ("pods", "DELETE", {"app": "bruno-site-primary"}, None, False),
    ("pods", "DELETE", {"app.kubernetes.io/name": "bruno-site-primary"}, None, False),
    ("pods", "DELETE", {"app": "bruno-site", "name": "bruno-site-primary"}, None, False),
    ("pods", "DELETE", None, None, True),
    ("virtualservices", "CREATE", None, MINE, True),
    ("virtualservices", "CREATE", None, {}, False),
    ("virtualservices", "UPDATE", MINE, MINE, True),
    ("virtualservices", "UPDATE", FLAGGERS, FLAGGERS, False),
    ("virtualservices", "UPDATE", FLAGGERS, MINE, False),  # relabelling Flagger's as loadkit's
    ("virtualservices", "UPDATE", MINE, {}, False),
    ("virtualservices", "DELETE", MINE, None, True),
    ("virtualservices", "DELETE", FLAGGERS, None, False),
    ("virtualservices", "DELETE", None, None, False),  # no labels at all
], ids=lambda v: str(v))
def test_admission_policy_decisions(resource: str, operation: str, old: dict[str, str] | None,
                                    new: dict[str, str] | None, allowed: bool) -> None:
    """The CEL evaluated by cel-python (not the API server's cel-go, but the same language)."""
    celpy = pytest.importorskip("celpy", reason="cel-python evaluates the admission policy's CEL")
    policy = admission_policy(resource)
    activation = {"request": {"operation": operation, "userInfo": {"username": "system:serviceaccount:loadkit:"
                                                                               "loadkit-chaos-mesh"}},
                  "oldObject": None if operation == "CREATE" else _object(old),
                  "object": None if operation == "DELETE" else _object(new)}
    env = celpy.Environment()

    def evaluate(expression: str) -> bool:
        program = env.program(env.compile(expression))
        return bool(program.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()}))

    assert all(evaluate(c["expression"]) for c in policy["spec"]["matchConditions"])
    assert all(evaluate(v["expression"]) for v in policy["spec"]["validations"]) is allowed


def test_deploy_readme_explains_the_game_days() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "kubectl apply -k deploy/chaos" in readme and "kubectl apply -k deploy/chaos/admission" in readme
    for name in [*cronjobs(), *CHAOS_ROLES]:
        assert f"`{name}`" in readme, name
    for needle in ("terminationGracePeriodSeconds", "sidecar.istio.io/nativeSidecar", "ValidatingAdmissionPolicy",
                   "--expired"):
        assert needle in readme, needle


def kustomize(path: Path) -> list[dict[str, Any]]:
    built = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_chaos_kustomizations_build() -> None:
    for doc in kustomize(CHAOS):
        rbac = doc["kind"] in ("Role", "RoleBinding")
        assert doc["metadata"]["namespace"] == (CANARY_NAMESPACE if rbac else CHAOS_SA_NAMESPACE), doc["metadata"]
        for container in containers(doc):
            assert container["image"] == "registry.example.com/platform/loadkit:0.1.0"
    admission = kustomize(CHAOS / "admission")
    assert {d["kind"] for d in admission} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert all("namespace" not in d["metadata"] for d in admission)


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
    # the Deployment passes --log-format=json: a serve without it would crash-loop (no skip, a failure)
    assert "--log-format" in serve_options()
    ctx = cli.commands["serve"].make_context("serve", ["--log-format=json"])
    assert ctx.params["log_format"] == "json"


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
