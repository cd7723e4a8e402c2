"""Review of issue 12: a scenario that injected nothing "tested nothing" (verdict error); it must score
0, as halted/interrupted/skipped ones do, not raise the resilience score with its steady states."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loadkit.sandbox import SandboxProcess
from tests.gameday.conftest import EXPERIMENTS, env_for, faults, gameday, write_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox():  # type: ignore[no-untyped-def]
    with SandboxProcess() as running:
        yield running


def test_a_scenario_that_injected_nothing_scores_zero(sandbox: SandboxProcess, tmp_path: Path) -> None:
    experiment = yaml.safe_load((EXPERIMENTS / "local-latency.yaml").read_text())
    experiment["title"] = "a method whose only action injects nothing"
    experiment["method"] = [{"type": "action", "name": "no-op", "pauses": {"after": 1}, "provider": {
        "type": "python", "module": "loadkit.chaos.sandbox", "func": "remove_faults", "arguments": {}}}]
    (tmp_path / "noop.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "noop", "load": {"users": 5},
        "scenarios": [{"name": "noop", "experiment": "noop.yaml", "expect": "degrades", "weight": 9,
                       "category": "network", "cooldown": "1s"}],
    })
    code, result, stderr = gameday("run", str(plan), "--target", f"{sandbox.traffic_url}/canary", "-o", "json",
                                   "--no-history", env=env_for(sandbox))
    assert faults(sandbox) == []
    assert result is not None, stderr
    assert code == 3 and result["verdict"] == "error"
    [noop] = result["scenarios"]
    assert noop["status"] == "error"
    # Observed: score 60 (steady states and rollbacks passed), resilience score 60: a game day whose
    # only scenario tested nothing reports a 60 % resilient system (in the scorecard, JSON, Slack).
    assert noop["score"] == 0 and result["score"] == 0, (noop["score"], result["score"])
