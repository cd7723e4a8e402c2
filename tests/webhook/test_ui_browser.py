"""/ui in a real browser: Debian's Chromium driven by Playwright, against a real `loadkit serve`.

Each page loads with no console error and no request leaving the server (uPlot and loadkit's chart
plugin come from /ui/assets/); the run page draws the HTML report's uPlot charts once and feeds them
the live JSON's newer points while the run goes (their data grows, nothing is rebuilt); a finished
run's HTML report renders its charts; action buttons appear only after signing in with the admin token, and they work.
A full-page screenshot per page goes to test-artifacts/ui/ (git-ignored): look at them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, run_loadkit
from tests.webhook.conftest import Serve, payload, poll

playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
TOKEN = "browser-test-token-5678"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@dataclass
class Watched:
    """A page with its console errors, uncaught exceptions and the requests it tried outside the server."""

    page: Any
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def visit(self, url: str, shot: str) -> Any:
        answer = self.page.goto(url)
        assert answer is not None and answer.status == 200, f"{url}: {answer and answer.status}"
        self.page.wait_for_load_state("load")
        self.shot(shot)
        assert not self.errors, f"{url}: console errors {self.errors}"
        assert not self.outside, f"{url}: requests outside the server {self.outside}"
        return answer

    def shot(self, name: str) -> None:
        path = ARTIFACTS / f"{name}.png"
        path.unlink(missing_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def drawn(page: Any) -> dict[str, str]:
    """The uPlot charts on the page by id, each with its count of canvases (1: it was drawn). Each
    must hold data too: every series of its uPlot instance has values, not only nulls."""
    filled = page.evaluate("""() => loadkitCharts.charts.filter(u => document.body.contains(u.root)).map(u =>
        [u.root.dataset.chart, u.data[0].length,
         u.data.slice(1).map(s => s.filter(v => v !== null && v !== undefined).length)])""")
    for chart, points, per_series in filled:
        assert points > 0 and per_series and all(n > 0 for n in per_series), (chart, points, per_series)
    return page.evaluate("() => Object.fromEntries([...document.querySelectorAll('.uplot')].map(u => "
                         "[u.dataset.chart, String(u.querySelectorAll('canvas').length)]))")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make test`, which installs Debian's chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def watched(browser: Any, served: Serve) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Watched(page)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))

    def route(r: Any) -> None:
        if r.request.url.startswith(served.url):
            r.continue_()
        else:
            seen.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    yield seen
    context.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    (tmp / "token").write_text(TOKEN)
    serve = Serve(tmp, "--token-file", str(tmp / "token"), "--max-concurrent-runs", "4").start()
    yield serve
    serve.stop()


def test_every_page_loads_without_errors(watched: Watched, served: Serve, healthy_site: SandboxProcess) -> None:
    started = served.hook("pre-rollout", payload(f"{healthy_site.traffic_url}/canary", name="pages", checksum="p1"),
                          headers={"Accept": "application/json"}).json()
    assert started["status"] == 200, started
    pages = {"overview": "/ui", "canary": "/ui/canaries/bruno/pages", "analysis": f"/ui/analyses/{started['analysis']}",
             "history": "/ui/history", "login": "/ui/login"}
    for shot, path in pages.items():
        watched.visit(served.url + path, shot)
    run_page = watched.page
    watched.visit(started["ui"], "run-finished")
    assert drawn(run_page) == {"throughput": "1", "users": "1", "latency": "1", "percentiles": "1"}  # the report's
    assert run_page.locator('[data-field="status"]').inner_text() == "completed"
    assert run_page.locator('table[data-table="checks"] tbody tr').count() >= 1
    # its HTML report, from the run page's link: the same charts, drawn in the sandboxed page
    run_page.click('a[data-link="report"]')
    run_page.wait_for_url(f"{started['ui']}/report.html")  # else the run page's own charts would answer
    run_page.wait_for_function("document.querySelectorAll('.lk-charts').length > 0 && "
                               "[...document.querySelectorAll('.lk-charts')].every(e => e.dataset.charts)")
    watched.shot("run-report")
    assert drawn(run_page) == {"throughput": "1", "users": "1", "latency": "1", "percentiles": "1"}
    # the banner says what the run's record says: its verdict when judged, never pass or fail when not
    record = served.get(f"/runs/{started['run']}").json()
    shown = run_page.locator(".banner").get_attribute("data-verdict")
    assert shown == record["result"]["verdict"]
    assert shown == record["verdict"] if record["verdict"] else shown not in ("pass", "fail"), (shown, record)
    assert not watched.errors and not watched.outside, (watched.errors, watched.outside)


def test_history_shows_the_score_trend(watched: Watched, served: Serve, healthy_site: SandboxProcess) -> None:
    for _ in range(2):  # two real `loadkit run`s of one series, kept in the server's database
        done = run_loadkit("run", "--target", f"{healthy_site.traffic_url}/canary", "-t", "4s", "-u", "10",
                           "--db", str(served.db), "-o", "json")
        assert done.returncode in (0, 1), done.stderr  # judged: a pass or a fail, both have a score
    page = watched.page
    watched.visit(f"{served.url}/ui/history?kind=run", "history-runs")
    assert page.locator('table[data-table="history"] tbody tr').count() == 2
    title = f"run smoke on {healthy_site.traffic_url}/canary"
    scores = page.evaluate("(t) => loadkitCharts.charts.find(u => u.root.querySelector('.u-title').textContent "
                           "=== t).data[1]", title)
    assert len(scores) == 2 and all(0 <= v <= 100 for v in scores)
    assert page.locator('table[data-table="history"] tbody tr').first.locator("td").nth(7).inner_text() != "\u2013"


def test_the_run_page_follows_a_running_run(watched: Watched, served: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", name="live", checksum="l1", duration="10s",
                   thresholds="strict")
    started = served.hook("rollout", body, headers={"Accept": "application/json"}).json()
    assert started["status"] == 202, started
    page = watched.page
    watched.visit(started["ui"], "run-live-start")
    live, charts = page.locator("#live"), page.locator("#charts")
    poll(lambda: int(live.get_attribute("data-updates") or 0) >= 1 and charts.get_attribute("data-charts"),
         timeout=20)
    # the chart's own data (what uPlot draws), read back at two polls: it grew, and the charts were built once
    points = "() => loadkitCharts.charts.find(u => u.root.dataset.chart === 'throughput').data[0].length"
    before = page.evaluate(points)
    poll(lambda: page.evaluate(points) > before, timeout=20)
    assert int(live.get_attribute("data-updates") or 0) >= 2
    assert page.locator('[data-field="status"]').inner_text() == "running"
    assert page.locator('[data-field="requests"]').inner_text() not in ("", "\u2013", "0")
    assert drawn(page) == {"throughput": "1", "users": "1", "latency": "1"}  # no percentile curve before the end
    assert charts.get_attribute("data-mounts") == "3" and int(charts.get_attribute("data-updates") or 0) >= 1
    # the polls that grew them asked only for the points after the last one drawn
    polled = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)"
                           ".filter(n => n.includes('/live.json'))")
    assert any("/live.json?after=" in url for url in polled), polled
    # `strict`: request-duration max 1 ms, drawn as a line on the latency chart
    assert page.locator('.uplot[data-chart="latency"]').get_attribute("data-thresholds") == "1"
    assert page.locator('.uplot[data-chart="users"]').get_attribute("data-regions") == "1"  # its stage, so far
    watched.shot("run-live")
    # When it ends the page reloads once and shows the verdict and the checks.
    poll(lambda: page.locator('[data-field="status"]').inner_text() == "completed", timeout=40)
    page.wait_for_selector('table[data-table="checks"]')
    assert page.locator('[data-field="verdict"]').inner_text() == "fail"
    page.wait_for_selector('.uplot[data-chart="percentiles"]')  # the result's charts, with its HdrHistogram
    watched.shot("run-ended")
    assert not watched.errors, watched.errors


def test_buttons_only_with_the_token_and_they_work(watched: Watched, served: Serve,
                                                   healthy_site: SandboxProcess) -> None:
    assert served.hook("confirm-traffic-increase",
                       payload(f"{healthy_site.traffic_url}/canary", name="gated", checksum="g1")).status_code == 200
    page = watched.page
    watched.visit(f"{served.url}/ui/canaries/bruno/gated", "canary-read-only")
    assert page.locator("[data-action]").count() == 0
    page.click("text=sign in (admin token)")
    page.fill('input[name="token"]', TOKEN)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{served.url}/ui")
    watched.visit(f"{served.url}/ui/canaries/bruno/gated", "canary-admin")
    assert page.locator("[data-action]").count() >= 4
    page.locator('form:has(button[data-action="halt"][data-hook=""]) input[name="reason"]').fill("browser halt")
    page.click('button[data-action="halt"][data-hook=""]')
    page.wait_for_url(f"{served.url}/ui/canaries/bruno/gated")
    rows = page.locator('table[data-table="gates"] tbody tr')
    assert rows.count() >= 1 and "halted" in rows.first.inner_text() and "browser halt" in rows.first.inner_text()
    assert {g["state"] for g in served.get("/gates/bruno/gated").json()["gates"]} == {"halted"}
    watched.shot("canary-halted")
    assert not watched.errors, watched.errors

