"""Analyses, gates, policy and bad input, in process: the real app, store and manager, no load.

Every call here is answered before a run would start, so no Locust is needed: the app is served
by Starlette's TestClient, with a real SQLite file so restarts can be replayed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loadkit.store import SCHEMA_VERSION
from loadkit.webhook.models import RunRecord, RunStatus
from loadkit.webhook.server import build_settings
from loadkit.webhook.store import Store, now

CONFIG = """\
min_samples: 50
profiles:
  quick: {users: 10, spawn_rate: 10, duration: 4s}
threshold_sets:
  versus-primary:
    - name: vs-primary
      compare: {baseline: primary}
server:
  default_profiles: {pre-rollout: quick, rollout: quick}
  max_duration: 10m
  max_users: 60
  canaries:
    shop/storefront: {service: web, workload: storefront-v2}
  rollback: {policy: decisive-breach, confidence: 0.999, window: 30s}
"""
TOKEN = "s3cret"


class App:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def hook(self, kind: str, name: str = "bruno-site", namespace: str = "bruno", checksum: str = "aaa",
             phase: str = "Progressing", **metadata: str) -> Any:
        body: dict[str, Any] = {"name": name, "namespace": namespace, "phase": phase, "checksum": checksum}
        if metadata:
            body["metadata"] = metadata
        return self.client.post(f"/flagger/{kind}", json=body)

    def gate(self, action: str, canary: str = "bruno/bruno-site", token: str | None = TOKEN, **body: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(f"/gates/{canary}/{action}", json=body, headers=headers)


@contextmanager
def served(tmp: Path, *, token: bool = True, **options: Any) -> Iterator[App]:
    from loadkit.cli.serve import report_views
    from loadkit.webhook.app import create_app
    from loadkit.webhook.runs import RunManager

    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "serve.yaml"
    config.write_text(CONFIG)
    token_file = None
    if token:
        token_file = tmp / "token"
        token_file.write_text(TOKEN)
    settings = build_settings(config_path=config, db_path=tmp / "loadkit.db",
                              allow_targets=options.pop("allow_targets", ()),
                              allow_namespaces=options.pop("allow_namespaces", ()), max_concurrent_runs=2,
                              max_body=65536, token_file=token_file, public_url="http://loadkit", retention_s=86400)
    store = Store(settings.db_path, url_for=settings.run_url)
    manager = RunManager(store, settings.config.min_samples, 2, url_for=settings.run_url)
    try:
        with TestClient(create_app(settings, store, manager, views=report_views())) as client:
            yield App(client)
    finally:
        store.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with served(tmp_path) as served_app:
        yield served_app


def analysis_of(answer: Any) -> str:
    return str(answer.headers["X-Loadkit-Analysis"])


# -- the lifecycle ----------------------------------------------------------------------------------

def test_hooks_of_one_revision_share_one_analysis(app: App) -> None:
    first = app.hook("rollback")
    assert first.status_code == 404 and "no load run in analysis" in first.text
    assert analysis_of(app.hook("confirm-promotion")) == analysis_of(first)
    detail = app.client.get(f"/analyses/{analysis_of(first)}").json()
    assert detail["analysis"]["status"] == "open" and detail["analysis"]["checksum"] == "aaa"
    assert detail["analysis"]["opened_by"] == "rollback"


def test_a_new_checksum_supersedes_and_a_repeated_one_starts_afresh(app: App) -> None:
    a = analysis_of(app.hook("rollback", checksum="aaa"))
    b = analysis_of(app.hook("rollback", checksum="bbb"))
    again = analysis_of(app.hook("rollback", checksum="aaa"))  # A -> B -> A: a revert
    assert len({a, b, again}) == 3
    old = app.client.get(f"/analyses/{a}").json()["analysis"]
    assert old["status"] == "closed" and old["outcome"] == "superseded" and "bbb" in old["reason"]
    listed = app.client.get("/analyses", params={"namespace": "bruno", "name": "bruno-site"}).json()["analyses"]
    assert [x["id"] for x in listed] == [again, b, a]
    assert [x["status"] for x in listed] == ["open", "closed", "closed"]


def test_post_rollout_closes_and_the_same_checksum_opens_a_new_analysis(app: App) -> None:
    a = analysis_of(app.hook("rollback"))
    closed = app.hook("post-rollout", phase="Succeeded")
    assert closed.status_code == 200 and f"analysis {a} closed" in closed.text
    assert app.client.get(f"/analyses/{a}").json()["analysis"]["outcome"] == "succeeded"
    assert analysis_of(app.hook("rollback")) != a  # the same spec applied again is a new analysis
    failed = app.hook("post-rollout", phase="Failed")
    assert failed.status_code == 200
    again = app.hook("post-rollout", phase="Failed")  # a retried post-rollout opens nothing
    assert again.status_code == 200 and "no analysis" in again.text


def test_confirm_rollout_ends_an_analysis_whose_post_rollout_never_came(app: App) -> None:
    a = analysis_of(app.hook("rollback"))
    # confirm-rollout carries the previous revision's checksum and comes only between analyses
    assert app.hook("confirm-rollout", checksum="aaa", phase="Succeeded").status_code == 200
    closed = app.client.get(f"/analyses/{a}").json()["analysis"]
    assert closed["status"] == "closed" and closed["outcome"] == "ended"


def test_without_a_checksum_analysis_hooks_are_refused(app: App) -> None:
    for kind in ("pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback"):
        answer = app.hook(kind, checksum="")
        assert answer.status_code == 400 and "Flagger 1.34" in answer.text, kind
    for kind in ("confirm-rollout", "post-rollout", "event"):
        assert app.hook(kind, checksum="").status_code == 200, kind
    assert app.client.get("/analyses").json()["analyses"] == []


# -- gates ------------------------------------------------------------------------------------------

def test_gate_calls_need_the_bearer_token(tmp_path: Path) -> None:
    with served(tmp_path) as app:
        app.hook("rollback")
        assert app.gate("approve", token=None).status_code == 401
        assert app.gate("approve", token="wrong").status_code == 401
        bare = app.client.post("/gates/bruno/bruno-site/rollback", headers={"Authorization": TOKEN})
        assert bare.status_code == 401
        assert app.client.delete("/gates/bruno/bruno-site/rollback").status_code == 401
        assert app.gate("approve").status_code == 200
    with served(tmp_path / "no-token", token=False) as app:
        answer = app.gate("rollback", token="anything")
        assert answer.status_code == 403 and "--token-file" in answer.text


def test_a_manual_promotion_gate_waits_for_approval_and_resets_on_a_new_revision(app: App) -> None:
    waiting = app.hook("confirm-promotion", gate="manual")
    assert waiting.status_code == 403 and "loadkit gate approve bruno/bruno-site" in waiting.text
    approved = app.gate("approve", hook="confirm-promotion", reason="looks good")
    assert approved.status_code == 200 and approved.json()["gates"][0]["state"] == "approved"
    assert app.hook("confirm-promotion", gate="manual").status_code == 200
    assert app.hook("confirm-promotion", checksum="bbb", gate="manual").status_code == 403  # a new revision


def test_a_halt_holds_whatever_the_gate_mode(app: App) -> None:
    app.hook("rollback")
    assert app.gate("approve").status_code == 200
    assert app.hook("confirm-traffic-increase", gate="manual").status_code == 200
    halted = app.gate("halt", reason="DB migration running")
    assert halted.status_code == 200
    for mode in ("manual", "load", "both"):
        answer = app.hook("confirm-traffic-increase", gate=mode)
        assert answer.status_code == 403 and "halted by hand: DB migration running" in answer.text, mode
    assert app.hook("confirm-promotion").status_code == 403


def test_a_halt_of_the_next_rollout_holds_it_and_carries_into_its_analysis(app: App) -> None:
    assert app.gate("halt", reason="DB migration").json()["message"].startswith("halted confirm-rollout")
    held = app.hook("confirm-rollout", phase="Succeeded")  # no gate: manual, a halt still holds
    assert held.status_code == 403 and "halted by hand: DB migration" in held.text
    app.hook("rollback", checksum="bbb")  # a Canary without confirm-rollout got past it: the halt carries in
    carried = app.hook("confirm-promotion", checksum="bbb", gate="manual")
    assert carried.status_code == 403 and "halted before this analysis opened: DB migration" in carried.text
    assert app.gate("approve").status_code == 200  # lifts both, approves nothing of the next rollout
    assert app.hook("confirm-promotion", checksum="bbb", gate="manual").status_code == 200
    app.hook("post-rollout", checksum="bbb", phase="Succeeded")
    assert app.hook("confirm-rollout", checksum="bbb", phase="Succeeded").status_code == 200
    assert app.hook("confirm-rollout", checksum="bbb", phase="Succeeded", gate="manual").status_code == 403


def test_confirm_rollout_approval_is_for_the_next_rollout_only(app: App) -> None:
    assert app.hook("confirm-rollout", phase="Succeeded", gate="manual").status_code == 403
    status = app.gate("approve")  # no analysis open: the next rollout
    assert status.status_code == 200 and "the next rollout" in status.json()["message"]
    assert app.hook("confirm-rollout", phase="Waiting", gate="manual").status_code == 200
    app.hook("rollback", checksum="bbb")  # the analysis opens: the approval is used up
    app.hook("post-rollout", checksum="bbb", phase="Succeeded")
    assert app.hook("confirm-rollout", checksum="bbb", phase="Succeeded", gate="manual").status_code == 403


def test_a_manual_rollback_belongs_to_the_open_analysis(app: App) -> None:
    none_open = app.gate("rollback", reason="errors")
    assert none_open.status_code == 409 and "nothing to roll back" in none_open.text
    app.hook("rollback")
    assert app.gate("rollback", reason="checkout errors").status_code == 200
    answer = app.hook("rollback")
    assert answer.status_code == 200 and "checkout errors" in answer.text
    closed = app.client.delete("/gates/bruno/bruno-site/rollback", headers={"Authorization": f"Bearer {TOKEN}"})
    assert closed.status_code == 200 and closed.json()["message"] == "rollback closed"
    assert app.hook("rollback").status_code == 404
    app.gate("rollback")
    assert app.hook("rollback", checksum="bbb").status_code == 404  # never carried to the next revision


def test_gates_survive_a_restart(tmp_path: Path) -> None:
    with served(tmp_path) as app:
        app.hook("rollback")
        app.gate("rollback", reason="keep me")
        app.gate("approve", hook="confirm-promotion")
    with served(tmp_path) as app:
        assert app.hook("rollback").status_code == 200
        assert app.hook("confirm-promotion", gate="manual").status_code == 200
        status = app.client.get("/gates/bruno/bruno-site").json()
        assert {(g["hook"], g["state"]) for g in status["gates"]} == {("rollback", "open"),
                                                                      ("confirm-promotion", "approved")}


@pytest.mark.parametrize(("path", "body", "status", "reason"), [
    pytest.param("/gates/bruno/bruno-site/approve", {"hook": "rollout"}, 400, "hook: String should match",
                 id="unknown-hook"),
    pytest.param("/gates/bruno/bruno-site/approve", {"hooks": "x"}, 400, "hooks: Extra inputs are not permitted",
                 id="unknown-field"),
    pytest.param("/gates/bruno/bruno-site/open", {}, 404, "unknown gate action 'open'", id="unknown-action"),
    pytest.param("/gates/Bruno/bruno-site/approve", {}, 400, "namespace 'Bruno' is not a Kubernetes name",
                 id="bad-namespace"),
    pytest.param("/gates/bruno/bruno-site/approve", {"reason": "x" * 501}, 400, "reason: String should have at most",
                 id="long-reason"),
])
def test_bad_gate_calls_are_4xx(app: App, path: str, body: dict[str, str], status: int, reason: str) -> None:
    answer = app.client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == status, answer.text
    assert reason in answer.text


# -- metadata and policy ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "meta", "status", "reason"), [
    pytest.param("rollout", {"gate": "manual"}, 400, "metadata gate applies to confirm-rollout", id="gate-on-rollout"),
    pytest.param("confirm-promotion", {"gate": "maybe"}, 400, "use one of load, manual, both", id="bad-gate"),
    pytest.param("confirm-rollout", {"gate": "load"}, 400, "use metadata gate: manual", id="confirm-rollout-load-gate"),
    pytest.param("confirm-promotion", {"rollback_on": "decisive-breach"}, 400, "applies to the rollback hook",
                 id="rollback-on-elsewhere"),
    pytest.param("rollback", {"rollback_on": "always"}, 400, "use one of manual, decisive-breach",
                 id="bad-rollback-on"),
    pytest.param("rollout", {"service": "Shop"}, 400, "metadata service 'Shop' is not a Kubernetes name",
                 id="bad-service"),
    pytest.param("rollout", {"target": "http://bruno-site-canary.other.svc/"}, 403, "only the canary's own Services",
                 id="other-namespace"),
    pytest.param("rollout", {"target": "http://prometheus.bruno.svc:9090/"}, 403, "is not allowed", id="other-service"),
    pytest.param("rollout", {"target": "http://10.0.0.1/"}, 403, "is not allowed", id="an-ip"),
    pytest.param("rollout", {"profile": "stress"}, 400, "peaks at 100 users, more than this server's max_users (60)",
                 id="stress-over-max-users"),
    pytest.param("rollout", {"profile": "soak"}, 400, "runs 1800s, longer than this server's max_duration (600s)",
                 id="soak-over-max-duration"),
    pytest.param("pre-rollout", {"duration": "2h"}, 400, "longer than this server's max_duration", id="long-duration"),
    pytest.param("rollout", {"duration": "forever"}, 400, "or 'analysis' to load until the analysis ends",
                 id="bad-duration"),
    pytest.param("rollout", {"users": "61"}, 400, "max_users (60)", id="too-many-users"),
    pytest.param("pre-rollout", {"duration": "analysis"}, 400, "duration: analysis is for rollout hooks",
                 id="continuous-pre-rollout"),
    pytest.param(
        "rollout",
        {"duration": "analysis", "thresholds": "versus-primary"},
        400,
        "judged only when a run ends (vs-primary)",
        id="continuous-with-a-compare"
    ),
    pytest.param(
        "rollout",
        {"target": "http://prometheus.istio-system.svc:9090/"},
        403,
        "'istio-system' is a system namespace",
        id="a-platform-service"
    ),
])
def test_bad_metadata_is_refused(app: App, kind: str, meta: dict[str, str], status: int, reason: str) -> None:
    answer = app.hook(kind, **meta)
    assert answer.status_code == status, answer.text
    assert reason in answer.text and "\n" not in answer.text.strip()


def test_system_and_own_namespaces_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "loadkit")
    with served(tmp_path) as app:
        for namespace in ("kube-system", "istio-system", "flux-system", "loadkit"):
            answer = app.hook("rollout", name="kube-dns", namespace=namespace)
            assert answer.status_code == 403 and f"namespace {namespace!r} is" in answer.text, namespace
        assert app.hook("confirm-rollout", name="api", namespace="default").status_code == 200
    with served(tmp_path / "allowed", allow_namespaces=("istio-system",)) as app:
        assert app.hook("confirm-rollout", namespace="istio-system").status_code == 200
        assert app.hook("confirm-rollout", namespace="bruno").status_code == 403


def test_the_api_server_and_platform_services_are_never_targets(tmp_path: Path) -> None:
    wide = (r"^http://.*$",)  # an operator's over-wide --allow-target
    with served(tmp_path, allow_targets=wide) as app:
        for target in ("http://kubernetes.default.svc/", "http://kubernetes.default.svc.cluster.local/",
                       "http://kube-dns.kube-system.svc:9153/", "http://prometheus.istio-system:9090/"):
            answer = app.hook("rollout", name="kubernetes", namespace="default", target=target)
            assert answer.status_code == 403, (target, answer.text)
        assert app.hook("rollout", target="http://api.example.com/", duration="2s").status_code == 202


def test_the_canary_names_come_from_metadata_or_config(tmp_path: Path) -> None:
    with served(tmp_path, allow_targets=()) as app:
        own = app.hook("rollout", duration="2s", service="web", target="http://web-primary.bruno.svc:8080/")
        assert own.status_code == 202, own.text  # refused only later, when nothing answers
        refused = app.hook("rollout", checksum="b", target="http://web-canary.bruno.svc/")
        assert refused.status_code == 403  # without service: web, it is not this canary's
        mapped = app.hook("rollout", name="storefront", namespace="shop", duration="2s")
        run = app.client.get(f"/runs/{mapped.headers['X-Loadkit-Run']}").json()
        assert run["target"] == "http://web-canary.shop.svc:80"  # server.canaries: service web


def test_an_encoded_slash_cannot_reach_a_hook(app: App) -> None:
    # Istio's AuthorizationPolicy sees /flagger%2Frollout as "not /flagger/*"; it must not decode to a hook
    for path in ("/flagger%2Frollout", "/flagger%2frollback", "/gates/bruno%2Fbruno-site"):
        answer = app.client.post(path, json={"name": "x", "namespace": "bruno", "checksum": "a"})
        assert answer.status_code == 400 and "encoded slash" in answer.text, path


def test_event_hooks_take_the_users_metadata(app: App) -> None:
    answer = app.hook("event", eventMessage="Advance bruno-site.bruno canary weight 10", eventType="Normal",
                      timestamp="1700000000000", team="shop", cmd="anything: it is only stored")
    assert answer.status_code == 200
    assert app.client.get("/events").json()[0]["message"] == "Advance bruno-site.bruno canary weight 10"


# -- the store --------------------------------------------------------------------------------------

V0_ROW = ("r1", "bruno", "bruno-site", "aaa", "smoke", "pre-rollout", "default", "http://x", "completed", "pass",
          100.0, "every threshold met", "2026-11-01T00:00:00+00:00", "2026-11-01T00:00:20+00:00", None, None)


def test_an_older_store_is_migrated_in_place(tmp_path: Path) -> None:
    from loadkit.store._db import _SCHEMA_V0

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_V0)
    db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", V0_ROW)
    db.commit()
    db.close()
    store = Store(path)
    try:
        [run] = store.list_runs(None, None)
        assert run.id == "r1" and run.analysis == "" and run.verdict is not None
        assert store.verdict_counts() == {("completed", "pass"): 1}
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()
    Store(path).close()  # opening again migrates nothing twice


def test_retention_keeps_the_runs_of_open_analyses(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        analysis, _, _ = store.enter_analysis("bruno", "b", "c", "rollout")
        for run_id, owner in (("open", analysis.id), ("history", "")):
            store.insert_run(RunRecord(id=run_id, analysis=owner, namespace="bruno", name="b", checksum="c",
                                       profile="smoke", hook="rollout", thresholds="default",  # type: ignore[arg-type]
                                       target="http://x", status=RunStatus.RUNNING,
                                       created_at=now() - timedelta(days=40)))
            store.finish_run(run_id, RunStatus.COMPLETED, verdict=None, score=None, reason="x", result=None)
        assert store.prune(now() - timedelta(days=30)) == 1
        assert [r.id for r in store.runs_of(analysis.id)] == ["open"] and store.get_run("history") is None
    finally:
        store.close()


def test_the_runs_counter_never_goes_down(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        for n in range(3):
            store.insert_run(RunRecord(id=f"r{n}", namespace="bruno", name="b", checksum="c", profile="smoke",
                                       hook="rollout", thresholds="default", target="http://x",  # type: ignore[arg-type]
                                       status=RunStatus.RUNNING, created_at=now() - timedelta(days=40)))
            store.finish_run(f"r{n}", RunStatus.COMPLETED, verdict=None, score=None, reason="x", result=None)
        store.finish_run("r0", RunStatus.ERROR, verdict=None, score=None, reason="twice", result=None)  # ignored
        assert store.verdict_counts() == {("completed", ""): 3}
        assert store.prune(now() - timedelta(days=30)) == 3
        assert store.list_runs(None, None) == [] and store.verdict_counts() == {("completed", ""): 3}
    finally:
        store.close()
