"""A run that did not test what it claims is an error (exit 3), never a pass; a hypothesis is
judged as Chaos Toolkit would judge it (review findings 17, 18, 20, and a Locust crash)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import chaos_env, chaos_run, check, faults, interrupt_mid_fault, is_locust

pytestmark = pytest.mark.slow

QUICK = ("--cooldown", "1s", "--recovery-window", "1s")
SANDBOX = "loadkit.chaos.sandbox"
REMOVE = {"type": "action", "name": "rm", "provider": {"type": "python", "module": SANDBOX, "func": "remove_faults"}}


def action(func: str, pause_s: float = 1, **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": func, "pauses": {"after": pause_s},
            "provider": {"type": "python", "module": SANDBOX, "func": func, "arguments": arguments}}


def write(tmp_path: Path, **experiment: Any) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"title": "t", "description": "d", **experiment}))
    return path


def test_a_method_that_injects_nothing_is_an_error(sandbox: SandboxProcess, tmp_path: Path) -> None:
    code, result, stderr = chaos_run(sandbox, write(tmp_path, method=[action("list_faults")]), *QUICK)
    assert result is not None, stderr
    assert code == 3 and result["verdict"] == "error" and result["fault"] is None
    assert "nothing was injected" in result["reason"] or "never injected" in result["reason"], result["reason"]


def test_a_hypothesis_probe_given_by_ref_is_judged_after_the_run_too(sandbox: SandboxProcess, tmp_path: Path) -> None:
    probe = {"type": "probe", "name": "load-ok", "tolerance": True,
             "provider": {"type": "python", "module": "loadkit.chaos.probes", "func": "thresholds_met",
                          "arguments": {"window_s": 2}}}
    path = write(tmp_path, **{"steady-state-hypothesis": {"title": "h", "probes": [probe, {"ref": "load-ok",
                                                                                             "tolerance": True}]},
                              "method": [action("add_delay", delay_ms=1, ttl_s=60)], "rollbacks": [REMOVE]})
    code, result, stderr = chaos_run(sandbox, path, *QUICK, "-u", "20")  # 1 s phases: min_samples needs 20 users
    assert result is not None, stderr
    assert result["steady_state_before_met"] is True and result["steady_state_after_met"] is True, result["reason"]
    assert code == 0, result["reason"]


def test_a_hypothesis_that_cannot_measure_is_an_error_not_a_finding(sandbox: SandboxProcess, tmp_path: Path) -> None:
    probe = {"type": "probe", "name": "load-ok", "tolerance": True,
             "provider": {"type": "python", "module": "loadkit.chaos.probes", "func": "thresholds_met",
                          "arguments": {"window_s": 2, "min_samples": 100_000, "wait_s": 1}}}
    path = write(tmp_path, **{"steady-state-hypothesis": {"title": "h", "probes": [probe]},
                              "method": [action("add_delay", delay_ms=1, ttl_s=60)], "rollbacks": [REMOVE]})
    code, result, stderr = chaos_run(sandbox, path, *QUICK)
    assert result is not None, stderr
    assert code == 3 and result["verdict"] == "error", result["reason"]
    assert "insufficient data" in result["reason"] or "could not measure" in result["reason"], result["reason"]
    assert check(result, "steady-state-before")["status"] == "skipped"
    assert faults(sandbox) == []


def test_a_locust_crash_stops_the_experiment_and_rolls_back_at_once(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """No load, no verdict: the fault is not left on for the rest of the method."""
    path = write(tmp_path, method=[action("add_abort", pause_s=60, percentage=10, ttl_s=120)], rollbacks=[REMOVE])
    killed: list[psutil.Process] = []

    def kill_locust() -> None:  # this test's own run's Locust: a descendant of this process
        for child in psutil.Process().children(recursive=True):
            if is_locust(child):
                with contextlib.suppress(psutil.Error):
                    child.kill()
                    killed.append(child)

    timing: dict[str, float] = {}
    # "signal" 0 only probes the process: the test kills Locust, not loadkit
    code, result, _ = interrupt_mid_fault(sandbox, str(path), 0, *QUICK,
                                               on_logged=("Pausing after activity", kill_locust),
                                               when_logged="Pausing after activity", timing=timing)
    assert killed, "no Locust process found under this test"
    assert timing["exit_after_signal_s"] < 30, "the experiment kept the fault on (a 60 s pause) with no load"
    assert code == 3 and result["verdict"] == "error", result["reason"]
    assert "load stopped" in result["reason"] or "Locust" in result["reason"], result["reason"]
    assert result["rollbacks"]["run"] == 1 and faults(sandbox) == []


def test_env_without_the_sandbox_refuses_a_loopback_one(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """Another sandbox on this machine is not this run's to fault just because the file names it."""
    path = write(tmp_path, method=[action("add_abort", admin_url=sandbox.admin_url)])
    env = {k: v for k, v in chaos_env(sandbox).items() if k != "LOADKIT_SANDBOX_ADMIN_URL"}
    code, result, stderr = chaos_run(sandbox, path, *QUICK, env=env)
    assert code == 2 and result is None
    assert "LOADKIT_SANDBOX_ADMIN_URL" in stderr and "refused before anything ran" in stderr, stderr
    assert faults(sandbox) == []
    configured = write(tmp_path, method=[action("add_abort")],
                       configuration={"loadkit_sandbox_admin_url": sandbox.admin_url})
    code, result, stderr = chaos_run(sandbox, configured, *QUICK, env=env)
    assert code == 2 and "no sandbox is configured (LOADKIT_SANDBOX_ADMIN_URL is not set)" in stderr, stderr
    assert faults(sandbox) == []


def test_the_experiment_stops_when_its_fault_expires(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """Past its ttl the sandbox (or, in a cluster, the reaper or another run) removes the fault: the
    rest of the method would test nothing, so loadkit stops there."""
    path = write(tmp_path, method=[action("add_abort", pause_s=60, percentage=10, ttl_s=3)], rollbacks=[REMOVE])
    code, result, stderr = chaos_run(sandbox, path, *QUICK)
    assert result is not None, stderr
    assert result["fault"]["duration_s"] < 20, "the experiment ran on past its fault's expiry (a 60 s pause)"
    assert code == 3 and "reached its own expiry" in result["reason"], result["reason"]
    assert faults(sandbox) == []
