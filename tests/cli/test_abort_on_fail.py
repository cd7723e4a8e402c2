"""`loadkit run --abort-on-fail`: a 5 %-error canary fails well before the end of a 60 s profile, exit 1,
every output saying when and why; a healthy run with the flag runs to its end and passes, also when
it starts with an error burst the whole run dilutes (review finding 1)."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rich.console import Console

from loadkit.models.results import RunResult
from loadkit.report import render_scorecard
from loadkit.sandbox import SandboxProcess
from tests.conftest import NOWHERE, run_loadkit
from tests.http_servers import CountingServer, serve_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(canary_error_rate=0.05)


def test_a_5pct_error_canary_fails_within_seconds_of_a_60s_profile(broken: SandboxProcess, tmp_path: Path) -> None:
    junit, reports = tmp_path / "load.xml", tmp_path / "reports"
    config = tmp_path / "loadkit.yaml"  # the same canary, stopped by one threshold's own abort_on_fail
    config.write_text("thresholds:\n"
                      "  - {name: request-success-rate, thresholdRange: {min: 99}}\n"
                      "  - {name: error-rate, thresholdRange: {max: 1}, abort_on_fail: true, delay_abort_eval: 4s}\n")
    target = f"{broken.traffic_url}/canary"
    began = time.monotonic()
    with ThreadPoolExecutor(2) as pool:  # both at once: half the wall time
        by_config = pool.submit(run_loadkit, "run", "--target", target, "-u", "20", "-t", "60s", "--config",
                                str(config), "-o", "json", "-q", "--no-history")
        out = run_loadkit("run", "--target", target, "-p", "steady", "--abort-on-fail", "-o", "json",
                          "--junit", str(junit), "--report-dir", str(reports), "--no-history")
        took = time.monotonic() - began
        configured = by_config.result()
    assert out.returncode == 1, out.stderr
    result = RunResult.model_validate_json(out.stdout)
    stop = result.stopped_early
    assert stop is not None and stop.planned_s == 60
    # certain once 5 % of what was sent is above 1 % of the whole planned run, counted high: 20-30 s
    assert stop.at_s <= 45 and took < 58, (stop, took)
    assert result.verdict.value == "fail" and not result.interrupted
    assert result.stats.duration_s < 50
    assert stop.check in ("request-success-rate", "error-rate") and "still planned" in stop.reason
    stopper = next(c for c in result.checks if c.name == stop.check)
    assert stopper.status.value == "failed" and "stopped the run at" in stopper.reason
    assert f"stopped at {stop.at_s:.1f}".removesuffix(".0") in out.stderr
    # every output says when and why
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props["stop_check"] == stop.check
    assert float(props["stopped_early_at_s"]) == pytest.approx(stop.at_s, abs=0.01)
    assert stop.reason in ET.parse(junit).getroot().findtext(".//system-err", "")
    html = (reports / "report.html").read_text()
    assert "stopped at" in html.split('class="banner', 1)[1].split("</div>", 1)[0]
    assert json.loads((reports / "result.json").read_text())["stopped_early"]["check"] == stop.check
    console = Console(file=io.StringIO(), width=1000)
    render_scorecard(result, console)
    card = console.file.getvalue()  # type: ignore[attr-defined]
    assert "STOPPED EARLY: stopped at" in card and stop.reason in card
    # without the flag: only error-rate may stop it (success rate breaks too), and not before 4 s
    assert configured.returncode == 1, configured.stderr
    by_threshold = RunResult.model_validate_json(configured.stdout).stopped_early
    assert by_threshold is not None and by_threshold.check == "error-rate"
    assert 4 <= by_threshold.at_s <= 45
    # the checks that did not stop it are not judged on the partial run
    others = [c for c in result.checks if c.name != stop.check]
    assert others and all(c.status.value == "skipped" and "the run stopped at" in c.reason for c in others)


def test_a_healthy_run_with_the_flag_runs_to_its_end_and_passes(healthy_sandbox: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", f"{healthy_sandbox.traffic_url}/canary", "-p", "smoke", "-t", "5s",
                      "--abort-on-fail", "-o", "json", "-q", "--no-history")
    assert out.returncode == 0, out.stderr
    result = RunResult.model_validate_json(out.stdout)
    assert result.verdict.value == "pass" and result.stopped_early is None
    assert result.stats.duration_s >= 4.5


class _WarmingUp:
    """Every 12th of the first 150 requests is a 503 (8 % of them), then all succeed."""

    def __init__(self) -> None:
        self.seen = 0
        self.lock = threading.Lock()

    def __call__(self, _path: str) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.seen += 1
            seen = self.seen
        return (503 if seen <= 150 and seen % 12 == 0 else 200), {}


def test_a_warm_up_error_burst_does_not_stop_a_passing_run(tmp_path: Path) -> None:
    locustfile = tmp_path / "paced.py"
    locustfile.write_text("from locust import HttpUser, constant, task\n\n"
                          "class Visitor(HttpUser):\n    wait_time = constant(0.05)\n\n"
                          "    @task\n    def visit(self):\n        self.client.get('/')\n")
    server: CountingServer
    with serve_http("127.0.0.1", _WarmingUp()) as server:
        out = run_loadkit("run", "--target", f"http://127.0.0.1:{server.port}", "-f", str(locustfile), "-u", "10",
                          "-r", "100", "-t", "12s", "--abort-on-fail", "-o", "json", "-q", "--no-history")
    result = RunResult.model_validate_json(out.stdout)
    assert result.stats.requests >= 1300, result.stats  # 12 errors: under 1 % of the run
    assert out.returncode == 0 and result.stopped_early is None, (result.stopped_early, out.stderr[-2000:])
    assert result.verdict.value == "pass" and result.stats.duration_s >= 11


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        pytest.param("[{name: rps, thresholdRange: {min: 1}, abort_on_fail: true}]",
                     "bad.yaml:1: thresholds.0: abort_on_fail and delay_abort_eval need", id="never-decisive"),
        pytest.param("[{name: error-rate, thresholdRange: {max: 1}, abort_on_fial: true}]",
                     "did you mean 'abort_on_fail'", id="typo"),
        pytest.param("[{name: error-rate, thresholdRange: {max: 1}, delay_abort_eval: soon}]",
                     "delay_abort_eval", id="bad-duration"),
        pytest.param("[{name: error-rate, thresholdRange: {max: 1}, abort_on_fail: 'yes'}]",
                     "bad.yaml:1: thresholds.0.abort_on_fail: Input should be a valid boolean", id="string-yes"),
        pytest.param("[{name: error-rate, thresholdRange: {max: 1}, abort_on_fail: 1}]",
                     "abort_on_fail: Input should be a valid boolean", id="number-1"),
        pytest.param("[{name: rps, thresholdRange: {min: 1}, delay_abort_eval: 5s}]",
                     "not a minimum on rps", id="delay-on-rps"),
        pytest.param("[{name: latency-max, thresholdRange: {min: 1}, abort_on_fail: true}]",
                     "bad.yaml:1: thresholds.0: abort_on_fail and delay_abort_eval need", id="min-on-latency-max"),
    ],
)
def test_bad_abort_settings_exit_2_with_the_fix(loadkit_in_process: Callable[..., subprocess.CompletedProcess[str]],
                                                tmp_path: Path, thresholds: str, expected: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"thresholds: {thresholds}\n")
    out = loadkit_in_process("run", "--target", NOWHERE, "--config", str(config), "--abort-on-fail", "-q",
                             "--no-history")
    assert out.returncode == 2, out
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_a_delay_longer_than_the_run_is_warned_about(
        loadkit_in_process: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    config = tmp_path / "late.yaml"
    config.write_text("thresholds: [{name: error-rate, thresholdRange: {max: 1}, abort_on_fail: true, "
                      "delay_abort_eval: 90s}]\n")
    out = loadkit_in_process("run", "--target", NOWHERE, "--config", str(config), "-t", "30s", "-q", "--no-history")
    assert "error-rate: delay_abort_eval 90s is not shorter than the run (30s)" in out.stderr, out.stderr
