"""A run or a comparison stopped by a signal was not judged: no output shows it as a pass or a fail,
nor with a score (result JSON, the HTML banner, JUnit)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd
from tests.load.conftest import istio_requests, parse_result


def _banner(report: Path) -> str:
    return report.read_text().split('<div class="banner')[1].split("</div>")[0]


def test_an_interrupted_run_and_comparison_are_interrupted_everywhere(healthy: SandboxProcess,
                                                                     tmp_path: Path) -> None:
    canary, primary = f"{healthy.traffic_url}/canary", healthy.traffic_url
    commands = {
        "compare": ["compare", "--target", canary, "--baseline", primary, "-u", "4", "-t", "30s"],
        "run": ["run", "--target", canary, "-u", "4", "-t", "30s", "--no-history", "--min-samples", "1"]}
    before = istio_requests(healthy).get("bruno-site", 0)
    procs = {kind: subprocess.Popen(loadkit_cmd(*args, "-o", "json", "--report-dir", str(tmp_path / kind),
                                                "--junit", str(tmp_path / f"{kind}.xml")),
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for kind, args in commands.items()}
    deadline = time.monotonic() + 40
    while istio_requests(healthy).get("bruno-site", 0) - before < 100:  # both loads are flowing
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), "no load"
        time.sleep(0.2)
    for proc in procs.values():
        os.kill(proc.pid, signal.SIGTERM)
    for kind, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=40)
        assert proc.returncode == 130, (kind, stderr)
        result = parse_result(stdout)
        assert result["verdict"] == "interrupted", (kind, result["verdict"], result.get("reason"))
        banner = _banner(tmp_path / kind / "report.html")
        assert 'data-verdict="interrupted"' in banner and ">INTERRUPTED<" in banner
        assert "PASS" not in banner and " score " not in banner, banner
        for junit in (tmp_path / f"{kind}.xml", tmp_path / kind / "junit.xml"):
            suite = ET.parse(junit).getroot().find("testsuite")
            assert suite is not None and suite.get("errors") == "1", (kind, ET.tostring(suite))
            assert "score" not in {p.get("name") for p in suite.iter("property")}
            error = next(c for c in suite.iter("testcase") if c.find("error") is not None)
            assert "interrupted" in (error.find("error").get("message") or "")  # type: ignore[union-attr]
