"""`loadkit gameday run` end to end on the real sandbox: real load, real faults, always rolled back."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from loadkit.scoring import Scored, category_scores, resilience_score
from tests.conftest import ROOT, loadkit_cmd, run_loadkit
from tests.gameday.conftest import SANDBOX_PLAN, Receiver, env_for, faults, gameday, scenario, write_plan

pytestmark = pytest.mark.slow

SECRET = "T000/B000/XXXXsecretTOKEN"


def pods(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in httpcalls.get(f"{sandbox.admin_url}/pods", timeout=10).json()["pods"]}


def test_sandbox_plan_end_to_end(sandbox: SandboxProcess, receiver: Receiver, tmp_path: Path) -> None:
    before = pods(sandbox)
    urls = tmp_path / "notify"
    urls.write_text(f"# the team's Slack\nslack+{receiver.url}/slack/{SECRET}\n")
    code, result, stderr = gameday(
        "run", str(SANDBOX_PLAN), "--target", f"{sandbox.traffic_url}/canary", "-o", "json",
        "--notify", f"{receiver.url}/hook/{SECRET}", "--notify-file", str(urls), "--link", "https://ci.example/1",
        "--report-dir", str(tmp_path / "out"), "--junit", str(tmp_path / "gd.xml"), "--db", str(tmp_path / "h.db"),
        env=env_for(sandbox))
    assert result is not None, stderr
    # the healthy sandbox meets every expectation: the pod kill degrades and recovers, the latency is
    # detected and goes, the CPU stress degrades and recovers: a pass, every scenario 100
    assert (code, result["verdict"], result["reason"]) == (0, "pass", ""), (
        code, result["verdict"], result["reason"], [(s["name"], s["status"], s["reason"]) for s in result["scenarios"]])
    by_name = {s["name"]: s for s in result["scenarios"]}
    assert list(by_name) == ["pod-kill", "latency", "cpu-stress"]
    kill, latency = by_name["pod-kill"], by_name["latency"]
    # pod kill: the load saw the pod go (degrades is allowed), the rollback saw it back
    assert kill["chaos"]["journal_status"] == "completed" and kill["chaos"]["faults_seen"]
    assert {c["name"] for c in kill["checks"]} >= {"steady-state-before", "method", "rollbacks", "recovery-time"}
    assert not any(c["name"].startswith("request-") for c in kill["checks"])  # degrades: the impact is not judged
    # latency: expected to be detected, and it was (request-duration broke over the fault window)
    detected = next(c for c in latency["checks"] if c["name"] == "detected")
    assert detected["status"] == "passed" and "request-duration" in detected["reason"]
    fault_phase = next(p for p in latency["chaos"]["phases"] if p["name"] == "fault")
    assert fault_phase["stats"]["p99_ms"] >= 600
    # CPU stress: injected (seen in place) and removed; degrading is allowed
    stress = by_name["cpu-stress"]
    assert stress["chaos"]["journal_status"] == "completed" and stress["chaos"]["faults_seen"], stress
    for s in result["scenarios"]:
        passed = sum(c["status"] == "passed" for c in s["checks"])
        assert (s["status"], s["score"], passed) == ("passed", 100, len(s["checks"])), s
    scored = [Scored(s["score"], s["weight"], s["category"]) for s in result["scenarios"]]
    assert result["score"] == resilience_score(scored)
    assert result["categories"] == category_scores(scored)
    assert set(result["categories"]) == {"redundancy", "network", "resources"}
    assert result["score"] == 100 and result["categories"] == {"redundancy": 100, "network": 100, "resources": 100}
    assert result["stops"] == []
    # no fault left, every pod back
    assert faults(sandbox) == []
    after = pods(sandbox)
    assert all(p["alive"] for p in after.values())
    restarted = [n for n, p in after.items() if p["restarts"] > before[n]["restarts"]]
    assert len(restarted) == 1 and "primary" not in restarted[0]  # the pod kill killed one canary pod
    # notifications: started then finished, to both; the generic one carries the result, Slack a summary
    hook = [b["kind"] for b in receiver.bodies(f"/hook/{SECRET}")]
    assert hook == ["gameday.started", "gameday.finished"]
    finished = receiver.bodies(f"/hook/{SECRET}")[-1]["result"]
    assert finished["score"] == result["score"] and finished["verdict"] == result["verdict"]
    slack = receiver.bodies(f"/slack/{SECRET}")
    assert len(slack) == 2 and all(set(b) == {"text", "blocks"} for b in slack)
    assert f"Score {result['score']:g}" in slack[1]["text"] and "ci.example/1" in json.dumps(slack[1]["blocks"])
    assert SECRET not in stderr and "/hook" not in stderr and "/slack" not in stderr
    assert "webhook 127.0.0.1" in stderr and "slack 127.0.0.1" in stderr
    # the report directory and JUnit: the same result; one testsuite per scenario
    assert json.loads((tmp_path / "out" / "result.json").read_text())["score"] == result["score"]
    suites = ET.parse(tmp_path / "gd.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["loadkit.gameday.sandbox.pod-kill", "loadkit.gameday.sandbox.latency",
                                                   "loadkit.gameday.sandbox.cpu-stress"]
    assert not (tmp_path / "out" / "error.txt").exists()
    # the history keeps the game day: `loadkit history` lists it with its score
    listed = run_loadkit("history", "--db", str(tmp_path / "h.db"), "--kind", "gameday", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)["entries"]
    assert (entry["name"], entry["verdict"], entry["score"]) == ("sandbox", "pass", 100)


def test_stop_condition_halts_rolls_back_and_skips_the_rest(sandbox: SandboxProcess, receiver: Receiver,
                                                            tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "halts", "load": {"users": 10},
        "scenarios": [
            scenario("abort-everything", "local-abort.yaml", weight=4, category="dependencies",
                     variables={"abort_percentage": 100, "fault_seconds": 30}),
            scenario("latency", "local-latency.yaml", variables={"fault_seconds": 2}),
        ],
        "stop_conditions": {"load": [{"name": "request-success-rate", "thresholdRange": {"min": 90},
                                      "window": "2s"}]},
    })
    code, result, stderr = gameday("run", str(plan), "--target", f"{sandbox.traffic_url}/canary", "-o", "json",
                                   "--notify", f"{receiver.url}/hook", "--junit", str(tmp_path / "gd.xml"),
                                   env=env_for(sandbox))
    assert code == 1, stderr  # halted is not a pass
    assert result is not None and result["verdict"] == "halted"
    first, second = result["scenarios"]
    assert first["status"] == "halted" and first["score"] == 0
    assert second["status"] == "skipped" and second["chaos"] is None and second["score"] == 0
    assert result["score"] == 0 and result["categories"] == {"dependencies": 0, "network": 0}
    [firing] = result["stops"]
    assert firing["kind"] == "load" and firing["scenario"] == "abort-everything"
    assert "request-success-rate" in result["reason"]
    # halted within a few seconds of the fault, not after its 30 s; the rollback removed it
    fault = first["chaos"]["fault"]
    assert fault is not None and fault["duration_s"] < 8
    assert first["chaos"]["rollbacks"]["run"] == 1 and first["chaos"]["rollbacks"]["failed"] == 0
    assert faults(sandbox) == []
    assert [b["kind"] for b in receiver.bodies("/hook")] == ["gameday.started", "gameday.halted", "gameday.finished"]
    root = ET.parse(tmp_path / "gd.xml").getroot()
    assert int(root.get("errors", "0")) == 2  # the halted and the skipped scenario: never green
    assert root.find("testsuite/testcase[@name='scenario']/error") is not None


def test_sigterm_mid_game_day_rolls_back_and_is_interrupted(sandbox: SandboxProcess, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "sigterm", "load": {"users": 5},
        "scenarios": [scenario("latency", "local-latency.yaml", variables={"fault_seconds": 30}),
                      scenario("abort", "local-abort.yaml", variables={"fault_seconds": 2})],
    })
    proc = subprocess.Popen(loadkit_cmd("gameday", "run", str(plan), "--target", f"{sandbox.traffic_url}/canary",
                                        "-o", "json", "--report-dir", str(tmp_path / "out")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(sandbox))
    deadline = time.monotonic() + 60
    while not faults(sandbox):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 15  # not the fault's 30 s
    result: dict[str, Any] = json.loads(stdout)
    assert result["verdict"] == "interrupted" and "SIGTERM" in result["reason"]
    assert [s["status"] for s in result["scenarios"]] == ["interrupted", "skipped"]
    assert result["scenarios"][0]["chaos"]["rollbacks"]["run"] == 1
    assert faults(sandbox) == []
    assert "interrupted" in (tmp_path / "out" / "error.txt").read_text()
