"""Every signal that would end the process rolls back (review finding 8), and a hung rollback or
after-hypothesis can be abandoned (11): a real sandbox, real Locust, real chaoslib."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import faults, interrupt_mid_fault

pytestmark = pytest.mark.slow

DELAY = {"type": "python", "module": "loadkit.chaos.sandbox", "func": "add_delay",
         "arguments": {"delay_ms": 50, "ttl_s": 300}}
REMOVE = {"type": "action", "name": "rm", "provider": {"type": "python", "module": "loadkit.chaos.sandbox",
                                                        "func": "remove_faults"}}
QUICK = ("--recovery-window", "1s")


def hung(name: str) -> dict[str, Any]:
    """A Python activity that waits 40 s for data that never comes."""
    return {"type": "probe", "name": name, "provider": {"type": "python", "module": "loadkit.chaos.probes",
                                                        "func": "rps", "arguments": {"window_s": 1,
                                                                                     "min_samples": 10**9,
                                                                                     "wait_s": 40}}}


def write(tmp_path: Path, **experiment: Any) -> str:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"title": "t", "description": "d", **experiment}))
    return str(path)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2],
                         ids=["sighup", "sigquit", "sigusr1", "sigusr2"])
def test_every_terminating_signal_rolls_back(sandbox: SandboxProcess, tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP (a closed terminal), SIGQUIT, SIGUSR1/2 (chaoslib's "skip the rollbacks" included)."""
    path = write(tmp_path, method=[{"type": "action", "name": "delay", "provider": DELAY, "pauses": {"after": 60}}],
                 rollbacks=[REMOVE])
    timing: dict[str, float] = {}
    code, result, stderr = interrupt_mid_fault(sandbox, path, sig, *QUICK, timing=timing)
    assert code == 130, stderr
    assert result["interrupted"] is True and result["rollbacks"]["run"] == 1 and result["rollbacks"]["failed"] == 0
    assert faults(sandbox) == []
    assert timing["exit_after_signal_s"] < 30  # at once, not at the end of the 60 s pause


def test_three_signals_abandon_hung_rollbacks_and_loadkit_does_not_replay_them(sandbox: SandboxProcess,
                                                                              tmp_path: Path) -> None:
    path = write(tmp_path, method=[{"type": "action", "name": "delay", "provider": DELAY, "pauses": {"after": 1}}],
                 rollbacks=[hung("hang-1"), hung("hang-2"), REMOVE])
    timing: dict[str, float] = {}
    code, result, stderr = interrupt_mid_fault(sandbox, path, signal.SIGTERM, *QUICK, timing=timing,
                                               when_logged="chaos: Rollback: hang-1", signals=3, gap_s=0.2)
    assert timing["exit_after_signal_s"] < 30, "a hung rollback held the run"  # hang-1 and -2 take 40 s each
    assert code == 130, stderr
    assert "Rollback: hang-2" not in stderr and "abandon" in stderr
    assert result["rollbacks"]["failed"] >= 1
    assert faults(sandbox) == []  # loadkit still removed its own fault


def test_a_signal_ends_a_hung_steady_state_after_at_once(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """The hypothesis "every canary pod is up" waits when one is down after the fault: a signal ends
    the wait (the fault is gone; it only measures)."""
    probe = {"type": "probe", "name": "canary-pods-up", "tolerance": True, "provider": {
        "type": "python", "module": "loadkit.chaos.sandbox", "func": "wait_for_pods",
        "arguments": {"version": "canary", "timeout_s": 40}}}
    path = write(tmp_path, **{"steady-state-hypothesis": {"title": "h", "probes": [probe]},
                              "method": [{"type": "action", "name": "delay", "provider": DELAY,
                                          "pauses": {"after": 1}}],
                              "rollbacks": [REMOVE]})

    def kill_a_canary_pod() -> None:  # a pod dies during the cool-down (not loadkit's kill)
        httpcalls.post(f"{sandbox.admin_url}/pods/kill", json={"version": "canary", "count": 1, "restart_after_s": 20},
                       timeout=5).raise_for_status()

    timing: dict[str, float] = {}
    try:
        code, result, stderr = interrupt_mid_fault(sandbox, path, signal.SIGINT, *QUICK,
                                                   when_logged="Probe: canary-pods-up", times=2,
                                                   on_logged=("Experiment ended with status", kill_a_canary_pod),
                                                   timing=timing)
        assert code == 130, stderr
        assert result["steady_state_after_met"] is None
        assert "the steady state after was not measured: interrupted" in str(result)
        assert timing["exit_after_signal_s"] < 15  # not the 40 s of the probe, nor the 20 s of the pod
    finally:
        _wait_for_pods(sandbox)


def _wait_for_pods(sandbox: SandboxProcess) -> None:
    deadline = time.monotonic() + 60
    while not all(p["alive"] for p in httpcalls.get(f"{sandbox.admin_url}/pods", timeout=5).json()["pods"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
