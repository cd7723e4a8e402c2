"""Review of issue 12: a dry run injects nothing, so it must not read as a perfect, passing game day,
nor enter the history as a judged game day that later trends are computed against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadkit.sandbox import SandboxProcess
from tests.conftest import run_loadkit
from tests.gameday.conftest import env_for, faults, gameday, scenario, write_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox():  # type: ignore[no-untyped-def]
    with SandboxProcess() as running:
        yield running


def test_a_dry_run_is_not_a_pass_with_score_100(sandbox: SandboxProcess, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "dry", "load": {"users": 3},
        "scenarios": [scenario("latency", "local-latency.yaml", expect="degrades", weight=5,
                               variables={"fault_seconds": 1}, cooldown="1s")],
    })
    db = tmp_path / "h.db"
    runs = [gameday("run", str(plan), "--target", f"{sandbox.traffic_url}/canary", "-o", "json", "--dry-run",
                    "--db", str(db), env=env_for(sandbox)) for _ in range(2)]
    assert faults(sandbox) == []
    code, result, stderr = runs[0]
    assert result is not None, stderr
    # Observed: exit 0, verdict "pass", score 100: nothing was injected, yet it reads (and notifies,
    # and exits) as a perfect game day.
    assert not (code == 0 and result["verdict"] == "pass" and result["score"] == 100), \
        f"dry run: exit {code}, {result['verdict']}, score {result['score']}"
    listed = json.loads(run_loadkit("history", "--db", str(db), "--kind", "gameday", "-o", "json").stdout)
    # Observed: both dry runs are stored as judged game days; the second trends against the first
    # (and the next real game day will trend against a dry run's 100).
    assert all(e["trend"] is None for e in listed["entries"]), listed["entries"]
