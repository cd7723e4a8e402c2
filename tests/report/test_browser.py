"""Every kind of HTML report, from real runs on the sandbox, opened in Debian's Chromium (Playwright).

Each page must load from a file with no console error and no request leaving it (offline: no CDN,
no font), draw its uPlot charts, shade what the result says (profile stages, the fault window,
scenarios), draw the latency threshold as a line and mark the stop conditions that fired — read
back from the data attributes loadkit's chart plugin sets after drawing. A screenshot per page is
kept under test-artifacts/report/ (LOADKIT_TEST_ARTIFACTS to move it).

The results are made once for the module (a real `loadkit run`, `compare`, failed `chaos run` and a
short game day that a stop condition halts), and one browser serves every test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LOADKIT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "report"
EXPERIMENTS = ROOT / "experiments"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


@dataclass(frozen=True)
class Made:
    code: int
    result: dict[str, Any]
    report: Path


def _loadkit(*args: str, sandbox: SandboxProcess, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    env["LOADKIT_SANDBOX_ADMIN_URL"] = sandbox.admin_url
    out = subprocess.run(loadkit_cmd(*args, "-o", "json"), cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env=env, check=False)
    assert out.stdout.strip().startswith("{"), out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def _gameday_plan(directory: Path) -> Path:
    """Pod kill, then 600 ms of latency that a stop condition (p99 over 3 s) halts: a HALTED game day
    with a fault window per scenario and a stop marker."""
    plan = {
        "schema_version": 1, "name": "report-check", "target": {"url": "http://127.0.0.1:1/canary", "role": "canary"},
        "load": {"profile": "steady", "users": 8},
        "scenarios": [
            {"name": "pod-kill", "experiment": str(EXPERIMENTS / "local-pod-kill.yaml"), "expect": "degrades",
             "weight": 5, "category": "redundancy", "variables": {"restart_after_s": 1, "observe_seconds": 3}},
            {"name": "latency", "experiment": str(EXPERIMENTS / "local-latency.yaml"), "expect": "detected",
             "weight": 3, "category": "network", "variables": {"delay_ms": 600, "fault_seconds": 8}},
        ],
        "stop_conditions": {"max_duration": "3m", "load": [
            {"name": "request-duration", "thresholdRange": {"max": 400}, "window": "3s", "min_samples": 10}]},
    }
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Made]]:
    base = tmp_path_factory.mktemp("reports")
    with SandboxProcess() as sandbox:
        canary, primary = f"{sandbox.traffic_url}/canary", sandbox.traffic_url

        def run() -> Made:
            code, result, _ = _loadkit("run", "--target", canary, "-p", "smoke", "-u", "6", "-t", "8s",
                                       "--report-dir", str(base / "run"), "--no-history", sandbox=sandbox)
            return Made(code, result, base / "run" / "report.html")

        def compare() -> Made:
            code, result, _ = _loadkit("compare", "--target", canary, "--baseline", primary, "-u", "6", "-t", "8s",
                                       "--report-dir", str(base / "compare"), "--junit", str(base / "compare.xml"),
                                       sandbox=sandbox)
            return Made(code, result, base / "compare" / "report.html")

        with ThreadPoolExecutor(2) as pool:  # no fault yet: both loads at once
            made = {"run": pool.submit(run), "compare": pool.submit(compare)}
            out = {kind: future.result() for kind, future in made.items()}
        code, result, _ = _loadkit("chaos", "run", str(EXPERIMENTS / "local-latency.yaml"), "--target", canary,
                                   "--var", "fault_seconds=6", "--cooldown", "3s", "--recovery-window", "3s",
                                   "--report-dir", str(base / "chaos"), "--no-history", sandbox=sandbox)
        out["chaos"] = Made(code, result, base / "chaos" / "report.html")
        code, result, _ = _loadkit("gameday", "run", str(_gameday_plan(base)), "--target", canary,
                                   "--report-dir", str(base / "gameday"), "--db", str(base / "history.db"),
                                   sandbox=sandbox, timeout=240)
        out["gameday"] = Made(code, result, base / "gameday" / "report.html")
    yield out


@dataclass
class Page:
    errors: list[str]
    outside: list[str]
    page: Any


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


def open_report(browser: Any, report: Path, name: str) -> Page:
    """Load the report from its file; record console errors, page errors and any request not to the file."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    opened = Page([], [], page)
    page.on("console", lambda m: opened.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))

    def route(r: Any) -> None:
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            opened.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(report.as_uri())
    page.wait_for_function("document.querySelectorAll('.lk-charts').length > 0 && "
                           "[...document.querySelectorAll('.lk-charts')].every(e => e.dataset.charts)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    for kept in ("report.html", "result.json"):  # the page and its data, beside the screenshot
        shutil.copyfile(report.parent / kept, ARTIFACTS / f"{name}.{kept}")
    return opened


def charts(page: Any) -> dict[str, dict[str, str]]:
    """Each drawn uPlot chart by id: the attributes the plugin wrote after drawing. Every chart must
    also hold data: each series of the uPlot instance (loadkitCharts.charts) has values, not only
    nulls, so a chart drawn empty (its axes, regions and lines, but no load) fails here."""
    filled = page.evaluate("""() => loadkitCharts.charts.map(u => [u.root.dataset.chart, u.data[0].length,
        u.data.slice(1).map(s => s.filter(v => v !== null && v !== undefined).length)])""")
    for chart, points, per_series in filled:
        assert points > 0 and per_series and all(n > 0 for n in per_series), (chart, points, per_series)
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.uplot')].map(u =>
        [u.dataset.chart, {regions: u.dataset.regions, thresholds: u.dataset.thresholds, markers: u.dataset.markers,
                           stops: u.dataset.stops,
                           canvases: String(u.querySelectorAll('canvas').length),
                           series: String(u.querySelectorAll('.u-legend .u-series').length)}]))""")


def percentile_max_label(page: Any) -> str:
    """What the legend shows for the percentile curve's last point (p = 1, placed at 2n)."""
    return page.evaluate("""() => { const u = loadkitCharts.charts.find(c => c.root.dataset.chart === 'percentiles');
        return u.series[0].value(u, u.data[0][u.data[0].length - 1]); }""")


def assert_clean(opened: Page, report: Path) -> None:
    assert opened.errors == [], opened.errors
    assert opened.outside == [], f"the report asked the network for {opened.outside}"
    assert report.stat().st_size < 3_000_000


def test_run_report(made: dict[str, Made], browser: Any) -> None:
    m = made["run"]
    opened = open_report(browser, m.report, "run")
    assert_clean(opened, m.report)
    drawn = charts(opened.page)
    assert set(drawn) == {"throughput", "users", "latency", "percentiles"}
    assert all(c["canvases"] == "1" for c in drawn.values())
    assert drawn["latency"]["thresholds"] == "500"  # request-duration <= 500 ms, drawn as a line
    assert drawn["users"]["regions"] == "1"  # the smoke profile's one stage
    assert percentile_max_label(opened.page) == "max"  # not "99.9%" on a run of a few hundred requests
    banner = opened.page.locator(".banner")
    assert banner.get_attribute("data-verdict") == m.result["verdict"]
    assert banner.inner_text().startswith(m.result["verdict"].upper())
    endpoints = opened.page.locator("h2:has-text('Endpoints') + table tr")
    assert endpoints.count() == 1 + len(m.result["endpoints"]) and m.result["endpoints"][0]["p99_ms"] is not None
    opened.page.close()


def test_comparison_report(made: dict[str, Made], browser: Any) -> None:
    m = made["compare"]
    opened = open_report(browser, m.report, "compare")
    assert_clean(opened, m.report)
    drawn = charts(opened.page)
    assert set(drawn) == {"throughput", "errors", "latency", "percentiles"}
    assert drawn["latency"]["series"] == "5"  # time + canary/primary p50 and p99
    assert drawn["percentiles"]["series"] == "3"  # both sides' HdrHistogram curves
    latency = next(x for x in m.result["metrics"] if x["name"] == "latency")
    allowed = round(latency["baseline"] * 1.05, 3)
    assert drawn["latency"]["thresholds"] == f"{allowed:g}"
    assert opened.page.locator(".banner").get_attribute("data-verdict") == m.result["verdict"]
    opened.page.close()
    for junit in (m.report.parent.parent / "compare.xml", m.report.parent / "junit.xml"):  # --junit, --report-dir
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None and suite.get("tests") == str(len(m.result["metrics"]))
        assert suite.get("failures") == str(sum(not x["passed"] for x in m.result["metrics"]))
    assert m.code == (0 if m.result["verdict"] == "pass" else 1)


def test_failed_chaos_report(made: dict[str, Made], browser: Any) -> None:
    m = made["chaos"]
    assert m.code == 1 and m.result["verdict"] == "fail"
    opened = open_report(browser, m.report, "chaos-failed")
    assert_clean(opened, m.report)
    drawn = charts(opened.page)
    assert set(drawn) == {"throughput", "users", "latency"}
    assert all(c["regions"] == "1" for c in drawn.values())  # the fault window, shaded on every chart
    assert drawn["latency"]["thresholds"] == "500"
    banner = opened.page.locator(".banner")
    assert banner.get_attribute("data-verdict") == "fail" and "FAIL" in banner.inner_text()
    assert "request-duration" in banner.inner_text()
    opened.page.close()


def test_gameday_report(made: dict[str, Made], browser: Any) -> None:
    m = made["gameday"]
    assert m.result["verdict"] == "halted" and m.result["stops"], m.result["reason"]
    opened = open_report(browser, m.report, "gameday")
    assert_clean(opened, m.report)
    drawn = charts(opened.page)
    assert {"throughput", "errors", "users", "latency", "score-trend"} <= set(drawn)
    ran = [s for s in m.result["scenarios"] if s["started_at"]]
    faults = [s for s in ran if s["chaos"] and s["chaos"]["fault"]]
    assert drawn["latency"]["regions"] == str(len(ran) + len(faults))  # scenarios and their fault windows
    assert drawn["latency"]["markers"] == str(len(m.result["stops"]))
    # the config's request-duration ceiling, and the plan's stop condition (p99 over 3 s, max 400 ms) as a line
    assert drawn["latency"]["thresholds"] == "500,400" and drawn["latency"]["stops"] == "1"
    assert drawn["errors"]["stops"] == "0" and drawn["errors"]["markers"] == str(len(m.result["stops"]))
    # the time axis starts at the game day's start, and the baseline load is drawn before the first scenario
    axis = opened.page.evaluate("""() => Object.fromEntries(loadkitCharts.charts.filter(u => u.root.dataset.chart !==
        'score-trend').map(u => [u.root.dataset.chart, [u.scales.x.min, u.scales.x.max, u.data[0][0]]]))""")
    start, end = (datetime.fromisoformat(m.result[k]).timestamp() for k in ("started_at", "ended_at"))
    first_scenario = datetime.fromisoformat(ran[0]["started_at"]).timestamp()
    for chart, (lo, hi, first_point) in axis.items():
        assert (lo, hi) == (pytest.approx(start, abs=1e-3), pytest.approx(end, abs=1e-3)), chart
        assert start < first_point < first_scenario, chart
    assert opened.page.locator(".banner").get_attribute("data-verdict") == "halted"
    assert float(opened.page.locator("[data-score]").inner_text()) == pytest.approx(m.result["score"], abs=0.005)
    assert opened.page.locator(".gantt .row[data-scenario]").count() == len(m.result["scenarios"])
    # the trend from the history database: this game day is the plan's only one there
    trend = opened.page.evaluate("loadkitCharts.charts.find(u => u.root.dataset.chart === 'score-trend').data")
    assert trend[1] == [m.result["score"]]
    opened.page.close()


def test_reports_print(made: dict[str, Made], browser: Any) -> None:
    """Printed (PDF), the charts are resized to the page and still there."""
    opened = open_report(browser, made["chaos"].report, "chaos-print")
    widest = "Math.max(...[...document.querySelectorAll('.uplot')].map(u => u.offsetWidth))"
    assert opened.page.evaluate(widest) > 700
    opened.page.emulate_media(media="print")
    opened.page.wait_for_function(f"{widest} <= 700")  # resized to the paper
    pdf = opened.page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    assert opened.errors == []
    (ARTIFACTS / "chaos-print.pdf").write_bytes(pdf)
    opened.page.close()
