"""Outputs never look green when the run was not judged: each case as a new user meets it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import NOWHERE, ROOT, loadkit_cmd, run_loadkit


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}


def _ctrl_c(args: list[str], ready: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Start loadkit in its own session as a terminal would, wait for `ready` on stderr, then send
    SIGINT to the whole foreground process group (what Ctrl-C does)."""
    proc = subprocess.Popen(loadkit_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # progress lines come about once a second
        seen.append(line)
        if ready in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, rest = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "".join(seen) + rest)


def test_an_interrupted_run_is_interrupted_in_every_output(sandbox: SandboxProcess, tmp_path: Path) -> None:
    out = _ctrl_c(["run", "--target", f"{sandbox.traffic_url}/canary", "-u", "5", "-t", "30s",
                   "--junit", "j.xml", "--report-dir", "report"], ready="passing so far", cwd=tmp_path)
    assert out.returncode == 130, out.stderr
    head = out.stdout.splitlines()[0]
    assert "INTERRUPTED" in head and "PASS" not in head, out.stdout
    assert "PASS" not in out.stdout  # no check reads as passed: each is skipped, with what it showed so far
    assert "not judged: interrupted; so far passed" in out.stdout
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    assert result["verdict"] == "interrupted"
    assert {c["status"] for c in result["checks"]} == {"skipped"}
    assert {c["collected"]["status"] for c in result["checks"]} == {"passed"}
    for junit in (tmp_path / "j.xml", tmp_path / "report" / "junit.xml"):
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None
        assert suite.get("errors") == "1" and suite.get("skipped") == "3", ET.tostring(suite, encoding="unicode")
        cases = suite.findall("testcase")
        assert [c.find("error") is not None for c in cases] == [True, False, False, False]
        assert all(c.find("skipped") is not None for c in cases[1:])
    html = (tmp_path / "report" / "report.html").read_text()
    assert ">INTERRUPTED<" in html and 'class="pass"' not in html


@pytest.mark.parametrize(("args", "code", "needle"), [
    pytest.param(["--target", NOWHERE, "--profile", "smok"], 2, "unknown profile 'smok'", id="usage-error-exit-2"),
    pytest.param(["--target", NOWHERE, "-t", "3s"], 3, NOWHERE.removeprefix("http://"), id="unreachable-target-exit-3"),
])
def test_an_error_still_writes_junit_and_the_report_dir(tmp_path: Path, args: list[str], code: int,
                                                          needle: str) -> None:
    out = run_loadkit("run", *args, "--junit", str(tmp_path / "j.xml"), "--report-dir", str(tmp_path / "r"))
    assert out.returncode == code, out.stderr
    for junit in (tmp_path / "j.xml", tmp_path / "r" / "junit.xml"):
        root = ET.parse(junit).getroot()
        error = root.find("testsuite/testcase/error")
        assert error is not None and needle in (error.get("message") or ""), ET.tostring(root, encoding="unicode")
        assert root.get("errors") == "1" and root.get("failures") == "0"
    said = (tmp_path / "r" / "error.txt").read_text()
    assert f"exit {code}" in said and needle in said


def test_ctrl_c_on_demo_stops_the_load_first_and_reports_interrupted(tmp_path: Path) -> None:
    out = _ctrl_c(["demo", "-o", "json"], ready="passing so far", cwd=tmp_path)
    assert out.returncode == 130, out.stderr
    result = json.loads(out.stdout)
    assert result["verdict"] == "interrupted"
    assert result["stats"]["failures"] == 0  # the sandbox outlived the load: no connection was refused
    traffic = next(line.split("traffic ", 1)[1].split(",")[0] for line in out.stderr.splitlines()
                   if line.startswith("sandbox up: traffic"))
    with pytest.raises(httpx.TransportError):  # and then it was stopped
        httpcalls.get(traffic, timeout=2)


def test_a_sandbox_never_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    script = tmp_path / "starter.py"
    script.write_text("import sys, time\nfrom loadkit.sandbox import SandboxProcess\n"
                      "s = SandboxProcess().start()\nprint(s.pid, s.traffic_url, flush=True)\ntime.sleep(600)\n")
    starter = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env=_env())
    assert starter.stdout is not None
    pid, url = starter.stdout.readline().split()
    sandbox = psutil.Process(int(pid))
    starter.kill()  # SIGKILL: no __exit__, no atexit
    starter.wait()
    sandbox.wait(timeout=10)
    with pytest.raises(httpx.TransportError):
        httpcalls.get(url, timeout=2)


def test_a_locustfile_that_fails_to_import_is_one_line(sandbox: SandboxProcess, tmp_path: Path) -> None:
    helper = tmp_path / "helpers.py"
    helper.write_text("X = 1\nraise RuntimeError('helpers cannot load')\n")
    journey = tmp_path / "journey.py"
    journey.write_text("from locust import HttpUser, task\n\nimport helpers\n")
    out = run_loadkit("run", "--target", sandbox.traffic_url, "--locustfile", str(journey), "-t", "3s", cwd=tmp_path,
                      env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 3, out.stderr
    error = out.stderr.splitlines()[-2]
    assert error == (f"error: locustfile {journey}:3 failed to import: RuntimeError: helpers cannot load "
                     f"(in {helper}:2)"), out.stderr
    assert "Traceback" not in out.stderr and "site-packages" not in out.stderr


def _piped(args: list[str], reader: list[str], cwd: Path) -> tuple[int, str]:
    """`loadkit ARGS | READER`: loadkit's exit code and stderr."""
    loadkit = subprocess.Popen(loadkit_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_env())
    assert loadkit.stdout is not None and loadkit.stderr is not None
    subprocess.run(reader, stdin=loadkit.stdout, stdout=subprocess.DEVNULL, check=False)
    loadkit.stdout.close()
    stderr = loadkit.stderr.read().decode()
    return loadkit.wait(timeout=60), stderr


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    code, stderr = _piped(["profiles", "-o", "json"], ["true"], cwd=tmp_path)
    assert code == 0 and stderr == ""


def test_a_broken_pipe_keeps_the_verdict(tmp_path: Path) -> None:
    with SandboxProcess(canary_error_rate=0.5) as broken:
        code, stderr = _piped(["run", "--target", f"{broken.traffic_url}/canary", "-t", "3s", "--min-samples", "1",
                               "-o", "json", "-q"], ["head", "-c", "1"], cwd=tmp_path)
    assert code == 1, stderr  # FAIL, as without the pipe; not "internal error"
    assert "internal error" not in stderr and "BrokenPipe" not in stderr


def test_piped_output_is_not_wrapped(sandbox: SandboxProcess, tmp_path: Path) -> None:
    out = _ctrl_c(["run", "--target", f"{sandbox.traffic_url}/canary", "-u", "2", "-t", "30s"],
                  ready="passing so far", cwd=tmp_path)
    rows = [line for line in out.stdout.splitlines() if line.startswith("request-success-rate")]
    assert len(rows) == 1 and rows[0].rstrip().endswith("meets >= 99%)"), out.stdout  # one row, one line
    warning = next(line for line in out.stdout.splitlines() if line.startswith("warning: interrupted"))
    assert warning.endswith("not judged (the checks show what was collected)")


def test_a_config_typo_in_a_map_key_is_refused(loadkit_in_process: Callable[..., subprocess.CompletedProcess[str]],
                                               tmp_path: Path) -> None:
    config = tmp_path / "loadkit.yaml"
    config.write_text("server:\n  default_profiles:\n    pre_rollout: steady\n")
    out = loadkit_in_process("profiles", "--config", str(config))
    assert out.returncode == 2
    assert "server.default_profiles: unknown hook 'pre_rollout'" in out.stderr
    assert "did you mean 'pre-rollout'?" in out.stderr


def test_an_unwritable_journal_fails_before_the_run(sandbox: SandboxProcess, tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere; use a path under a file instead
        journal = tmp_path / "file" / "journal.json"
        (tmp_path / "file").write_text("")
    else:
        journal = tmp_path / "ro" / "journal.json"
    start = time.monotonic()
    out = run_loadkit("chaos", "run", str(ROOT / "experiments" / "local-latency.yaml"), "--target",
                      f"{sandbox.traffic_url}/canary", "--journal", str(journal),
                      env={"LOADKIT_SANDBOX_ADMIN_URL": sandbox.admin_url})
    assert out.returncode == 2, out.stderr
    assert f"cannot write --journal {journal}" in out.stderr and "internal error" not in out.stderr
    assert time.monotonic() - start < 15  # refused up front, not after a whole experiment


def test_a_locust_crash_mid_chaos_run_is_an_error_with_the_result(sandbox: SandboxProcess) -> None:
    proc = subprocess.Popen(
        loadkit_cmd("chaos", "run", str(ROOT / "experiments" / "local-latency.yaml"), "--target",
                    f"{sandbox.traffic_url}/canary", "--cooldown", "1s", "-o", "json"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**_env(), "LOADKIT_SANDBOX_ADMIN_URL": sandbox.admin_url})
    deadline = time.monotonic() + 60
    while not httpcalls.get(f"{sandbox.admin_url}/faults", timeout=5).json()["faults"]:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    locust = [p for p in psutil.Process(proc.pid).children(recursive=True) if "locust" in " ".join(p.cmdline())]
    assert locust, "no Locust child"
    for child in locust:
        child.kill()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    result = json.loads(stdout)  # the result is still printed
    assert result["verdict"] == "error"
    assert "the load stopped before the experiment ended" in result["reason"], result["reason"]
    assert httpcalls.get(f"{sandbox.admin_url}/faults", timeout=5).json()["faults"] == []  # rolled back all the same
