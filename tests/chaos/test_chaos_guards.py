"""The safety guards refuse dangerous experiments before anything runs (`loadkit chaos validate`
does the static part, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_loadkit


def experiment(action: dict[str, Any]) -> dict[str, Any]:
    return {"title": "t", "description": "d", "method": [{"type": "action", "name": "fault", **action}]}


def chaosk8s_kill(**arguments: Any) -> dict[str, Any]:
    return {"provider": {"type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods",
                         "arguments": {"ns": "bruno", **arguments}}}


def loadkit_k8s(func: str, **arguments: Any) -> dict[str, Any]:
    return {"provider": {"type": "python", "module": "loadkit.chaos.k8s", "func": func,
                         "arguments": {"ns": "bruno", **arguments}}}


REFUSED = [
    ("empty-selector", chaosk8s_kill(), "empty label selector"),
    ("name-pattern-only", chaosk8s_kill(name_pattern=".*"), "a name pattern alone can match every pod"),
    ("all-true", chaosk8s_kill(label_selector="app=bruno-site", all=True), "all: true"),
    ("primary-selector", chaosk8s_kill(label_selector="app=bruno-site-primary,tier=web"), "primary"),
    ("primary-in-set", chaosk8s_kill(label_selector="app in (bruno-site-primary)"), "primary"),
    ("negative-selector", chaosk8s_kill(label_selector="app!=bruno-site"), "selects by exclusion"),
    ("whole-percentage", chaosk8s_kill(label_selector="app=bruno-site", mode="percentage", qty=100), "over the cap"),
    ("system-namespace", chaosk8s_kill(label_selector="app=x", ns="kube-system"), "system namespace"),
    ("node-action", {"provider": {"type": "python", "module": "chaosk8s.node.actions", "func": "drain_nodes",
                                  "arguments": {"name": "node-1"}}}, "node actions"),
    ("scale-primary", {"provider": {"type": "python", "module": "chaosk8s.deployment.actions",
                                    "func": "scale_deployment",
                                    "arguments": {"name": "bruno-site-primary", "replicas": 0, "ns": "bruno"}}},
     "primary"),
    ("chaosistio", {"provider": {"type": "python", "module": "chaosistio.fault.actions", "func": "add_delay_fault",
                                 "arguments": {"virtual_service_name": "bruno-site", "fixed_delay": "1s",
                                               "routes": [], "ns": "bruno"}}}, "Flagger's VirtualService"),
    ("kill-primary", loadkit_k8s("kill_canary_pods", name="bruno-site-primary"), "primary"),
    ("apex-host", loadkit_k8s("add_canary_delay", name="bruno-site", host="bruno-site.bruno.svc.cluster.local"),
     "apex or primary Service"),
    ("sandbox-primary", {"provider": {"type": "python", "module": "loadkit.chaos.sandbox", "func": "add_delay",
                                      "arguments": {"version": "primary", "delay_ms": 5}}}, "primary"),
]


@pytest.mark.parametrize(("action", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_dangerous_actions_are_refused(tmp_path: Path, action: dict[str, Any], message: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(experiment(action)))
    out = run_loadkit("chaos", "validate", str(path))
    assert out.returncode == 2, out.stdout
    assert message in out.stdout and "refused before anything ran" in out.stdout


def test_a_positive_canary_selector_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(experiment(chaosk8s_kill(label_selector="app=bruno-site", qty=1))))
    out = run_loadkit("chaos", "validate", str(path))
    assert out.returncode == 0, out.stdout


def test_allow_flags_open_what_they_name(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(experiment(loadkit_k8s("kill_canary_pods", name="bruno-site-primary"))))
    assert run_loadkit("chaos", "validate", str(path), "--allow-primary").returncode == 0
    system = tmp_path / "s.yaml"
    system.write_text(yaml.safe_dump(experiment(chaosk8s_kill(label_selector="app=x", ns="kube-system"))))
    assert run_loadkit("chaos", "validate", str(system), "--allow-namespace", "kube-system").returncode == 0


def test_guard_settings_cannot_be_set_as_variables(tmp_path: Path) -> None:
    out = run_loadkit("chaos", "run", str(Path(__file__).parents[2] / "experiments" / "local-abort.yaml"),
                      "--target", "http://127.0.0.1:9", "--var", "loadkit_allow_primary=true")
    assert out.returncode == 2 and "safety settings cannot be set as variables" in out.stderr
