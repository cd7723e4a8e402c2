"""Faults whose request or removal went astray on the network (review findings 6 and 7), and the
one sandbox an experiment may fault (16): a real sandbox behind a proxy that loses requests."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.chaos.conftest import FlakyProxy, chaos_env, chaos_run, faults
from tests.conftest import ROOT, loadkit_cmd

pytestmark = pytest.mark.slow

ABORT = {"type": "python", "module": "loadkit.chaos.sandbox", "func": "add_abort",
         "arguments": {"percentage": 50, "ttl_s": 120}}


def abort_without_rollback(tmp_path: Path, pause_s: float = 1) -> Path:
    """A 50 % abort nobody rolls back: only loadkit's own clean-up removes it."""
    path = tmp_path / "abort.yaml"
    path.write_text(yaml.safe_dump({"title": "abort, no rollback", "description": "d", "method": [
        {"type": "action", "name": "abort-half", "provider": ABORT, "pauses": {"after": pause_s}}]}))
    return path


QUICK = ("--cooldown", "1s", "--recovery-window", "1s")  # the recovery is not what these tests look at


def through(sandbox: SandboxProcess, proxy: FlakyProxy) -> dict[str, str]:
    return chaos_env(sandbox, {"LOADKIT_SANDBOX_ADMIN_URL": proxy.url})


def test_a_fault_whose_answer_was_lost_is_still_removed(sandbox: SandboxProcess, flaky: FlakyProxy,
                                                        tmp_path: Path) -> None:
    flaky.drop(b"POST /faults")  # the sandbox makes the fault; loadkit never hears back
    code, result, stderr = chaos_run(sandbox, abort_without_rollback(tmp_path), *QUICK, env=through(sandbox, flaky))
    assert result is not None, stderr
    assert faults(sandbox) == [], "the fault whose answer was lost stayed on"
    assert result["rollbacks"]["leftovers_removed"] and result["rollbacks"]["leftovers_failed"] == []
    assert code == 3 and result["verdict"] == "error"  # loadkit could not see it go in: not a verdict


def test_ctrl_c_while_the_fault_request_is_in_flight_still_removes_it(sandbox: SandboxProcess, flaky: FlakyProxy,
                                                                      tmp_path: Path) -> None:
    flaky.hold(b"POST /faults", 5)  # made at once, answered late: Ctrl-C lands in between
    proc = subprocess.Popen(loadkit_cmd("chaos", "run", str(abort_without_rollback(tmp_path)), "--target",
                                        f"{sandbox.traffic_url}/canary", "-o", "json", *QUICK),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=through(sandbox, flaky))
    deadline = time.monotonic() + 60
    while not faults(sandbox):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert faults(sandbox) == []


@pytest.mark.parametrize("refused", [2, 100], ids=["briefly", "for-good"])
def test_an_admin_api_unreachable_during_the_clean_up(sandbox: SandboxProcess, flaky: FlakyProxy, tmp_path: Path,
                                                      refused: int) -> None:
    """Briefly: retried, and removed. For good: said so, with the command, never "removed"."""
    flaky.refuse(b"GET /faults?run=", refused)
    code, result, stderr = chaos_run(sandbox, abort_without_rollback(tmp_path), *QUICK, env=through(sandbox, flaky))
    assert result is not None, stderr
    rollbacks: dict[str, Any] = result["rollbacks"]
    if refused < 100:
        assert faults(sandbox) == [] and rollbacks["leftovers_failed"] == []
        assert len(rollbacks["leftovers_removed"]) == 1, rollbacks
        return
    try:
        assert len(faults(sandbox)) == 1 and rollbacks["leftovers_removed"] == []
        assert any(f"loadkit chaos cleanup --sandbox {flaky.url} --run" in f for f in rollbacks["leftovers_failed"])
        assert code != 0 and result["verdict"] != "pass"
        assert "nothing was left behind" not in str(result)
    finally:
        for fault in faults(sandbox):

            httpcalls.delete(f"{sandbox.admin_url}/faults/{fault['id']}", timeout=5)
