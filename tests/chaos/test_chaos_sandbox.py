"""`loadkit chaos run` end to end on the sandbox: real load, real faults, always rolled back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import (
    EXPERIMENTS,
    chaos_env,
    chaos_run,
    check,
    faults,
    gone,
    interrupt_mid_fault,
    pods,
)
from tests.conftest import ROOT, run_loadkit, scraped

pytestmark = pytest.mark.slow


def test_latency_fault_breaks_request_duration_and_is_removed(sandbox: SandboxProcess) -> None:
    code, result, stderr = chaos_run(sandbox, "local-latency.yaml", "--var", "fault_seconds=6")  # typed like the file
    assert code == 1, stderr
    assert result is not None and result["verdict"] == "fail"
    # the steady state after is taken once the fault is gone and the load cooled down (longer than
    # the probe's 5 s window), so it judges the recovery, not the fault (on a loaded machine it may
    # still miss the latency threshold: then it deviated, and says so)
    assert result["journal_status"] == "completed" and result["steady_state_before_met"] is True
    assert result["deviated"] is (result["steady_state_after_met"] is False)
    assert check(result, "request-duration")["passed"] is False
    fault_phase = next(p for p in result["phases"] if p["name"] == "fault")
    assert fault_phase["stats"]["p99_ms"] >= 600
    assert result["availability_pct"] == 100.0  # slow, not down
    assert result["rollbacks"] == {"planned": 1, "run": 1, "failed": 0, "leftovers_removed": [], "leftovers_failed": []}
    # recovery counts from the removal (the rollback): healthy again within seconds of it
    assert result["recovery_time_s"] is not None and 0 <= result["recovery_time_s"] < 5
    assert result["detect_time_s"] is not None and check(result, "request-duration (worst 5s)")["passed"] is False
    assert faults(sandbox) == []


def _rate_config(tmp_path: Path) -> Path:
    path = tmp_path / "loadkit.yaml"
    path.write_text("profiles:\n  steady-rate:\n    rate: 20\n    duration: 1m\n    max_in_flight: 300\n")
    return path


def test_an_arrival_rate_keeps_coming_through_a_latency_fault(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """--rate: the open model holds 40 iterations/s through 600 ms of added latency (a closed model would
    slow down with the target); the fault's phase counts them, and its p99 holds the latency. A website
    iteration is up to 8 requests (4.8 s under the fault): the config profile lets 300 run at once, so none
    is dropped."""
    code, result, stderr = chaos_run(sandbox, "local-latency.yaml", "--rate", "40", "--profile", "steady-rate",
                                     "--var", "fault_seconds=4", "--config", str(_rate_config(tmp_path)))
    assert code == 1, stderr
    assert result is not None and check(result, "request-duration")["passed"] is False
    fault_phase = next(p for p in result["phases"] if p["name"] == "fault")["stats"]
    assert fault_phase["p99_ms"] >= 600 and fault_phase["dropped_iterations"] == 0
    assert fault_phase["iterations"] == pytest.approx(40 * fault_phase["duration_s"], rel=0.2)
    assert faults(sandbox) == []


SERVER_SIDE = """
thresholds:
  - {name: request-success-rate, thresholdRange: {min: 99}}
  - {name: error-rate, thresholdRange: {max: 1}}
  - name: server-success-rate          # Flagger's Istio query, over the fault window
    metric: request-success-rate
    source: prometheus
    thresholdRange: {min: 99}
"""


def answered_503_before(sandbox: SandboxProcess, prometheus: str) -> None:
    """A canary under analysis has answered a 503 before: its 503 series exists when the fault window
    opens. (rate() cannot count the first sample of a series born inside its window, in Flagger's
    query too; a fresh sandbox would make Istio's success rate look better than it was.)"""
    fault = {"version": "canary", "kind": "abort", "http_status": 503, "ttl_s": 30}
    httpcalls.post(f"{sandbox.admin_url}/faults", json=fault, timeout=5).raise_for_status()
    try:
        for _ in range(3):
            httpcalls.get(f"{sandbox.traffic_url}/canary", timeout=5)
    finally:
        httpcalls.delete(f"{sandbox.admin_url}/faults", timeout=5).raise_for_status()
    scraped(prometheus, 'sum(istio_requests_total{destination_workload="bruno-site",response_code="503"})')


def test_abort_10pct_breaks_the_error_rate_seen_by_loadkit_and_by_prometheus(
        sandbox: SandboxProcess, start_prometheus: Callable[[list[str]], str], tmp_path: Path) -> None:
    prometheus = start_prometheus([sandbox.admin_url.removeprefix("http://")])
    answered_503_before(sandbox, prometheus)
    (tmp_path / "loadkit.yaml").write_text(SERVER_SIDE)
    code, result, stderr = chaos_run(sandbox, "local-abort.yaml", "--var", "fault_seconds:int=5",
                                     "--config", str(tmp_path / "loadkit.yaml"), "--prometheus", prometheus,
                                     "--canary", "bruno-site", "--namespace", "bruno")
    assert code == 1, stderr
    assert result is not None
    error_rate = check(result, "error-rate")
    assert error_rate["passed"] is False and 5 <= error_rate["observed"] <= 10.5
    assert check(result, "availability")["passed"] is False
    fault_phase = next(p for p in result["phases"] if p["name"] == "fault")
    assert fault_phase["stats"]["status_codes"]["503"] > 0
    server = check(result, "server-success-rate")
    assert server["source"] == "prometheus" and server["passed"] is False
    assert 84 <= server["observed"] <= 96  # 10 % of the canary's requests aborted (at random)
    assert abs(server["observed"] - fault_phase["stats"]["success_rate_pct"]) <= 2  # Istio agrees with loadkit
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
    worst = check(result, "request-success-rate (worst 5s)")  # the burst, however long the fault is watched
    assert worst["status"] == "failed" and worst["observed"] < check(result, "request-success-rate")["observed"]
    assert result["detect_time_s"] is not None and result["detect_time_s"] < 6
    assert code == 1  # zero downtime (availability 100 %) is the plan's bar, and this sandbox does not retry


def test_a_pod_kill_behind_istio_like_retries_is_survived() -> None:
    """With the mesh's retries (retryOn connect-failure,5xx, 2 attempts) a killed pod's requests go to the other
    pod: the same experiment is judged honestly as surviving."""
    with SandboxProcess(pods=2, retries=2, retry_on="connect-failure,5xx") as retrying:
        code, result, stderr = chaos_run(retrying, "local-pod-kill.yaml", "--var", "observe_seconds:int=8")
    assert result is not None, stderr
    assert result["availability_pct"] == 100.0 and check(result, "request-success-rate (worst 5s)")["passed"]
    assert code == 0, [c for c in result["checks"] if not c["passed"]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupting_the_latency_experiment_rolls_back(sandbox: SandboxProcess, sig: signal.Signals) -> None:
    children: list[psutil.Process] = []
    code, result, stderr = interrupt_mid_fault(sandbox, "local-latency.yaml", sig, "--var", "fault_seconds:int=60",
                                               descendants=children)
    assert code == 130, stderr
    assert result["interrupted"] is True and result["journal_status"] == "interrupted"
    assert result["rollbacks"]["run"] == 1 and result["rollbacks"]["failed"] == 0
    assert faults(sandbox) == []
    # this run's own Locust (hermetic: other tests' and other users' Locust processes are none of ours)
    assert children, "no Locust process under this run"
    assert gone(children)


def test_dry_run_injects_nothing(sandbox: SandboxProcess, tmp_path: Path) -> None:
    db, out = tmp_path / "h.db", tmp_path / "report"
    code, result, stderr = chaos_run(sandbox, "local-abort.yaml", "--dry-run", "--var", "fault_seconds:int=2",
                                     "--db", str(db), "--report-dir", str(out))
    assert code == 0, stderr
    assert result is not None and result["dry_run"] is True and result["fault"] is None
    assert result["phases"][0]["stats"]["status_codes"].keys() == {"200"}
    # it tested nothing: never a pass, no score, not green in CI, and not the run the next one trends against
    assert result["verdict"] == "dry-run" and result["score"] == 0
    assert 'data-verdict="dry-run"' in (out / "report.html").read_text()
    suite = ET.fromstring((out / "junit.xml").read_text()).find("testsuite")
    assert suite is not None and suite.get("skipped") != "0"
    from loadkit.store import History, HistoryQuery

    assert not db.exists() or History(db).entries(HistoryQuery()) == []


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


def write_variant(tmp_path: Path, source: str, change: Any, name: str = "variant.yaml") -> Path:
    experiment = yaml.safe_load((EXPERIMENTS / source).read_text())
    change(experiment)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(experiment))
    return path


def test_a_kill_over_the_share_cap_is_refused_before_the_run(sandbox: SandboxProcess, tmp_path: Path) -> None:
    path = write_variant(tmp_path, "local-pod-kill.yaml",
                         lambda e: e["method"][0]["provider"]["arguments"].update(count=2))
    before = pods(sandbox)
    code, result, stderr = chaos_run(sandbox, path)
    assert code == 2 and result is None
    assert "killing 2 of 2 pods is over the cap" in stderr and "refused before anything ran" in stderr
    assert all(pods(sandbox)[name]["restarts"] == pod["restarts"] for name, pod in before.items())


def test_sigterm_inside_a_running_action_interrupts_before_the_fault(sandbox: SandboxProcess,
                                                                      tmp_path: Path) -> None:
    """chaoslib turns a SIGTERM inside a Python action into a failed action and carries on; loadkit
    must stop the experiment instead, and never inject the fault that came next."""
    def slow_first(e: dict[str, Any]) -> None:
        # A Python activity that keeps running for a while: it waits for data that never comes.
        e["method"].insert(0, {"type": "action", "name": "slow-step", "provider": {
            "type": "python", "module": "loadkit.chaos.probes", "func": "rps",
            "arguments": {"window_s": 1, "min_samples": 10**9, "wait_s": 20}}})

    path = write_variant(tmp_path, "local-latency.yaml", slow_first)
    # the signal goes in once chaoslib says the slow action started (never on a timer)
    code, result, stderr = interrupt_mid_fault(sandbox, str(path), signal.SIGTERM,
                                               when_logged="chaos: Action: slow-step")
    assert code == 130, stderr
    assert "Action: add-latency-to-the-canary" not in stderr
    assert result["interrupted"] is True and result["fault"] is None  # the delay never went in
    assert faults(sandbox) == []


def test_two_quick_signals_still_roll_back_and_report(sandbox: SandboxProcess) -> None:
    proc = _start(sandbox, "local-latency.yaml", "--var", "fault_seconds=60")
    _wait_for(lambda: bool(faults(sandbox)))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    result = json.loads(stdout)
    assert result["interrupted"] is True and result["rollbacks"]["run"] == 1
    assert faults(sandbox) == []


def test_without_rollbacks_loadkit_removes_the_fault_before_the_cool_down(sandbox: SandboxProcess,
                                                                          tmp_path: Path) -> None:
    path = write_variant(tmp_path, "local-latency.yaml", lambda e: e.pop("rollbacks"))
    code, result, stderr = chaos_run(sandbox, path, "--var", "fault_seconds=3")
    assert result is not None and code == 1, stderr
    assert faults(sandbox) == []
    rollbacks = check(result, "rollbacks")
    assert rollbacks["passed"] is False and "loadkit removed what was left" in rollbacks["reason"]
    after = next(p for p in result["phases"] if p["name"] == "after")["stats"]
    assert after["p99_ms"] < 300  # the cool-down ran without the 600 ms delay


def test_a_dry_run_leaves_other_peoples_faults_alone(sandbox: SandboxProcess) -> None:

    planted = httpcalls.post(f"{sandbox.admin_url}/faults",
                             json={"version": "primary", "kind": "delay", "delay_ms": 1, "ttl_s": 120}).json()
    try:
        code, result, stderr = chaos_run(sandbox, "local-abort.yaml", "--dry-run")
        assert result is not None, stderr
        assert code in (0, 1), stderr  # judged (a loaded machine may miss a latency threshold)
        assert check(result, "rollbacks")["passed"] is True
        assert [f["id"] for f in faults(sandbox)] == [planted["id"]]
    finally:
        httpcalls.delete(f"{sandbox.admin_url}/faults/{planted['id']}")


def _start(sandbox: SandboxProcess, experiment: str, *args: str) -> subprocess.Popen[str]:
    from tests.conftest import loadkit_cmd

    return subprocess.Popen(
        loadkit_cmd("chaos", "run", str(EXPERIMENTS / experiment), "--target", f"{sandbox.traffic_url}/canary",
                    "--cooldown", "2s", "-o", "json", *args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=chaos_env(sandbox))


def _wait_for(condition: Any, timeout: float = 60) -> None:

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.2)


# Chaos Toolkit's own `chaos validate` on every shipped experiment: its click command, in one Python
# process for all of them (a process per file costs a second of start-up each), exit code per file.
_PLAIN_VALIDATE = """
import json, sys
from click.testing import CliRunner
from chaostoolkit.cli import cli
log, paths = sys.argv[1], sys.argv[2:]
codes = {p: CliRunner().invoke(cli, ["--log-file", log, "validate", p]) for p in paths}
print(json.dumps({p: [r.exit_code, r.output[-2000:]] for p, r in codes.items()}))
"""


def test_shipped_experiments_pass_plain_chaos_validate(tmp_path: Path) -> None:
    shipped = sorted(EXPERIMENTS.glob("*.yaml"))
    out = subprocess.run([sys.executable, "-c", _PLAIN_VALIDATE, str(tmp_path / "ctk.log"), *map(str, shipped)],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    codes = json.loads(out.stdout)
    assert len(codes) == len(shipped) >= 14 and not {p: c for p, c in codes.items() if c[0] != 0}, codes
    out = run_loadkit("chaos", "validate", *map(str, shipped))
    assert out.returncode == 0 and out.stdout.count("ok ") == len(shipped), out.stdout


def test_validate_names_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\ndescription: d\nmethod:\n  - type: action\n    name: x\n    provider:\n"
                   "      type: python\n      module: loadkit.chaos.sandbox\n      func: add_delay\n"
                   "      arguments: {delayms: 5}\n")
    out = run_loadkit("chaos", "validate", str(bad))
    assert out.returncode == 2 and f"invalid  {bad}: refused before anything ran" in out.stdout
    assert "unknown argument(s) delayms (valid: delay_ms, version, percentage, ttl_s, admin_url)" in out.stdout
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

    httpcalls.post(f"{sandbox.admin_url}/faults", json={"version": "canary", "kind": "delay", "delay_ms": 50})
    out = run_loadkit("chaos", "cleanup", "--skip-kubernetes", "--sandbox", sandbox.admin_url)
    assert out.returncode == 0 and "removed sandbox fault" in out.stdout
    assert faults(sandbox) == []
    assert ROOT  # the sandbox is shared by this module's tests
