"""Flagger's analysis loop, played against a real `loadkit serve` and the sandbox."""

from __future__ import annotations

import uuid

import pytest

from loadkit.sandbox import SandboxProcess
from tests.webhook.conftest import Serve
from tests.webhook.flagger_loop import FlaggerLoop, Hook

pytestmark = pytest.mark.slow


def hooks(target: str, *, pre_rollout: bool, rollback: bool, rollout_duration: str) -> list[Hook]:
    """The plan's wiring (deploy/examples/canary.yaml): pre-rollout smoke, rollout load, gates."""
    out = [Hook("confirm-rollout")]
    if pre_rollout:
        out.append(Hook("pre-rollout", {"target": target, "profile": "quick", "duration": "3s"}))
    out += [
        Hook("rollout", {"target": target, "profile": "quick", "duration": rollout_duration}),
        Hook("confirm-promotion", {"target": target}),
        Hook("post-rollout", {"target": target}),
    ]
    if rollback:
        out.append(Hook("rollback", {"target": target}))
    return out


def loop(server: Serve, site: SandboxProcess, **kwargs: object) -> FlaggerLoop:
    target = f"{site.traffic_url}/canary"
    wiring = hooks(target, pre_rollout=bool(kwargs.pop("pre_rollout", True)),
                   rollback=bool(kwargs.pop("rollback", True)),
                   rollout_duration=str(kwargs.pop("rollout_duration", "6s")))
    return FlaggerLoop(server.url, wiring, name="bruno-site", namespace="bruno", checksum=uuid.uuid4().hex[:10],
                       interval_s=1.0, **kwargs)  # type: ignore[arg-type]


def test_a_healthy_canary_is_promoted(server: Serve, healthy_site: SandboxProcess) -> None:
    outcome = loop(server, healthy_site, threshold=3).run()
    assert outcome.result == "promoted", outcome.calls
    assert outcome.failed_checks == 0 and outcome.weight == 50
    statuses = {(kind, status) for _, kind, status in outcome.calls}
    assert ("pre-rollout", 200) in statuses and ("rollout", 202) in statuses
    assert ("confirm-promotion", 200) in statuses
    assert all(status != 200 for _, kind, status in outcome.calls if kind == "rollback")


def test_a_faulty_canary_is_rolled_back_by_the_rollback_hook(server: Serve, faulty_site: SandboxProcess) -> None:
    outcome = loop(server, faulty_site, pre_rollout=False, rollout_duration="60s", threshold=10).run()
    assert outcome.result == "rolled back", outcome.calls
    assert outcome.reason == "a rollback hook signalled a rollback"
    assert outcome.weight < 50  # never promoted, caught during the analysis
    rolled_back_at = max(t for t, kind, status in outcome.calls if kind == "rollback")
    assert rolled_back_at < 30  # well inside the plan's "rollback in < 2 min"


def test_a_failed_pre_rollout_rolls_back_at_once(server: Serve, faulty_site: SandboxProcess) -> None:
    outcome = loop(server, faulty_site, threshold=5).run()
    assert outcome.result == "rolled back", outcome.calls
    assert outcome.reason == "a rollback hook signalled a rollback"
    assert outcome.weight == 0 and outcome.failed_checks == 1  # no traffic ever shifted
    assert [s for _, kind, s in outcome.calls if kind == "pre-rollout"] == [412]


def test_without_a_rollback_hook_failed_checks_reach_the_threshold(
        server: Serve, faulty_site: SandboxProcess) -> None:
    outcome = loop(server, faulty_site, threshold=2, rollback=False).run()
    assert outcome.result == "rolled back", outcome.calls
    assert outcome.reason == "failed checks reached the threshold (2)"
    assert outcome.weight == 0 and outcome.failed_checks == 2
    assert [s for _, kind, s in outcome.calls if kind == "pre-rollout"] == [412, 412]
