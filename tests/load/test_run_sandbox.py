"""`loadkit run` end to end: the real CLI, real Locust, the real sandbox as ground truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from loadkit.sandbox import SandboxProcess
from tests.conftest import NOWHERE, ROOT, loadkit_cmd, run_loadkit
from tests.load.conftest import istio_requests, parse_result

pytestmark = pytest.mark.slow


def check(result: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in result["checks"] if c["name"] == name)


def test_healthy_canary_passes(healthy: SandboxProcess, tmp_path: Path) -> None:
    junit = tmp_path / "load.xml"
    reports = tmp_path / "reports"
    out = run_loadkit("run", "--target", f"{healthy.traffic_url}/canary", "-p", "smoke", "-t", "6s",
                      "-o", "json", "--junit", str(junit), "--report-dir", str(reports))
    assert out.returncode == 0, out.stderr
    result = parse_result(out.stdout)
    assert result["schema_version"] == 1
    assert result["verdict"] == "pass" and result["score"] == 100
    assert result["stats"]["requests"] >= 100
    assert set(result["stats"]["status_codes"]) == {"200"}
    assert [c["name"] for c in result["checks"]] == ["request-success-rate", "request-duration", "error-rate"]
    assert all(c["passed"] for c in result["checks"])
    assert result["generator"]["saturated"] is False
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert {p.name for p in reports.iterdir()} >= {"result.json", "junit.xml", "report.html", "timeline.csv",
                                                    "locust.log"}


def test_canary_with_3pct_503s_fails_on_success_rate(erroring_canary: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", f"{erroring_canary.traffic_url}/canary", "-u", "20", "-t", "8s",
                      "-o", "json", "-q")
    assert out.returncode == 1, out.stderr
    result = parse_result(out.stdout)
    success = check(result, "request-success-rate")
    assert success["passed"] is False
    assert abs(success["observed"] - 97.0) <= 0.5
    assert "below the minimum 99%" in success["reason"]
    assert result["verdict"] == "fail"
    assert result["stats"]["failures_by_kind"].keys() == {"http_5xx"}


def test_600ms_canary_latency_fails_on_request_duration(slow_canary: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", f"{slow_canary.traffic_url}/canary", "-u", "30", "-r", "30",
                      "-t", "8s", "-o", "json", "-q")
    assert out.returncode == 1, out.stderr
    result = parse_result(out.stdout)
    duration = check(result, "request-duration")
    assert duration["passed"] is False and duration["observed"] >= 600
    assert check(result, "request-success-rate")["passed"] is True
    assert result["stats"]["p50_ms"] >= 600


def test_the_primary_route_of_the_same_sandbox_passes(slow_canary: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", slow_canary.traffic_url, "-t", "5s", "-o", "json", "-q")
    assert out.returncode == 0, out.stderr
    assert parse_result(out.stdout)["stats"]["p99_ms"] < 500


def test_unreachable_target_exits_3_in_seconds() -> None:
    started = time.monotonic()
    out = run_loadkit("run", "--target", f"{NOWHERE}/canary", "-t", "30s")
    assert out.returncode == 3
    assert time.monotonic() - started < 10
    assert f"cannot reach {NOWHERE}/canary" in out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr


def test_too_few_requests_is_insufficient_data(healthy: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", f"{healthy.traffic_url}/canary", "-u", "1", "-t", "2s", "-o", "json")
    assert out.returncode == 1
    result = parse_result(out.stdout)
    assert 0 < result["stats"]["requests"] < 100
    assert all(c["reason"].startswith("insufficient data") for c in result["checks"])
    assert result["verdict"] == "fail"


def test_ab_header_sends_all_load_to_the_canary(healthy: SandboxProcess) -> None:
    before = istio_requests(healthy)
    out = run_loadkit("run", "--target", healthy.traffic_url, "-H", "x-canary: insider", "-t", "4s",
                      "-o", "json", "-q", "--min-samples", "1")
    assert out.returncode == 0, out.stderr
    sent = parse_result(out.stdout)["stats"]["requests"]
    after = istio_requests(healthy)
    assert after.get("bruno-site-primary", 0) == before.get("bruno-site-primary", 0)
    assert after["bruno-site"] - before.get("bruno-site", 0) == pytest.approx(sent, abs=10)


def test_processes_mode_counts_every_request(healthy: SandboxProcess) -> None:
    before = istio_requests(healthy).get("bruno-site-primary", 0)
    out = run_loadkit("run", "--target", healthy.traffic_url, "--processes", "2", "-u", "10", "-t", "6s",
                      "-o", "json", "-q")
    assert out.returncode == 0, out.stderr
    result = parse_result(out.stdout)
    served = istio_requests(healthy)["bruno-site-primary"] - before
    assert result["generator"]["processes"] == 2
    assert result["stats"]["requests"] >= 100
    assert result["stats"]["requests"] == pytest.approx(served, abs=10)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does for `loadkit run ... &`


@pytest.mark.parametrize(
    ("sig", "processes", "background"),
    [
        pytest.param(signal.SIGINT, "1", False, id="sigint"),
        pytest.param(signal.SIGTERM, "1", False, id="sigterm"),
        pytest.param(signal.SIGINT, "2", False, id="sigint-processes"),
        pytest.param(signal.SIGTERM, "2", True, id="sigterm-background-job"),
        pytest.param(signal.SIGINT, "1", True, id="sigint-background-job"),
    ],
)
def test_interrupt_scores_what_was_collected_and_exits_130(healthy: SandboxProcess, sig: signal.Signals,
                                                          processes: str, background: bool) -> None:
    before = istio_requests(healthy).get("bruno-site", 0)
    proc = subprocess.Popen(loadkit_cmd("run", "--target", f"{healthy.traffic_url}/canary", "-t", "60s",
                                        "--processes", processes, "-o", "json"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint if background else None)
    deadline = time.monotonic() + 30
    while istio_requests(healthy).get("bruno-site", 0) - before < 150:  # load is flowing
        assert time.monotonic() < deadline and proc.poll() is None, "no load reached the canary"
    locust = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, sig)
    interrupted_at = time.monotonic()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - interrupted_at < 10  # an orderly stop, not the 15 s kill deadline
    result = parse_result(stdout)
    assert result["interrupted"] is True
    assert any("interrupted" in w for w in result["warnings"])
    # Locust stopped in order: its final snapshot arrived, so every request the canary served is counted.
    served = istio_requests(healthy)["bruno-site"] - before
    assert result["stats"]["requests"] == pytest.approx(served, abs=12)
    assert result["stats"]["duration_s"] < 50
    assert len(locust) >= int(processes)
    assert not [p for p in locust if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_saturated_generator_is_reported(healthy: SandboxProcess, cpu_burner: Path) -> None:
    out = run_loadkit("run", "--target", healthy.traffic_url, "--locustfile", str(cpu_burner), "-u", "5",
                      "-t", "6s", "-o", "json", "-q", "--min-samples", "1")
    result = parse_result(out.stdout)
    assert result["generator"]["saturated"] is True
    # CPU and/or event-loop lag, whichever the machine shows: a busy machine gives the burner less than 90 %
    # of a core, but its 0.5 s blocks keep the event loop late whatever its share
    assert result["generator"]["reason"]
    assert any("saturated" in w for w in result["warnings"])


def test_text_output_is_a_scorecard(healthy: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", f"{healthy.traffic_url}/canary", "-t", "4s", "--min-samples", "1")
    assert out.returncode == 0, out.stderr
    assert "PASS" in out.stdout and "request-success-rate" in out.stdout and "status codes" in out.stdout
    assert "loadkit: smoke" in out.stderr  # progress and logs go to stderr


@pytest.mark.parametrize("journey", ["website.py", "api.py"])
def test_locustfiles_run_with_plain_locust(healthy: SandboxProcess, journey: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / journey), "--headless", "-u", "5",
         "-r", "5", "-t", "6s", "-H", healthy.traffic_url, "--only-summary", "--csv", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = (tmp_path / "run_stats.csv").read_text().splitlines()
    aggregated = dict(zip(rows[0].split(","), rows[-1].split(","), strict=False))
    assert int(aggregated["Request Count"]) > 0, out.stderr[-2000:]  # 6 s: a busy machine starts users late
    assert int(aggregated["Failure Count"]) == 0


def test_headers_also_reach_plain_httpuser_locustfiles(healthy: SandboxProcess, tmp_path: Path) -> None:
    locustfile = tmp_path / "plain_http.py"
    locustfile.write_text(
        "from locust import HttpUser, constant, task\n\n"
        "class Visitor(HttpUser):\n"
        "    wait_time = constant(0.05)\n\n"
        "    @task\n"
        "    def home(self):\n"
        "        self.client.get('/about')\n"
    )
    before = istio_requests(healthy)
    out = run_loadkit("run", "--target", healthy.traffic_url, "--locustfile", str(locustfile), "-u", "2",
                      "-t", "3s", "-H", "x-canary: insider", "-o", "json", "-q", "--min-samples", "1")
    assert out.returncode == 0, out.stderr
    after = istio_requests(healthy)
    assert after.get("bruno-site-primary", 0) == before.get("bruno-site-primary", 0)
    assert after["bruno-site"] > before.get("bruno-site", 0)


@pytest.mark.parametrize(
    ("flags", "code", "verdict"),
    [
        pytest.param(["--duration", "5s"], 0, "pass", id="healthy"),
        pytest.param(["--duration", "12s", "--broken-canary"], 1, "fail", id="broken-canary"),
    ],
)
def test_demo(flags: list[str], code: int, verdict: str) -> None:
    out = run_loadkit("demo", "--output", "json", *flags)
    assert out.returncode == code, out.stderr
    result = parse_result(out.stdout)
    assert result["verdict"] == verdict and result["target"].endswith("/canary")
    if "--broken-canary" in flags:
        failed = {c["name"] for c in result["checks"] if not c["passed"]}
        assert failed == {"request-success-rate", "request-duration", "error-rate"}
        assert not any(c["reason"].startswith("insufficient") for c in result["checks"])


def test_exceptions_in_tasks_fail_the_error_rate(healthy: SandboxProcess, tmp_path: Path) -> None:
    locustfile = tmp_path / "checks.py"
    locustfile.write_text(
        "from locust import FastHttpUser, LoadTestShape, constant, task\n\n"
        "class Own(LoadTestShape):\n"
        "    def tick(self):\n"
        "        return (1, 1) if self.get_run_time() < 1 else None\n\n"
        "class Checker(FastHttpUser):\n"
        "    wait_time = constant(0.01)\n\n"
        "    @task\n"
        "    def product(self):\n"
        "        data = self.client.get('/api/products/1').json()\n"
        "        assert data['price'] < 0, 'price should be negative (it never is)'\n"
    )
    out = run_loadkit("run", "--target", healthy.traffic_url, "--locustfile", str(locustfile), "-u", "3",
                      "-t", "3s", "-o", "json", "-q")
    assert out.returncode == 1, out.stderr
    result = parse_result(out.stdout)
    stats = result["stats"]
    assert stats["failures"] == 0 and stats["exceptions"] >= 100
    assert stats["error_rate_pct"] == pytest.approx(100.0 * stats["exceptions"] / stats["requests"])
    assert check(result, "error-rate")["passed"] is False
    assert check(result, "request-success-rate")["passed"] is True
    assert any("raised" in w and "price should be negative" in w for w in result["warnings"])
    assert any("own load shape (Own) was ignored" in w for w in result["warnings"])
    assert stats["duration_s"] >= 2.9  # the profile's 3 s ran, not the locustfile's 1 s shape


def test_rps_uses_the_time_load_really_ran(healthy: SandboxProcess) -> None:
    out = run_loadkit("run", "--target", healthy.traffic_url, "-t", "2.5s", "-o", "json", "-q",
                      "--min-samples", "1")
    stats = parse_result(out.stdout)["stats"]
    assert 2.5 <= stats["duration_s"] <= 4.5  # Locust asks its shape once a second
    assert stats["rps"] == pytest.approx(stats["requests"] / stats["duration_s"], rel=0.01)
