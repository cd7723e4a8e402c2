"""Flagger's scheduler (tests/webhook/flagger_loop.py, faithful to scheduler.go) against a real
`loadkit serve` and the sandbox: the flows real Flagger produces every week.

The sandbox's canary is broken and mended at run time through its fault API (an Istio-like 503
abort on the canary version), so one revision's checksum can meet a healthy canary once and a
broken one the next time: a verdict that belongs to another analysis would show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.webhook.conftest import Serve, poll
from tests.webhook.flagger_loop import Analysis, Canary, FlaggerLoop, Hook, Outcome, checksum_of

pytestmark = pytest.mark.slow

CONFIG = """\
min_samples: 50
profiles:
  quick: {users: 10, spawn_rate: 10, duration: 4s}
server:
  default_profiles: {pre-rollout: quick, rollout: quick}
  rollback: {window: 10s}
"""


@pytest.fixture(scope="module")
def site(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=1)  # its canary is broken and mended by the tests


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("flagger-loop"), "--max-concurrent-runs", "4")
    server.config.write_text(CONFIG)
    server.start()
    yield server
    server.stop()


def break_canary(site: SandboxProcess, percentage: float = 5.0) -> None:
    answer = httpcalls.post(f"{site.admin_url}/faults", json={"version": "canary", "kind": "abort", "http_status": 503,
                                                         "percentage": percentage}, timeout=5)
    assert answer.status_code in (200, 201), answer.text


def mend_canary(site: SandboxProcess) -> None:
    assert httpcalls.delete(f"{site.admin_url}/faults", timeout=5).status_code == 200


@pytest.fixture(autouse=True)
def _healthy_at_start(site: SandboxProcess) -> Iterator[None]:
    mend_canary(site)
    yield
    mend_canary(site)


def wiring(site: SandboxProcess, *, pre_rollout: bool = True, rollback_on: str = "manual") -> list[Hook]:
    """The plan's wiring (deploy/examples/canary.yaml), against the sandbox's canary route."""
    target = f"{site.traffic_url}/canary"
    hooks = [Hook("confirm-rollout")]
    if pre_rollout:
        hooks.append(Hook("pre-rollout", metadata={"target": target, "duration": "2s"}, timeout="60s"))
    return [*hooks,
            Hook("rollout", metadata={"target": target, "duration": "analysis"}),
            Hook("confirm-promotion", mute_alert=True),
            Hook("rollback", metadata={"rollback_on": rollback_on}),
            Hook("post-rollout")]


def canary(name: str, site: SandboxProcess, *, threshold: int = 3, max_weight: int = 30, **options: object) -> Canary:
    analysis = Analysis(hooks=wiring(site, **options), interval_s=1.0, threshold=threshold,  # type: ignore[arg-type]
                        step_weight=10, max_weight=max_weight)
    return Canary(name, "bruno", "rev-a", primary="rev-0", analysis=analysis)


def statuses(outcome: Outcome, kind: str) -> list[int]:
    return [c.status for c in outcome.calls_of(kind)]


def test_a_healthy_canary_is_promoted_on_load_that_ran_the_whole_analysis(serve: Serve, site: SandboxProcess) -> None:
    outcome = FlaggerLoop(canary("healthy", site), serve.url).run()
    assert outcome.result == "promoted", outcome.calls
    assert statuses(outcome, "pre-rollout") == [200] and 202 in statuses(outcome, "rollout")
    assert 200 not in statuses(outcome, "rollback")
    runs = serve.get("/runs", params={"name": "healthy"}).json()["runs"]
    rollout = next(r for r in runs if r["hook"] == "rollout")
    assert rollout["continuous"] and rollout["status"] == "completed" and rollout["verdict"] == "pass"
    [analysis] = serve.get("/analyses", params={"name": "healthy"}).json()["analyses"]
    assert analysis["outcome"] == "succeeded" and analysis["checksum"] == checksum_of("rev-a")


def test_redeploys_with_a_repeated_checksum_are_judged_on_their_own_load(serve: Serve, site: SandboxProcess) -> None:
    loop = FlaggerLoop(cd := canary("redeploy", site, threshold=2), serve.url)
    break_canary(site)
    failed = loop.run()  # A meets a broken canary
    assert failed.result == "rolled back" and "threshold reached" in failed.reason, failed.calls
    mend_canary(site)
    cd.apply("rev-b")
    assert loop.run().result == "promoted"
    cd.apply("rev-a")  # A again (a revert): its checksum once failed, the canary is healthy now
    again = loop.run()
    assert again.result == "promoted", again.calls
    assert again.checksum == failed.checksum == checksum_of("rev-a")
    assert statuses(again, "pre-rollout") == [200]  # judged afresh, not rolled back on its first tick
    break_canary(site)
    cd.apply("rev-b")  # B again: its checksum once passed, the canary is broken now
    broken = loop.run()
    assert broken.result == "rolled back", broken.calls
    assert set(statuses(broken, "pre-rollout")) == {412}  # fresh load, never the old pass
    assert broken.peak_weight == 0  # so no traffic ever reached the broken canary


def test_a_flaky_first_smoke_run_is_retried_up_to_the_threshold(serve: Serve, site: SandboxProcess) -> None:
    break_canary(site, 20)

    def mend_after_the_first_smoke_run(_tick: int, loop: FlaggerLoop) -> None:
        if any(c.type == "pre-rollout" for c in loop.calls):
            mend_canary(site)

    outcome = FlaggerLoop(canary("flaky", site, threshold=3), serve.url).run(on_tick=mend_after_the_first_smoke_run)
    assert outcome.result == "promoted", outcome.calls
    assert statuses(outcome, "pre-rollout") == [412, 200]
    assert 200 not in statuses(outcome, "rollback")  # one failed smoke run is not a rollback signal


def test_a_persistently_broken_canary_is_rolled_back_by_flaggers_threshold(serve: Serve,
                                                                          site: SandboxProcess) -> None:
    break_canary(site)
    outcome = FlaggerLoop(canary("broken", site, threshold=2), serve.url).run()
    assert outcome.result == "rolled back" and "failed checks threshold reached 2" in outcome.reason
    assert statuses(outcome, "pre-rollout") == [412, 412] and 200 not in statuses(outcome, "rollback")
    assert outcome.peak_weight == 0  # no traffic ever shifted


def test_a_new_revision_mid_analysis_stops_the_old_load(serve: Serve, site: SandboxProcess) -> None:
    cd = canary("revised", site, max_weight=50)
    old_runs: list[str] = []

    def new_revision(tick: int, loop: FlaggerLoop) -> None:
        if tick == 5:
            old_runs.extend(r["id"] for r in serve.get("/runs", params={"name": "revised"}).json()["runs"]
                            if r["hook"] == "rollout" and r["status"] == "running")
            loop.canary.apply("rev-b")

    outcome = FlaggerLoop(cd, serve.url).run(on_tick=new_revision)
    assert outcome.result == "promoted" and outcome.checksum == checksum_of("rev-b"), outcome.calls
    assert old_runs, "the first revision's rollout load was not running when the revision changed"
    assert [c.phase for c in outcome.calls_of("post-rollout")] == ["Succeeded"]  # none for the abandoned one
    old = serve.get(f"/runs/{old_runs[0]}").json()
    assert old["status"] == "superseded" and old["verdict"] is None
    analyses = serve.get("/analyses", params={"name": "revised"}).json()["analyses"]
    assert [(a["checksum"], a["outcome"]) for a in analyses] == [(checksum_of("rev-b"), "succeeded"),
                                                                 (checksum_of("rev-a"), "superseded")]


def test_a_server_restart_mid_analysis_loses_nothing(tmp_path: Path, site: SandboxProcess) -> None:
    server = Serve(tmp_path)
    server.config.write_text(CONFIG)
    server.start()
    try:
        def restart(tick: int, _loop: FlaggerLoop) -> None:
            if tick == 4:
                server.restart()

        outcome = FlaggerLoop(canary("restarted", site), server.url).run(on_tick=restart)
        assert outcome.result == "promoted", outcome.calls
        runs = server.get("/runs", params={"name": "restarted"}).json()["runs"]
        statuses_ = [(r["hook"], r["status"]) for r in runs]
        assert ("rollout", "interrupted") in statuses_ and ("rollout", "completed") in statuses_
        assert len({r["analysis"] for r in runs}) == 1  # the same analysis before and after the restart
    finally:
        server.stop()


def test_without_a_checksum_nothing_is_promoted(serve: Serve, site: SandboxProcess) -> None:
    outcome = FlaggerLoop(canary("old-flagger", site, threshold=2), serve.url, send_checksum=False).run()
    assert outcome.result == "rolled back", outcome.calls
    assert set(statuses(outcome, "pre-rollout")) == {400}
    assert "Flagger 1.34" in outcome.calls_of("pre-rollout")[0].error


def test_a_decisive_breach_rolls_back_before_flaggers_threshold(serve: Serve, site: SandboxProcess) -> None:
    cd = canary("decisive", site, threshold=30, max_weight=100, pre_rollout=False, rollback_on="decisive-breach")
    fault_at: list[float] = []

    def break_once_loading(_tick: int, loop: FlaggerLoop) -> None:
        if not fault_at and 202 in [c.status for c in loop.calls if c.type == "rollout"]:
            poll(lambda: _collected(serve, "decisive"), timeout=20)
            break_canary(site)
            fault_at.append(loop.calls[-1].t)

    outcome = FlaggerLoop(cd, serve.url).run(on_tick=break_once_loading)
    assert outcome.result == "rolled back" and "manual webhook invoked" in outcome.reason, outcome.calls
    signal = next(c for c in outcome.calls_of("rollback") if c.status == 200)
    assert signal.t - fault_at[0] < 20  # Flagger's own path: threshold x interval = 30 ticks
    assert outcome.failed_checks < 30
    assert "decisively" in signal.body


def _collected(serve: Serve, name: str) -> bool:
    runs = serve.get("/runs", params={"name": name}).json()["runs"]
    return any(r["status"] == "running" and (r.get("live") or {}).get("verdict") == "pass" for r in
               (serve.get(f"/runs/{run['id']}").json() for run in runs))


def test_a_canary_that_breaks_late_in_a_blue_green_analysis_is_not_promoted(serve: Serve, site: SandboxProcess) -> None:
    """Blue/Green wired like deploy/examples/blue-green.yaml (continuous load, the manual rollback policy):
    a long healthy history must not hide a canary that starts failing late."""
    target = f"{site.traffic_url}/canary"
    hooks = [Hook("rollout", metadata={"target": target, "duration": "analysis"}),
             Hook("confirm-promotion", mute_alert=True), Hook("rollback"), Hook("post-rollout")]
    cd = Canary("late", "bruno", "rev-a", primary="rev-0",
                analysis=Analysis(hooks=hooks, interval_s=1.0, threshold=3, iterations=45))

    def break_after_a_while(tick: int, _loop: FlaggerLoop) -> None:
        if tick == 36:  # 35 s of healthy load: 3 % errors from here stay under 1 % over the whole run for long
            break_canary(site, 3)

    outcome = FlaggerLoop(cd, serve.url).run(on_tick=break_after_a_while)
    assert outcome.result == "rolled back", outcome.calls
    assert 412 in statuses(outcome, "rollout") and 200 not in statuses(outcome, "confirm-promotion")
