"""`loadkit chaos run` end to end on the sandbox: real load, real faults, always rolled back."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import EXPERIMENTS, chaos_env, chaos_run, check, faults, interrupt_mid_fault, pods
from tests.conftest import ROOT, run_loadkit

pytestmark = pytest.mark.slow


def test_latency_fault_breaks_request_duration_and_is_removed(sandbox: SandboxProcess) -> None:
    code, result, stderr = chaos_run(sandbox, "local-latency.yaml", "--var", "fault_seconds:int=6")
    assert code == 1, stderr
    assert result is not None and result["verdict"] == "fail"
    assert result["journal_status"] == "completed" and result["deviated"] is True
    assert result["steady_state_before_met"] is True and result["steady_state_after_met"] is False
    assert check(result, "request-duration")["passed"] is False
    fault_phase = next(p for p in result["phases"] if p["name"] == "fault")
    assert fault_phase["stats"]["p99_ms"] >= 600
    assert result["availability_pct"] == 100.0  # slow, not down
    assert result["rollbacks"] == {"planned": 1, "run": 1, "failed": 0, "leftovers_removed": []}
    assert 5 < result["recovery_time_s"] < 30  # healthy again once the rollback removed the delay
    assert faults(sandbox) == []


def test_abort_10pct_breaks_the_error_rate(sandbox: SandboxProcess) -> None:
    code, result, stderr = chaos_run(sandbox, "local-abort.yaml", "--var", "fault_seconds:int=5")
    assert code == 1, stderr
    assert result is not None
    error_rate = check(result, "error-rate")
    assert error_rate["passed"] is False and 5 <= error_rate["observed"] <= 10.5
    assert check(result, "availability")["passed"] is False
    fault_phase = next(p for p in result["phases"] if p["name"] == "fault")
    assert fault_phase["stats"]["status_codes"]["503"] > 0
    assert faults(sandbox) == []


def test_pod_kill_is_a_short_burst_then_recovery(sandbox: SandboxProcess) -> None:
    before = pods(sandbox)
    code, result, stderr = chaos_run(sandbox, "local-pod-kill.yaml", "--var", "observe_seconds:int=8")
    assert result is not None, stderr
    assert result["fault"] is not None
    assert 80 < result["availability_pct"] < 100  # the dead pod's endpoint failed requests for a moment
    assert result["recovery_time_s"] is not None and result["recovery_time_s"] < 15
    after_phase = next(p for p in result["phases"] if p["name"] == "after")["stats"]
    assert after_phase["success_rate_pct"] == 100.0
    assert result["steady_state_after_met"] is True
    restarted = [name for name, pod in pods(sandbox).items() if pod["restarts"] > before[name]["restarts"]]
    assert len(restarted) == 1 and restarted[0].startswith("bruno-site-") and "primary" not in restarted[0]
    assert code == 1  # zero downtime (availability 100 %) is the plan's bar, and the sandbox does not retry


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupting_the_latency_experiment_rolls_back(sandbox: SandboxProcess, sig: signal.Signals) -> None:
    code, result, stderr = interrupt_mid_fault(sandbox, "local-latency.yaml", sig, "--var", "fault_seconds:int=60")
    assert code == 130, stderr
    assert result["interrupted"] is True and result["journal_status"] == "interrupted"
    assert result["rollbacks"]["run"] == 1 and result["rollbacks"]["failed"] == 0
    assert faults(sandbox) == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if "locust_plugin.py" in " ".join(p.info["cmdline"] or [])
                and p.status() != psutil.STATUS_ZOMBIE]


def test_dry_run_injects_nothing(sandbox: SandboxProcess) -> None:
    code, result, stderr = chaos_run(sandbox, "local-abort.yaml", "--dry-run", "--var", "fault_seconds:int=2")
    assert code == 0, stderr
    assert result is not None and result["dry_run"] is True and result["fault"] is None
    assert result["phases"][0]["stats"]["status_codes"].keys() == {"200"}


def test_the_primary_is_refused_before_anything_runs(sandbox: SandboxProcess, tmp_path: Path) -> None:
    experiment = yaml.safe_load((EXPERIMENTS / "local-abort.yaml").read_text())
    experiment["method"][0]["provider"]["arguments"]["version"] = "primary"
    path = tmp_path / "primary.yaml"
    path.write_text(yaml.safe_dump(experiment))
    code, result, stderr = chaos_run(sandbox, path)
    assert code == 2 and result is None
    assert "refused before anything ran" in stderr and "primary" in stderr
    assert faults(sandbox) == []
    code, result, stderr = chaos_run(sandbox, path, "--allow-primary", "--var", "fault_seconds:int=2")
    assert result is not None and result["fault"] is not None  # allowed when asked for explicitly


def test_a_kill_over_the_share_cap_is_refused_when_it_runs(sandbox: SandboxProcess, tmp_path: Path) -> None:
    experiment = yaml.safe_load((EXPERIMENTS / "local-pod-kill.yaml").read_text())
    experiment["method"][0]["provider"]["arguments"]["count"] = 2
    path = tmp_path / "kill-all.yaml"
    path.write_text(yaml.safe_dump(experiment))
    before = pods(sandbox)
    code, result, stderr = chaos_run(sandbox, path, "--var", "observe_seconds:int=1")
    assert result is not None and code == 1
    assert "over the cap" in stderr
    assert all(pods(sandbox)[name]["restarts"] == pod["restarts"] for name, pod in before.items())


def test_shipped_experiments_pass_plain_chaos_validate(tmp_path: Path) -> None:
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        out = subprocess.run([str(Path(sys.executable).parent / "chaos"), "--log-file", str(tmp_path / "ctk.log"),
                              "validate", str(path)], capture_output=True, text=True, cwd=tmp_path, check=False)
        assert out.returncode == 0, (path.name, out.stdout, out.stderr)
    out = run_loadkit("chaos", "validate", *map(str, sorted(EXPERIMENTS.glob("*.yaml"))))
    assert out.returncode == 0 and out.stdout.count("ok ") == 6


def test_validate_names_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\ndescription: d\nmethod:\n  - type: action\n    name: x\n    provider:\n"
                   "      type: python\n      module: loadkit.chaos.sandbox\n      func: add_delay\n"
                   "      arguments: {delayms: 5}\n")
    out = run_loadkit("chaos", "validate", str(bad))
    assert out.returncode == 2 and f"invalid  {bad}: invalid experiment" in out.stdout
    assert "required argument 'delay_ms' is missing" in out.stdout
    missing = run_loadkit("chaos", "run", str(tmp_path / "nope.yaml"), "--target", "http://127.0.0.1:9")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_plain_chaos_run_with_the_loadkit_control(sandbox: SandboxProcess, tmp_path: Path) -> None:
    experiment = yaml.safe_load((EXPERIMENTS / "local-abort.yaml").read_text())
    experiment["controls"] = [{"name": "loadkit-load", "provider": {
        "type": "python", "module": "loadkit.chaos.control",
        "arguments": {"target": f"{sandbox.traffic_url}/canary", "profile": "smoke"}}}]
    experiment["configuration"]["fault_seconds"] = 3
    path = tmp_path / "with-control.yaml"
    path.write_text(yaml.safe_dump(experiment))
    journal = tmp_path / "journal.json"
    out = subprocess.run([str(Path(sys.executable).parent / "chaos"), "--log-file", str(tmp_path / "ctk.log"),
                          "run", "--rollback-strategy", "always", "--journal-path", str(journal), str(path)],
                         capture_output=True, text=True, cwd=tmp_path, env=chaos_env(sandbox), timeout=120, check=False)
    import json

    data = json.loads(journal.read_text())
    assert data["steady_states"]["before"]["steady_state_met"] is True, out.stderr
    loadkit_ext = next(e for e in data["extensions"] if e["name"] == "loadkit")
    assert loadkit_ext["stats"]["requests"] > 50 and loadkit_ext["stats"]["status_codes"]["503"] > 0
    assert faults(sandbox) == []


def test_cleanup_removes_leftover_sandbox_faults(sandbox: SandboxProcess) -> None:
    import httpx

    httpx.post(f"{sandbox.admin_url}/faults", json={"version": "canary", "kind": "delay", "delay_ms": 50})
    out = run_loadkit("chaos", "cleanup", "--skip-kubernetes", "--sandbox", sandbox.admin_url)
    assert out.returncode == 0 and "removed sandbox fault" in out.stdout
    assert faults(sandbox) == []
    assert ROOT  # the sandbox is shared by this module's tests
