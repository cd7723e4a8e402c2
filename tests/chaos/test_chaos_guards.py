"""The guards are an allow-list: every bypass found by trying to break them is refused by
`loadkit chaos validate` and `loadkit chaos run` (exit 2), with the reason, and nothing runs.

In process (CliRunner): refusals happen before any load or fault, so no sandbox is needed, except
for the live checks, which resolve selectors against an HTTP-level fake Kubernetes API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from loadkit.cli import cli
from tests.chaos.fake_k8s import FakeKubernetes


def experiment(*method: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"title": "t", "description": "d", "method": [{"type": "action", "name": "fault", **m} for m in method],
            **extra}


def python(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}


def kill(**arguments: Any) -> dict[str, Any]:
    return python("chaosk8s.pod.actions", "terminate_pods", **{"ns": "bruno", **arguments})


def k8s_fault(func: str, **arguments: Any) -> dict[str, Any]:
    return python("loadkit.chaos.k8s", func, **{"ns": "bruno", **arguments})


MARKER = "/tmp/loadkit-guard-marker"  # every refused shell command would create it
SANDBOX_URL = "http://127.0.0.1:9"  # nothing listens: a call that got through would fail differently

REFUSED = [
    ("empty-selector", experiment(kill()), "empty label selector"),
    ("name-pattern-only", experiment(kill(name_pattern=".*")), "a name pattern alone can match every pod"),
    ("all-true", experiment(kill(label_selector="app=bruno-site", all=True)), "all: true"),
    ("all-as-a-string", experiment(kill(label_selector="app=bruno-site", all="false")),
     "all must be a boolean, not 'false'"),
    ("exists-selector", experiment(kill(label_selector="app")), "selects every pod that has the label"),
    ("primary-selector", experiment(kill(label_selector="app=bruno-site-primary,tier=web")), "primary"),
    ("primary-in-set", experiment(kill(label_selector="app in (bruno-site-primary)")), "primary"),
    ("negative-selector", experiment(kill(label_selector="app!=bruno-site")), "selects by exclusion"),
    ("whole-percentage", experiment(kill(label_selector="app=bruno-site", mode="percentage", qty=100)),
     "over the cap"),
    ("qty-as-a-string", experiment(kill(label_selector="app=bruno-site", qty="1")), "qty must be"),
    ("system-namespace", experiment(kill(label_selector="app=x", ns="kube-system")), "system namespace"),
    ("flux-system", experiment(kill(label_selector="app=x", ns="flux-system")), "system namespace"),
    ("no-namespace", experiment(python("loadkit.chaos.k8s", "remove_faults")), "no namespace given"),
    ("node-action", experiment(python("chaosk8s.node.actions", "drain_nodes", name="node-1")), "node actions"),
    ("scale-primary", experiment(python("chaosk8s.deployment.actions", "scale_deployment",
                                        name="bruno-site-primary", replicas=0, ns="bruno")),
     "chaosk8s.deployment.actions.scale_deployment is not an activity loadkit can guard"),
    ("chaosistio", experiment(python("chaosistio.fault.actions", "add_delay_fault", virtual_service_name="bruno-site",
                                     fixed_delay="1s", routes=[], ns="bruno")), "Flagger's VirtualService"),
    ("kill-primary", experiment(k8s_fault("kill_canary_pods", name="bruno-site-primary")), "primary"),
    ("apex-host", experiment(k8s_fault("add_canary_delay", name="bruno-site", host="bruno-site.bruno.svc")),
     "is not bruno-site's canary Service"),
    ("apex-host-another-name", experiment(k8s_fault("add_canary_delay", name="x",
                                                    host="bruno-site.bruno.svc.cluster.local")),
     "is not x's canary Service"),
    ("long-fault", experiment(k8s_fault("add_canary_abort", name="bruno-site", expires_in="24h")),
     "longest fault allowed"),
    ("long-pause", experiment({**python("loadkit.chaos.sandbox", "add_delay", delay_ms=5), "pauses": {"after": 3600}}),
     "pause after of 3600s"),
    ("sandbox-primary", experiment(python("loadkit.chaos.sandbox", "add_delay", version="primary", delay_ms=5)),
     "primary"),
    ("sandbox-elsewhere", experiment(python("loadkit.chaos.sandbox", "add_abort", admin_url="http://10.1.2.3:8081")),
     "is not the sandbox this run may fault"),
    ("private-helper", experiment(python("loadkit.chaos.sandbox", "_call", method="POST", path="/faults",
                                         configuration=None, admin_url=SANDBOX_URL,
                                         body={"version": "primary", "kind": "abort"})),
     "loadkit.chaos.sandbox._call is not an activity loadkit can guard"),
    ("os-system", experiment(python("os", "system", command=f"touch {MARKER}")), "os.system is not an activity"),
    ("process-action", experiment({"provider": {"type": "process", "path": "touch", "arguments": MARKER}}),
     "a 'process' provider runs outside loadkit's guards"),
    ("http-action", experiment({"provider": {"type": "http", "url": f"{SANDBOX_URL}/faults", "method": "POST",
                                             "arguments": {"version": "primary", "kind": "abort", "ttl_s": 86400}}}),
     "a 'http' provider runs outside loadkit's guards"),
    ("process-probe", {**experiment(), "steady-state-hypothesis": {"title": "h", "probes": [
        {"type": "probe", "name": "curl", "tolerance": 0,
         "provider": {"type": "process", "path": "sh", "arguments": f"-c 'touch {MARKER}'"}}]}},
     "a 'process' provider"),
    ("tolerance-probe", {**experiment(), "steady-state-hypothesis": {"title": "h", "probes": [
        {"type": "probe", "name": "p", "provider": {"type": "python", "module": "loadkit.chaos.probes", "func": "rps"},
         "tolerance": {"type": "probe", "name": "t",
                       "provider": {"type": "process", "path": "touch", "arguments": MARKER}}}]}},
     "its tolerance probe"),
    ("dynamic-configuration", experiment(configuration={"x": {"type": "probe", "name": "x", "provider": {
        "type": "process", "path": "touch", "arguments": MARKER}}}), "dynamic configuration"),
    ("foreign-control", experiment(controls=[{"name": "c", "provider": {"type": "python",
                                                                       "module": "chaosaddons.controls.repeat"}}]),
     "is not loadkit's"),
    ("loosened-namespaces", experiment(kill(label_selector="app=x", ns="kube-system"),
                                       configuration={"loadkit_allowed_namespaces": [".*"]}),
     "guard settings come only from loadkit's flags"),
    ("loosened-kill-share", experiment(configuration={"loadkit_max_kill_share": 1.0}),
     "guard settings come only from loadkit's flags"),
    # review findings (each ran, or passed validate, before the fix)
    ("activity-dry-false", experiment({**kill(label_selector="pod-template-hash=abc"), "dry": False}),
     "an activity's own dry overrides --dry-run"),
    ("activity-dry-null", experiment({**python("loadkit.chaos.sandbox", "add_abort", percentage=100), "dry": None}),
     "an activity's own dry overrides --dry-run"),
    ("experiment-dry", experiment(dry="actions"), "only --dry-run makes a run dry"),
    ("env-default-probe", experiment(configuration={"knob": {"type": "env", "key": "LOADKIT_TEST_UNSET", "default": {
        "type": "probe", "provider": {"type": "process", "path": "touch", "arguments": MARKER}}}}),
     "configuration knob.default: dynamic configuration"),
    ("argument-secrets", experiment(kill(label_selector="app=bruno-site", secrets={
        "KUBERNETES_HOST": "http://127.0.0.1:9"})), "secrets can point an activity at another cluster"),
    ("provider-secrets", experiment({"provider": {**kill(label_selector="app=bruno-site")["provider"],
                                                  "secrets": ["k8s"]}},
                                    secrets={"k8s": {"KUBERNETES_HOST": "http://127.0.0.1:9"}}),
     "secrets can point an activity at another cluster"),
    ("experiment-secrets", experiment(secrets={"k8s": {"KUBERNETES_HOST": "http://127.0.0.1:9"}}),
     "secrets can point an activity at another cluster"),
    ("fault-as-hypothesis-probe", {**experiment(), "steady-state-hypothesis": {"title": "h", "probes": [
        {"type": "probe", "name": "sneaky", "tolerance": {"type": "regex", "target": "status", "pattern": ".*"},
         **python("loadkit.chaos.sandbox", "add_abort", percentage=100, ttl_s=900)}]}},
     "injects a fault, so it may not be a steady-state probe"),
    ("fault-as-method-probe", {"title": "t", "description": "d", "method": [
        {"type": "probe", "name": "abort-half", **python("loadkit.chaos.sandbox", "add_abort", percentage=50)}]},
     "declared as a probe: declare it as type: action"),
    ("fault-in-rollbacks", {**experiment(), "rollbacks": [
        {"type": "action", "name": "again", **python("loadkit.chaos.sandbox", "add_abort", percentage=50)}]},
     "may not be a rollback"),
    ("long-pod-kill", experiment(python("loadkit.chaos.sandbox", "kill_pods", restart_after_s=300)),
     "restart_after_s 300 is longer than loadkit can wait"),
    ("dependency-is-the-apex", experiment(k8s_fault("add_dependency_abort", name="bruno-site",
                                                    host="bruno-site.bruno.svc.cluster.local")),
     "is one of bruno-site's own Services, not a dependency"),
    ("dependency-in-istio-system", experiment(k8s_fault("add_dependency_abort", name="bruno-site",
                                                        host="istiod.istio-system.svc.cluster.local")),
     "system namespace 'istio-system'"),
    ("kill-without-namespace", experiment(python("chaosk8s.pod.actions", "terminate_pods",
                                                 label_selector="app=bruno-site")), "no namespace given"),
    ("percentage-nan", experiment(python("loadkit.chaos.sandbox", "add_abort", percentage=float("nan"))),
     "percentage must be a finite number"),
    ("background", experiment({**python("loadkit.chaos.sandbox", "add_abort"), "background": True}),
     "a background activity"),
    ("rollback-ref-to-nothing", {**experiment(), "rollbacks": [{"ref": "remove-all"}]},
     "ref 'remove-all' names no activity"),
]


@pytest.fixture(autouse=True)
def _no_marker() -> Iterator[None]:
    Path(MARKER).unlink(missing_ok=True)
    yield
    assert not Path(MARKER).exists(), "a refused activity ran"


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_validate_refuses_each_bypass(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    out = invoke("chaos", "validate", str(write(tmp_path, data)))
    assert out.exit_code == 2, out.stdout
    assert message in out.stdout and "refused before anything ran" in out.stdout
    assert "Traceback" not in out.stdout


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in REFUSED if c[0] in (
    "all-as-a-string", "process-probe", "http-action", "private-helper", "os-system", "loosened-namespaces",
    "apex-host-another-name", "dynamic-configuration", "activity-dry-false", "activity-dry-null",
    "env-default-probe", "argument-secrets", "fault-as-hypothesis-probe")],
    ids=lambda v: str(v)[:20] if isinstance(v, str) else "")
def test_chaos_run_refuses_before_anything_runs(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    for dry in ((), ("--dry-run",)):  # a dry run runs probes: a process probe must not run there either
        out = invoke("chaos", "run", str(write(tmp_path, data)), "--target", "http://127.0.0.1:9", *dry)
        assert out.exit_code == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr


def test_a_positive_canary_selector_is_accepted(tmp_path: Path) -> None:
    out = invoke("chaos", "validate", str(write(tmp_path, experiment(kill(label_selector="app=bruno-site", qty=1)))))
    assert out.exit_code == 0, out.stdout


def test_allow_flags_open_what_they_name(tmp_path: Path) -> None:
    primary = write(tmp_path, experiment(k8s_fault("kill_canary_pods", name="bruno-site-primary")))
    assert invoke("chaos", "validate", str(primary), "--allow-primary").exit_code == 0
    system = tmp_path / "s.yaml"
    system.write_text(yaml.safe_dump(experiment(kill(label_selector="app=x", ns="kube-system"))))
    assert invoke("chaos", "validate", str(system), "--allow-namespace", "kube-system").exit_code == 0
    longer = tmp_path / "l.yaml"
    longer.write_text(yaml.safe_dump(experiment(k8s_fault("add_canary_abort", name="bruno-site", expires_in="2h"))))
    assert invoke("chaos", "validate", str(longer), "--max-fault-duration", "3h").exit_code == 0


def test_allow_unguarded_runs_it_loudly(tmp_path: Path) -> None:
    path = write(tmp_path, experiment({"provider": {"type": "process", "path": "true", "arguments": "-x y"}}))
    out = invoke("chaos", "validate", str(path), "--allow-unguarded")
    assert out.exit_code == 0 and "UNGUARDED: method fault: a 'process' provider" in out.stdout


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_activity_given_as_a_var_is_refused(tmp_path: Path, command: str) -> None:
    """chaoslib runs a configuration value of type probe, a --var's included."""
    path = write(tmp_path, experiment(python("loadkit.chaos.sandbox", "list_faults"), configuration={"knob": 1}))
    probe = {"type": "probe", "name": "p", "provider": {"type": "process", "path": "touch", "arguments": MARKER}}
    extra = ("--target", "http://127.0.0.1:9") if command == "run" else ()
    out = CliRunner().invoke(cli, ["chaos", command, str(path), *extra, "--var", f"knob:json={json.dumps(probe)}"])
    assert out.exit_code == 2, out.output
    assert "--var knob: dynamic configuration" in out.output and "Traceback" not in out.output


def test_guard_settings_cannot_be_set_as_variables(tmp_path: Path) -> None:
    path = write(tmp_path, experiment(python("loadkit.chaos.sandbox", "add_delay", delay_ms=5)))
    out = invoke("chaos", "run", str(path), "--target", "http://127.0.0.1:9", "--var", "loadkit_allow_primary=true")
    assert out.exit_code == 2 and "safety settings cannot be set as variables" in out.stderr


# -- live checks: selectors resolved against today's pods ------------------------------------------

@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        fake.apply_env(monkeypatch)
        yield fake


@pytest.mark.parametrize(("action", "message"), [
    (kill(label_selector="tier in (web)", name_pattern="bruno-site"), "matches primary pods"),
    (kill(label_selector="app in (bruno-site, bruno-site-canary)", qty=2), "killing 2 of 2 pods is over the cap"),
    (k8s_fault("add_dependency_abort", name="shop", host="db.bruno.svc"), "no running pods labelled app=shop"),
], ids=["name-pattern-matches-primary", "every-canary-pod", "no-such-canary"])
def test_chaos_run_resolves_selectors_against_live_pods(tmp_path: Path, cluster: FakeKubernetes,
                                                        action: dict[str, Any], message: str) -> None:
    if "tier" in str(action):  # the fake's pods carry only app=...: give the primary's a tier label too
        for pod in cluster._pods.values():
            pod["metadata"]["labels"]["tier"] = "web"
    out = invoke("chaos", "run", str(write(tmp_path, experiment(action))), "--target", "http://127.0.0.1:9")
    assert out.exit_code == 2 and message in out.stderr, out.stderr
    assert cluster.deleted_pods == [] and cluster.virtualservices() == []


def test_a_percentage_kill_is_counted_as_chaosk8s_counts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """33.4 % of 3 pods is ceil(1.002) = 2 pods for chaosk8s: over the 50 % cap, refused."""
    with FakeKubernetes({("bruno", "bruno-site"): 3, ("bruno", "bruno-site-primary"): 2}) as fake:
        fake.apply_env(monkeypatch)
        action = kill(label_selector="app=bruno-site", mode="percentage", qty=33.4, rand=True)
        out = invoke("chaos", "run", str(write(tmp_path, experiment(action))), "--target", "http://127.0.0.1:9")
        assert out.exit_code == 2 and "killing 2 of 3 pods is over the cap" in out.stderr, out.stderr
        assert fake.deleted_pods == []


# -- malformed files: exit 2 with the field and the fix, never an internal error ------------------

LIST_FAULTS = python("loadkit.chaos.sandbox", "list_faults")
MALFORMED = [
    ("method-item-a-number", {"title": "t", "description": "d", "method": [5]},
     "method[0]: an activity must be a mapping"),
    ("pauses-a-list", experiment({**LIST_FAULTS, "pauses": [1]}), "method[0] (fault).pauses: must be a mapping"),
    ("provider-a-string", experiment({"provider": "python"}), "method[0] (fault).provider: must be a mapping"),
    ("configuration-a-list", experiment(LIST_FAULTS, configuration=[1]), "configuration: must be a mapping"),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_experiment_names_the_field(tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data)
    out = invoke("chaos", "validate", str(path))
    assert out.exit_code == 2 and message in out.stdout and "internal error" not in out.stdout, out.stdout
    junit = tmp_path / "out.xml"
    out = CliRunner().invoke(cli, ["chaos", "run", str(path), "--target", "http://127.0.0.1:9", "--junit", str(junit)])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output, out.output
    assert "<error" in junit.read_text()  # never a 0-byte JUnit file


def test_a_top_level_list_is_not_an_experiment(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    out = invoke("chaos", "validate", str(path))
    assert out.exit_code == 2 and "the experiment must be a mapping" in out.stdout, out.stdout


def test_validate_reports_every_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump(MALFORMED[0][1]))
    second.write_text(yaml.safe_dump(MALFORMED[2][1]))
    out = invoke("chaos", "validate", str(first), str(second))
    assert out.exit_code == 2 and MALFORMED[0][2] in out.stdout and MALFORMED[2][2] in out.stdout, out.stdout


def test_a_pause_of_zero_is_no_pause(tmp_path: Path) -> None:
    out = invoke("chaos", "validate", str(write(tmp_path, experiment({**LIST_FAULTS, "pauses": {"after": 0}}))))
    assert out.exit_code == 0, out.stdout


def test_a_type_error_hint_is_about_the_value_given(tmp_path: Path) -> None:
    out = invoke("chaos", "validate", str(write(tmp_path, experiment(python("loadkit.chaos.sandbox", "add_abort",
                                                                            percentage=[5])))))
    assert out.exit_code == 2 and "percentage must be a number, not [5]" in out.stdout, out.stdout
    assert "without quotes" not in out.stdout
