"""Flagger's exact payloads against a real `loadkit serve` and real sandboxes."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadkit.sandbox import SandboxProcess
from tests.conftest import NOWHERE
from tests.http_servers import redirecting, serve_http
from tests.webhook.conftest import Serve, payload, poll

pytestmark = pytest.mark.slow


def checksum() -> str:
    return uuid.uuid4().hex[:10]


def test_pre_rollout_passes_a_healthy_canary(server: Serve, healthy_site: SandboxProcess) -> None:
    # The payload from Flagger's docs, with loadkit's metadata.
    answer = server.hook("pre-rollout", payload(f"{healthy_site.traffic_url}/canary", profile="quick"))
    assert answer.status_code == 200, answer.text
    assert answer.text.startswith("pre-rollout passed") and "/runs/" in answer.text
    run = server.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
    assert run["checksum"] == "85d557f47b" and run["status"] == "completed" and run["verdict"] == "pass"
    assert run["result"]["schema_version"] == 1 and run["result"]["stats"]["requests"] >= 50
    assert run["result"]["stats"]["duration_s"] < 5  # the 4 s profile, not longer


def test_pre_rollout_runs_an_arrival_rate_profile_rescaled_by_metadata(server: Serve,
                                                                       healthy_site: SandboxProcess) -> None:
    """Flagger's metadata `rate: "25"` on a config profile with rate stages: 25 iterations/s for its 4 s."""
    answer = server.hook("pre-rollout", payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(),
                                                profile="quick-rate", rate="25"))
    assert answer.status_code == 200, answer.text
    result = server.get(f"/runs/{answer.headers['X-Loadkit-Run']}/result").json()
    assert result["rate_stages"] == [{"duration_s": 4.0, "start": 25.0, "end": 25.0}] and result["stages"] == []
    assert result["stats"]["iterations"] == result["generator"]["scheduled_iterations"] == 100
    assert result["generator"]["dropped_iterations"] == 0 and result["stats"]["requests"] >= 100


def test_pre_rollout_fails_a_canary_with_5pct_503s(server: Serve, faulty_site: SandboxProcess) -> None:
    answer = server.hook("pre-rollout", payload(f"{faulty_site.traffic_url}/canary", checksum=checksum()))
    assert answer.status_code == 412, answer.text
    assert "request-success-rate" in answer.text and "below the minimum 99%" in answer.text
    assert "\n" not in answer.text.strip()  # one line: Flagger puts it in an event


def test_pre_rollout_answers_within_duration_plus_overhead(server: Serve, healthy_site: SandboxProcess) -> None:
    answer = server.hook("pre-rollout", payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(),
                                                duration="3s"))
    answered = datetime.now(UTC)
    assert answer.status_code == 200
    run = server.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
    # It answered as soon as the run ended (polling every 50 ms), not at a timeout.
    assert (answered - datetime.fromisoformat(run["finished_at"])).total_seconds() < 2


def test_rollout_starts_once_then_reports_and_promotion_waits_for_the_pass(
        server: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="4s")
    first = server.hook("rollout", body)
    assert first.status_code == 202, first.text
    run_id = first.headers["X-Loadkit-Run"]
    assert server.hook("confirm-promotion", body).status_code == 403  # still running
    assert server.hook("rollback", body).status_code == 409  # running and not failed: no rollback
    second = server.hook("rollout", body)
    assert second.status_code == 200 and second.headers["X-Loadkit-Run"] == run_id  # never two runs for one key
    poll(lambda: server.get(f"/runs/{run_id}").json()["status"] == "completed", timeout=30)
    promote = server.hook("confirm-promotion", body)
    assert promote.status_code == 200, promote.text
    assert server.hook("rollout", body).status_code == 200
    assert server.hook("rollback", body).status_code == 409
    runs = server.get("/runs", params={"namespace": "bruno", "name": "bruno-site"}).json()["runs"]
    assert [r["id"] for r in runs if r["checksum"] == body["checksum"]] == [run_id]


def test_a_breach_turns_rollout_4xx_and_rolls_back_only_where_enabled(
        server: Serve, faulty_site: SandboxProcess) -> None:
    body = payload(f"{faulty_site.traffic_url}/canary", checksum=checksum(), duration="30s")
    assert server.hook("rollout", body).status_code == 202
    breached = poll(lambda: (r := server.hook("rollout", body)).status_code == 412 and r, timeout=20)
    assert "request-success-rate" in breached.text
    manual_only = server.hook("rollback", body)  # the default policy: a person decides, or Flagger's threshold
    assert manual_only.status_code == 409 and "rolls back only on a manual rollback" in manual_only.text
    decisive = {**body, "metadata": {"rollback_on": "decisive-breach"}}
    rollback = poll(lambda: (r := server.hook("rollback", decisive)).status_code == 200 and r, timeout=20)
    assert rollback.text.startswith("roll back") and "decisively" in rollback.text and "99% confidence" in rollback.text
    assert server.hook("confirm-traffic-increase", body).status_code == 403
    assert server.hook("confirm-promotion", body).status_code == 403
    stop = server.hook("post-rollout", {**body, "phase": "Failed"})
    assert stop.status_code == 200 and "ended 1 run" in stop.text
    run = server.get(f"/runs/{breached.headers['X-Loadkit-Run']}").json()
    assert run["status"] == "stopped" and run["verdict"] is None and run["reason"].startswith("not judged")
    assert run["decisive"] and run["result"]["interrupted"] is True


def test_confirm_traffic_increase_follows_the_live_score(server: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="20s")
    first_step = server.hook("confirm-traffic-increase", body)  # no rollout load before the canary has traffic
    assert first_step.status_code == 200 and "first step" in first_step.text
    assert server.hook("rollout", body).status_code == 202
    assert server.hook("confirm-traffic-increase", body).status_code == 403  # collecting: hold
    poll(lambda: server.hook("confirm-traffic-increase", body).status_code == 200, timeout=15)
    assert server.hook("post-rollout", body).status_code == 200


def test_rollback_without_a_run_is_404(server: Serve) -> None:
    answer = server.hook("rollback", payload("http://127.0.0.1:9/", checksum=checksum()))
    assert answer.status_code == 404 and answer.text.startswith("no rollback")


def test_events_are_stored(server: Serve) -> None:
    body = {"name": "bruno-site", "namespace": "bruno", "phase": "Progressing", "checksum": "abc",
            "metadata": {"eventMessage": "Advance bruno-site.bruno canary weight 10", "eventType": "Normal",
                         "timestamp": "1700000000000"}}
    assert server.hook("event", body).status_code == 200
    events = server.get("/events", params={"namespace": "bruno", "name": "bruno-site"}).json()
    assert events[0]["message"] == "Advance bruno-site.bruno canary weight 10" and events[0]["event_type"] == "Normal"


def test_result_is_the_loadkit_run_model_and_metrics_move(server: Serve, healthy_site: SandboxProcess) -> None:
    answer = server.hook("pre-rollout", payload(f"{healthy_site.traffic_url}/canary", checksum=checksum()))
    result = server.get(f"/runs/{answer.headers['X-Loadkit-Run']}/result").json()
    assert {"schema_version", "verdict", "score", "target", "profile", "started_at", "ended_at", "stats",
            "checks"} <= set(result)
    metrics = server.get("/metrics").text
    assert 'loadkit_runs_total{status="completed",verdict="pass"}' in metrics
    assert 'loadkit_last_score{name="bruno-site",namespace="bruno"}' in metrics
    assert 'loadkit_hook_answers_total{code="200",kind="pre-rollout"}' in metrics
    openapi = server.get("/openapi.json").json()
    assert "/flagger/{kind}" in openapi["paths"] and "/runs/{run_id}" in openapi["paths"]


def test_freeze_blocks_confirm_rollout(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    serve = Serve(tmp_path, "--token-file", str(token)).start()
    try:
        body = payload("http://127.0.0.1:9/", checksum="")
        assert serve.hook("confirm-rollout", body).status_code == 200
        freeze = {"namespace": "bruno", "name": "*", "reason": "change freeze until Monday"}
        assert serve.admin("PUT", "/admin/freeze", json=freeze).status_code == 401
        assert serve.admin("PUT", "/admin/freeze", "wrong", json=freeze).status_code == 401
        assert serve.admin("PUT", "/admin/freeze", "s3cret", json=freeze).status_code == 200
        frozen = serve.hook("confirm-rollout", body)
        assert frozen.status_code == 403 and "change freeze until Monday" in frozen.text
        other = serve.hook("confirm-rollout", {**body, "namespace": "shop"})
        assert other.status_code == 200
        removed = serve.admin("DELETE", "/admin/freeze", "s3cret", params={"namespace": "bruno"})
        assert removed.json()["removed"] is True
        assert serve.hook("confirm-rollout", body).status_code == 200
    finally:
        serve.stop()


def test_admin_writes_are_refused_without_a_configured_token(server: Serve) -> None:
    answer = server.admin("PUT", "/admin/freeze", "anything", json={"reason": "x"})
    assert answer.status_code == 403 and "--token-file" in answer.text


def test_restart_keeps_verdicts_and_interrupts_runs_in_flight(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    serve = Serve(tmp_path).start()
    try:
        passed = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum())
        assert serve.hook("pre-rollout", passed).status_code == 200
        assert serve.hook("confirm-promotion", passed).status_code == 200
        flying = payload(f"{healthy_site.traffic_url}/canary", name="shop", checksum=checksum(), duration="60s")
        started = serve.hook("rollout", flying)
        assert started.status_code == 202
        poll(lambda: serve.get(f"/runs/{started.headers['X-Loadkit-Run']}").json()["live"])
        assert serve.stop(signal.SIGTERM) == 0
        serve.start()
        assert serve.hook("confirm-promotion", passed).status_code == 200  # the verdict survived
        old = serve.get(f"/runs/{started.headers['X-Loadkit-Run']}").json()
        assert old["status"] == "interrupted" and old["verdict"] is None and old["reason"].startswith("not judged")
        assert old["analysis"] == started.headers["X-Loadkit-Analysis"]  # the analysis is still open
        assert serve.get(f"/analyses/{old['analysis']}").json()["analysis"]["status"] == "open"
        assert serve.hook("confirm-promotion", flying).status_code == 403  # interrupted is never a pass
        again = serve.hook("rollout", flying)
        assert again.status_code == 202 and again.headers["X-Loadkit-Run"] != old["id"]
        assert serve.hook("post-rollout", flying).status_code == 200
    finally:
        serve.stop()


def test_past_the_run_limit_hooks_answer_429(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    serve = Serve(tmp_path, "--max-concurrent-runs", "1").start()
    try:
        one = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="30s")
        assert serve.hook("rollout", one).status_code == 202
        other = serve.hook("rollout", payload(f"{healthy_site.traffic_url}/canary", name="shop", checksum="x"))
        assert other.status_code == 429 and 1 <= int(other.headers["Retry-After"]) <= 30  # Flagger sleeps it
        assert serve.hook("rollout", one).status_code == 200  # the same key still answers
        assert serve.hook("post-rollout", one).status_code == 200
    finally:
        serve.stop()


def test_a_stopped_run_never_promotes(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    serve = Serve(tmp_path, "--token-file", str(token)).start()
    try:
        body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="60s")
        run_id = serve.hook("rollout", body).headers["X-Loadkit-Run"]
        poll(lambda: (serve.get(f"/runs/{run_id}").json().get("live") or {}).get("verdict") == "pass")
        assert serve.admin("POST", f"/runs/{run_id}/stop", "s3cret").json()["stopping"] is True
        run = poll(lambda: (r := serve.get(f"/runs/{run_id}").json())["status"] != "running" and r)
        assert run["status"] == "stopped" and run["verdict"] is None  # measured, but cut short: not judged
        assert run["reason"].startswith("not judged: stopped before its end")
        assert serve.hook("confirm-promotion", body).status_code == 403
        again = serve.hook("rollout", body)  # "ensure running": a stopped run is started afresh
        assert again.status_code == 202 and again.headers["X-Loadkit-Run"] != run_id
        assert serve.hook("post-rollout", body).status_code == 200
    finally:
        serve.stop()


def test_a_passed_pre_rollout_is_reused(server: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum())
    first = server.hook("pre-rollout", body)
    assert first.status_code == 200
    again = server.hook("pre-rollout", body)  # e.g. Flagger's webhook timed out and it calls again
    assert again.status_code == 200 and again.headers["X-Loadkit-Run"] == first.headers["X-Loadkit-Run"]
    assert again.elapsed.total_seconds() < 1


def test_an_unreachable_target_is_not_judged_and_never_rolls_back(server: Serve) -> None:
    body = payload(f"{NOWHERE}/canary", checksum=checksum())
    pre = server.hook("pre-rollout", body)
    assert pre.status_code == 424 and "could not be judged" in pre.text and "cannot reach" in pre.text
    started = server.hook("rollout", body)
    assert started.status_code == 202
    poll(lambda: server.get(f"/runs/{started.headers['X-Loadkit-Run']}").json()["status"] == "error")
    assert server.hook("rollback", body).status_code == 409  # could not run is not "failed"
    assert server.hook("confirm-promotion", body).status_code == 403  # and never a pass
    retry = server.hook("rollout", body)
    assert retry.status_code == 424 and "restarted as run" in retry.text
    assert retry.headers["X-Loadkit-Run"] != started.headers["X-Loadkit-Run"]


def test_a_failed_pre_rollout_is_left_to_flaggers_threshold(server: Serve, faulty_site: SandboxProcess,
                                                            healthy_site: SandboxProcess) -> None:
    revision = checksum()
    failing = payload(f"{faulty_site.traffic_url}/canary", checksum=revision, profile="quick", duration="3s")
    assert server.hook("pre-rollout", failing).status_code == 412
    revision_only = payload("http://127.0.0.1:9/", checksum=revision, rollback_on="decisive-breach")
    del revision_only["metadata"]["target"]
    assert server.hook("rollback", revision_only).status_code == 409  # never a rollback signal, even when enabled
    passing = payload(f"{healthy_site.traffic_url}/canary", checksum=revision, profile="steady", duration="3s")
    assert server.hook("pre-rollout", passing).status_code == 200
    assert server.hook("confirm-promotion", {**revision_only, "metadata": {}}).status_code == 403  # quick failed


def test_the_same_plan_shares_a_run_and_another_plan_does_not(server: Serve, healthy_site: SandboxProcess) -> None:
    body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="20s")
    first = server.hook("rollout", body)
    assert first.status_code == 202
    assert server.hook("rollout", body).headers["X-Loadkit-Run"] == first.headers["X-Loadkit-Run"]
    for change in ({"users": "5"}, {"headers": "x-canary: insider"}, {"spawn_rate": "5"}, {"duration": "21s"},
                   {"thresholds": "strict"}):
        other = server.hook("rollout", {**body, "metadata": {**body["metadata"], **change}})
        assert other.status_code == 202, (change, other.text)
        assert other.headers["X-Loadkit-Run"] != first.headers["X-Loadkit-Run"], change
    series = poll(lambda: len(lines := _series(server, "loadkit_live_rps", body["checksum"])) >= 6 and lines)
    assert len(series) == len(set(series)), series  # concurrent runs never share a series
    assert server.hook("post-rollout", body).status_code == 200


def _series(server: Serve, metric: str, checksum: str) -> list[str]:
    analysis = server.get("/analyses", params={"name": "bruno-site"}).json()["analyses"]
    ids = {a["id"] for a in analysis if a["checksum"] == checksum}
    return [line.rsplit(" ", 1)[0] for line in server.get("/metrics").text.splitlines()
            if line.startswith(metric + "{") and any(f'analysis="{i}"' in line for i in ids)]


def test_logs_tell_the_story_one_json_line_each(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    serve = Serve(tmp_path, "--log-format", "json").start()
    try:
        body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="2s")
        assert serve.hook("pre-rollout", body).status_code == 200
        assert serve.hook("rollout", {**body, "metadata": {**body["metadata"], "cmd": "x"}}).status_code == 400
    finally:
        serve.stop()
    lines = [json.loads(line) for line in serve.stderr_path.read_text().splitlines() if line.startswith("{")]
    events = [(e["event"], e.get("status")) for e in lines]
    assert ("analysis_open", None) in events and ("run_start", None) in events and ("run_end", "completed") in events
    assert ("hook", 200) in events and ("hook", 400) in events
    run_end = next(e for e in lines if e["event"] == "run_end")
    assert run_end["status"] == "completed" and run_end["verdict"] == "pass" and run_end["namespace"] == "bruno"
    assert all("ts" in e and "level" in e for e in lines)


def test_the_default_target_stays_in_the_cluster(tmp_path: Path) -> None:
    serve = Serve(tmp_path, local_targets=False).start()
    try:
        body = {"name": "bruno-site", "namespace": "com", "phase": "Progressing", "checksum": checksum(),
                "metadata": {"duration": "2s"}}
        started = serve.hook("rollout", body)
        assert started.status_code == 202
        run = serve.get(f"/runs/{started.headers['X-Loadkit-Run']}").json()
        assert run["target"] == "http://bruno-site-canary.com.svc:80"  # never the public bruno-site-canary.com
        assert serve.hook("post-rollout", body).status_code == 200
    finally:
        serve.stop()


def test_load_stops_when_the_server_is_killed(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    import psutil

    serve = Serve(tmp_path).start()
    assert serve.proc is not None
    body = payload(f"{healthy_site.traffic_url}/canary", checksum=checksum(), duration="60s")
    run_id = serve.hook("rollout", body).headers["X-Loadkit-Run"]
    poll(lambda: serve.get(f"/runs/{run_id}").json().get("live"))
    locust = [p for p in psutil.Process(serve.proc.pid).children(recursive=True) if "locust" in " ".join(p.cmdline())]
    assert locust
    serve.stop(signal.SIGKILL)
    _gone, alive = psutil.wait_procs(locust, timeout=15)
    assert not alive, "Locust kept loading the canary after its server was killed"


def test_a_target_that_redirects_off_the_allow_list_sends_nothing_there(tmp_path: Path) -> None:
    with serve_http("127.0.0.1", lambda _path: (200, {})) as elsewhere, redirecting("127.0.0.1", elsewhere) as target:
        allowed = rf"^http://127\.0\.0\.1:{target.port}(/.*)?$"  # the target only, not the port it redirects to
        serve = Serve(tmp_path, "--allow-target", allowed, local_targets=False).start()
        try:
            refused = serve.hook("pre-rollout", payload(f"http://127.0.0.1:{elsewhere.port}"))
            assert refused.status_code == 403  # elsewhere is outside the allow-list ...
            answer = serve.hook("pre-rollout", payload(f"http://127.0.0.1:{target.port}", duration="3s"))
            assert elsewhere.requests == 0, elsewhere.paths  # ... and no redirect reaches it
            assert target.requests > 50
            # The load says nothing about the canary: not judged (a failed check, never a rollback signal).
            assert answer.status_code == 424 and "left the target" in answer.text, answer.text
            result = serve.get(f"/runs/{answer.headers['X-Loadkit-Run']}/result").json()
            assert "outside the target" in result["errors"][0]["message"]
            run = serve.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
            assert run["verdict"] is None and run["decisive"] == ""
        finally:
            serve.stop()


def test_a_continuous_run_stops_when_flagger_stops_calling(tmp_path: Path, healthy_site: SandboxProcess) -> None:
    serve = Serve(tmp_path)
    serve.config.write_text(serve.config.read_text().replace("server:\n", "server:\n  idle_timeout: 3s\n"))
    serve.start()
    try:
        started = serve.hook("rollout", payload(f"{healthy_site.traffic_url}/canary", duration="analysis"))
        assert started.status_code == 202
        run = poll(lambda: (r := serve.get(f"/runs/{started.headers['X-Loadkit-Run']}").json())["status"]
                   != "running" and r, timeout=30)
        assert run["status"] == "stopped" and "Flagger stopped calling" in run["reason"]
    finally:
        serve.stop()
