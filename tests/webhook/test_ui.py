"""/ui over plain HTTP against a real `loadkit serve`: links from hook answers, escaping, 404s, auth."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from loadkit import httpcalls
from loadkit.models.results import RunResult
from loadkit.report import render_report
from loadkit.sandbox import SandboxProcess
from loadkit.store import History, HistoryEntry, HistoryKind
from tests.webhook.conftest import Serve, payload, poll

TOKEN = "ui-test-token-1234"
EVIL = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "token").write_text(TOKEN + "\n")
    serve = Serve(tmp, "--token-file", str(tmp / "token"), "--max-concurrent-runs", "4").start()
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def tokenless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = Serve(tmp_path_factory.mktemp("ui-tokenless")).start()
    yield serve
    serve.stop()


@contextlib.contextmanager
def signed_in(serve: Serve) -> Iterator[httpx.Client]:
    """A browser's session: the cookie, and the Origin a browser sends with this server's forms."""
    client = httpx.Client(base_url=serve.url, timeout=30, headers={"Origin": serve.url})
    answer = client.post("/ui/login", data={"token": TOKEN})
    assert answer.status_code == 303, answer.text
    assert "httponly" in answer.headers["set-cookie"].lower()
    assert "samesite=strict" in answer.headers["set-cookie"].lower()
    try:
        yield client
    finally:
        client.close()


def csrf_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)">', page)
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


def test_every_hook_answer_links_to_its_page_on_ui(ui_server: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", name="linked", checksum="c1")
    started = ui_server.hook("rollout", body, headers={"Accept": "application/json"}).json()
    run = started["run"]
    assert started["ui"] == f"{ui_server.url}/ui/runs/{run}"
    page = httpcalls.get(started["ui"], timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"Run {run}" in page.text and "c1" in page.text
    # Still running: its report is its live page, not half a report.
    early = httpcalls.get(f"{started['ui']}/report.html", timeout=30)
    assert early.status_code == 303 and early.headers["location"] == f"/ui/runs/{run}", early.text
    # A gate answer names no run before there is one: it lands on the analysis.
    gate = ui_server.hook("confirm-rollout", payload(f"{healthy_site.traffic_url}/canary", name="other"),
                          headers={"Accept": "application/json"})
    assert gate.json()["ui"] == f"{ui_server.url}/ui/canaries/bruno/other"
    assert gate.headers["X-Loadkit-UI"] == gate.json()["ui"]
    # The live JSON follows the run until it ends; the overview and the canary list it.
    live = poll(lambda: (d := ui_server.get(f"/ui/runs/{run}/live.json").json())["finished"] and d, timeout=60)
    assert live["status"] == "completed" and live["points"] > 0
    assert [c["id"] for c in live["charts"]] == ["throughput", "users", "latency", "percentiles"]  # the report's
    assert len(live["charts"][0]["x"]) == live["points"]
    # Finished: the HTML report `loadkit run --report-dir` writes, linked from the run page, no token needed.
    assert f'href="/ui/runs/{run}/report.html"' in ui_server.get(f"/ui/runs/{run}").text
    report = ui_server.get(f"/ui/runs/{run}/report.html")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.headers["content-security-policy"].startswith("sandbox allow-scripts;")
    stored = RunResult.model_validate(ui_server.get(f"/runs/{run}").json()["result"])
    assert report.text == render_report(stored)  # byte for byte what --report-dir writes for this result
    assert f"<h1>loadkit run: {stored.profile}</h1>" in report.text and 'class="lk-charts"' in report.text
    overview = ui_server.get("/ui").text
    assert f'href="/ui/runs/{run}"' in overview and 'href="/ui/canaries/bruno/linked"' in overview
    canary = ui_server.get("/ui/canaries/bruno/linked").text
    assert run in canary and started["analysis"] in canary


@pytest.mark.parametrize("path", [
    "/ui/runs/nope", "/ui/runs/%3Cscript%3E", "/ui/analyses/0000", "/ui/canaries/nobody/nothing",
    "/ui/history?kind=bogus", "/ui/runs/nope/report.html",
], ids=["run", "run-script", "analysis", "canary", "history-kind", "report"])
def test_a_bad_id_is_a_404_page_with_a_message(ui_server: Serve, path: str) -> None:
    answer = ui_server.get(path)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    message = re.search(r'<p data-error="404">(.*?)</p>', answer.text)
    assert message and message.group(1).startswith("no "), answer.text
    assert "<script>" not in answer.text  # the id is shown escaped


def test_live_json_of_an_unknown_run_is_a_404(ui_server: Serve) -> None:
    answer = ui_server.get("/ui/runs/nope/live.json")
    assert answer.status_code == 404 and answer.json() == {"error": "no run 'nope'"}


def test_user_text_is_escaped_everywhere(ui_server: Serve, healthy_site: SandboxProcess) -> None:
    canary = payload(f"{healthy_site.traffic_url}/canary", name="escaped", checksum="e1")
    assert ui_server.hook("confirm-traffic-increase", canary).status_code == 200  # opens an analysis
    halted = ui_server.admin("POST", "/gates/bruno/escaped/halt", TOKEN, json={"reason": EVIL})
    assert halted.status_code == 200, halted.text
    event = {**canary, "metadata": {"eventMessage": EVIL, "eventType": "Warning", "timestamp": "1"}}
    assert ui_server.hook("event", event).status_code == 200
    History(ui_server.db).add(HistoryEntry(
        id="h-evil", kind=HistoryKind.GAMEDAY, name=EVIL, target=EVIL, started_at=datetime.now(UTC),
        ended_at=datetime.now(UTC), recorded_at=datetime.now(UTC), verdict="pass", score=90.0, schema_version=1),
        "{}")
    for path in ("/ui/canaries/bruno/escaped", "/ui/history", "/ui/history?kind=gameday"):
        text = ui_server.get(path).text
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text, path
        assert EVIL not in text, path
        # the only scripts: loadkit's own (with the page's nonce) and the charts' data, "<" escaped in it
        scripts = re.findall(r"<script\b[^>]*>", text)
        assert all(' nonce="' in tag or tag == '<script type="application/json" id="trend-data">' for tag in scripts), \
            scripts
        assert not re.findall(r"<script\b", text) or "history" in path, f"{path} has a script tag"


def test_read_only_without_the_token(ui_server: Serve, healthy_site: SandboxProcess) -> None:
    ui_server.hook("confirm-traffic-increase", payload(f"{healthy_site.traffic_url}/canary", name="readonly",
                                                       checksum="r1"))
    text = ui_server.get("/ui/canaries/bruno/readonly").text
    assert "data-action" not in text and "sign in (admin token)" in text
    for action in ("approve", "halt", "rollback"):
        refused = httpcalls.post(f"{ui_server.url}/ui/gates/bruno/readonly/{action}", data={"reason": "x"})
        assert refused.status_code == 401, refused.text
    wrong = httpcalls.post(f"{ui_server.url}/ui/gates/bruno/readonly/halt", cookies={"loadkit_ui": "forged"})
    assert wrong.status_code == 401
    assert ui_server.admin("GET", "/gates/bruno/readonly").json()["gates"] == []
    bad_login = httpcalls.post(f"{ui_server.url}/ui/login", data={"token": "wrong"})
    assert bad_login.status_code == 401 and "set-cookie" not in bad_login.headers


def test_the_token_shows_buttons_that_work(ui_server: Serve, healthy_site: SandboxProcess) -> None:
    ui_server.hook("confirm-traffic-increase", payload(f"{healthy_site.traffic_url}/canary", name="acting",
                                                       checksum="a1"))
    with signed_in(ui_server) as client:
        text = client.get("/ui/canaries/bruno/acting").text
        assert 'data-action="halt"' in text and 'data-action="approve"' in text and "sign out" in text
        done = client.post("/ui/gates/bruno/acting/halt", data={"reason": "looks off", "hook": "",
                                                                 "csrf": csrf_of(text)})
        assert done.status_code == 303 and done.headers["location"] == "/ui/canaries/bruno/acting"
        gates = ui_server.get("/gates/bruno/acting").json()["gates"]
        assert {g["state"] for g in gates} == {"halted"} and gates[0]["reason"] == "looks off"
        cross = client.post("/ui/gates/bruno/acting/approve", headers={"Origin": "http://evil.example"},
                            data={"csrf": csrf_of(text)})
        assert cross.status_code == 401
        unknown = client.post("/ui/gates/bruno/acting/explode", data={"csrf": csrf_of(text)})
        assert unknown.status_code == 404
        client.post("/ui/logout")
        assert "data-action" not in client.get("/ui/canaries/bruno/acting").text


def test_a_server_without_a_token_refuses_every_action(tokenless: Serve, healthy_site: SandboxProcess) -> None:
    tokenless.hook("confirm-traffic-increase", payload(f"{healthy_site.traffic_url}/canary", name="notoken"))
    assert "data-action" not in tokenless.get("/ui/canaries/bruno/notoken").text
    assert httpcalls.post(f"{tokenless.url}/ui/gates/bruno/notoken/halt").status_code == 403
    assert httpcalls.post(f"{tokenless.url}/ui/login", data={"token": "anything"}).status_code == 403


def test_pages_load_nothing_from_elsewhere(ui_server: Serve, tmp_path: Path) -> None:
    for path in ("/ui", "/ui/history", "/ui/login"):
        answer = ui_server.get(path)
        assert answer.status_code == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', answer.text), path
    # the charts' assets come from the server itself; nothing else is served under /ui/assets/
    history = ui_server.get("/ui/history").text
    for name, kind in (("uPlot.iife.min.js", "text/javascript"), ("charts.js", "text/javascript"),
                       ("uPlot.min.css", "text/css")):
        assert f'/ui/assets/{name}"' in history
        asset = ui_server.get(f"/ui/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind) and len(asset.text) > 500
    for bad in ("nope.js", "ui.py", "uPlot.LICENSE"):
        assert ui_server.get(f"/ui/assets/{bad}").status_code == 404, bad
    assert ui_server.get("/ui/assets/..%2Fui.py").status_code in (400, 404)  # refused before or by the route


def test_a_run_with_too_few_samples_is_not_judged_in_its_report_too(ui_server: Serve,
                                                                     healthy_site: SandboxProcess) -> None:
    """min_samples is 50: one user for one second sends fewer, so nothing can be judged. /ui says
    not judged, and so must the report: never FAIL (or PASS) with a score."""
    canary = f"{healthy_site.traffic_url}/canary"
    body = payload(canary, name="thin", checksum="v1", users="1", spawn_rate="1", duration="1s")
    run = ui_server.hook("rollout", body, headers={"Accept": "application/json"}).json()["run"]
    done = poll(lambda: (r := ui_server.get(f"/runs/{run}").json())["status"] != "running" and r, timeout=60)
    assert done["verdict"] is None and done["score"] is None, done
    result = RunResult.model_validate(done["result"])
    assert result.verdict.value == "not-judged" and result.reason.startswith("not judged: "), result.reason
    report = ui_server.get(f"/ui/runs/{run}/report.html").text
    banner = report.split('<div class="banner')[1].split("</div>")[0]
    assert 'data-verdict="not-judged"' in banner and ">NOT JUDGED<" in banner and result.reason in banner
    assert "FAIL" not in banner and "PASS" not in banner and " score " not in banner, banner
    # The next revision opens its own analysis: its row on the overview is not the v1 run's verdict.
    ui_server.hook("confirm-traffic-increase", payload(canary, name="thin", checksum="v2"))
    overview = ui_server.get("/ui").text
    row = next(r for r in overview.split("<tr>") if 'href="/ui/canaries/bruno/thin"' in r)
    assert "<code>v2</code>" in row and f'href="/ui/runs/{run}"' not in row, row


def test_a_session_acts_only_from_this_servers_page(ui_server: Serve, healthy_site: SandboxProcess) -> None:
    """A cookie is sent by the browser wherever the request comes from: an action also needs this
    server's Origin (never `null`: a redirect from another page arrives with that) and the session's
    CSRF token, which only this server's pages hold."""
    ui_server.hook("confirm-traffic-increase", payload(f"{healthy_site.traffic_url}/canary", name="csrf",
                                                       checksum="x1"))
    halt = "/ui/gates/bruno/csrf/halt"
    with signed_in(ui_server) as client:
        csrf = csrf_of(client.get("/ui/canaries/bruno/csrf").text)
        refused = {
            "origin-null": client.post(halt, data={"csrf": csrf}, headers={"Origin": "null"}),
            "origin-missing": httpcalls.post(f"{ui_server.url}{halt}", data={"csrf": csrf}, cookies=client.cookies),
            "cross-site-fetch": client.post(halt, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
            "no-csrf": client.post(halt, data={"reason": "x"}),
            "wrong-csrf": client.post(halt, data={"csrf": csrf[:-2] + "xx"}),
        }
        assert {k: a.status_code for k, a in refused.items()} == dict.fromkeys(refused, 401), \
            {k: a.text for k, a in refused.items()}
        assert ui_server.get("/gates/bruno/csrf").json()["gates"] == []  # none of them acted
        ok = client.post(halt, data={"csrf": csrf, "reason": "ok"}, headers={"Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 303, ok.text
        # another sign-in is another session: its own cookie and CSRF token, this one's token does not fit it
        with signed_in(ui_server) as other:
            assert other.cookies["loadkit_ui"] != client.cookies["loadkit_ui"]
            assert other.post(halt, data={"csrf": csrf}).status_code == 401
        # signing out revokes the session on the server: the same cookie, replayed, acts no more
        cookie = client.cookies["loadkit_ui"]
        assert client.post("/ui/logout").status_code == 303
    replayed = httpcalls.post(f"{ui_server.url}{halt}", data={"csrf": csrf}, cookies={"loadkit_ui": cookie},
                              headers={"Origin": ui_server.url})
    assert replayed.status_code == 401, replayed.text
    assert "sign out" not in httpcalls.get(f"{ui_server.url}/ui", cookies={"loadkit_ui": cookie}).text
    # a script with the token needs neither a session nor a CSRF token
    assert ui_server.admin("POST", "/ui/gates/bruno/csrf/approve", TOKEN).status_code == 303
