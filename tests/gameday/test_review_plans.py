"""Review of issue 12: plans that must be refused cleanly (exit 2, the field named), not accepted or crash."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, loadkit_cmd

EXPERIMENTS = ROOT / "experiments"


def _validate(tmp_path: Path, plan: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return subprocess.run(loadkit_cmd("gameday", "validate", str(path)), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def _plan(**extra: Any) -> dict[str, Any]:
    scenario = {"name": "a", "experiment": str(EXPERIMENTS / "local-pod-kill.yaml"), "expect": "degrades",
                "weight": 5, "category": "redundancy"}
    scenario.update(extra.pop("scenario", {}))
    return {"schema_version": 1, "name": "p", "target": {"url": "http://127.0.0.1:1/canary"},
            "scenarios": [scenario], **extra}


def test_a_blank_prometheus_query_is_a_bad_plan_not_an_internal_error(tmp_path: Path) -> None:
    out = _validate(tmp_path, _plan(stop_conditions={"prometheus": [{"query": "   ", "url": "http://127.0.0.1:1"}]}))
    # Observed: exit 3 "internal error: IndexError: string index out of range" (promql_problem: stripped[-1])
    assert out.returncode == 2, out.stdout + out.stderr
    assert "internal error" not in out.stderr


def test_a_boolean_weight_is_refused(tmp_path: Path) -> None:
    out = _validate(tmp_path, _plan(scenario={"weight": True}))
    # Observed: exit 0, "weights 1": `weight: true` (a YAML slip) is read as weight 1
    assert out.returncode == 2, out.stdout


def test_a_misspelled_plan_variable_is_refused(tmp_path: Path) -> None:
    # plan-wide `variables:` go only to experiments that declare them: a typo is dropped silently
    out = _validate(tmp_path, _plan(variables={"restart_afer_s": 1}))
    # Observed: exit 0, not even a note; the pod kill runs with its default restart_after_s
    assert out.returncode == 2 or "restart_afer_s" in out.stdout + out.stderr, out.stdout


def test_a_misspelled_scenario_variable_is_refused(tmp_path: Path) -> None:
    out = _validate(tmp_path, _plan(scenario={"variables": {"restart_afer_s": 1}}))
    # Observed: exit 0 with a "note" only (docs: unknown keys are refused, exit 2)
    assert out.returncode == 2, out.stdout


def test_weights_that_are_not_integers_are_refused(tmp_path: Path) -> None:
    for weight in ("3", 5.0, 5.5):
        out = _validate(tmp_path, _plan(scenario={"weight": weight}))
        assert out.returncode == 2, (weight, out.stdout)
        assert "weight" in out.stderr, out.stderr


def test_a_health_url_httpx_cannot_read_is_a_bad_plan(tmp_path: Path) -> None:
    out = _validate(tmp_path, _plan(stop_conditions={"http": [{"url": "http://[::1"}]}))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "stop_conditions.http.0.url" in out.stderr, out.stderr


def test_a_whitespace_name_is_refused(tmp_path: Path) -> None:
    for plan in (_plan(name="  "), _plan(scenario={"name": " \t"})):
        out = _validate(tmp_path, plan)
        assert out.returncode == 2, out.stdout
        assert "name" in out.stderr, out.stderr


def test_the_did_you_mean_names_the_declared_variable(tmp_path: Path) -> None:
    out = _validate(tmp_path, _plan(variables={"restart_afer_s": 1}))
    assert out.returncode == 2, out.stdout
    assert "variables.restart_afer_s" in out.stderr and "did you mean 'restart_after_s'" in out.stderr, out.stderr
