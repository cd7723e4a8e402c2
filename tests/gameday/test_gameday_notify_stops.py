"""Notifications against a real local receiver, and stop conditions against real servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadkit.chaos.signals import HaltSwitch
from loadkit.errors import UsageError
from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioResult, ScenarioStatus, StopKind
from loadkit.gameday.notify import Event, Notifier, destination, destinations
from loadkit.gameday.plan import Category, Expect, HttpStop, PrometheusStop, StopConditions
from loadkit.gameday.stops import StopMonitor, checkers
from tests.gameday.conftest import Receiver

SECRET = "services/T1/B2/sEcReT"


def result(verdict: GameDayVerdict = GameDayVerdict.FAIL) -> GameDayResult:
    now = datetime.now(UTC)
    failed = ScenarioResult(name="latency", experiment_path="x.yaml", expect=Expect.DETECTED, category=Category.NETWORK,
                            weight=3, status=ScenarioStatus.FAILED, score=50.0, reason="detected: not met by detected")
    return GameDayResult(plan="p", plan_path="p.yaml", verdict=verdict, score=50.0, categories={"network": 50.0},
                         target="http://t", profile="steady", started_at=now, ended_at=now, scenarios=[failed])


@pytest.mark.parametrize(("url", "slack", "shown"), [
    ("https://hooks.slack.com/services/T/B/X", True, "slack hooks.slack.com"),
    ("slack+https://chat.example/hook/abc", True, "slack chat.example"),
    ("https://events.example/in?token=abc", False, "webhook events.example"),
], ids=["slack-host", "slack-scheme", "generic"])
def test_destination_kind_and_what_may_be_shown(url: str, slack: bool, shown: str) -> None:
    found = destination(url)
    assert found.slack is slack and found.shown == shown
    assert "abc" not in found.shown and "/X" not in found.shown


def test_a_bad_url_is_refused_without_showing_it() -> None:
    with pytest.raises(UsageError) as refused:
        destination(f"ftp://host/{SECRET}")
    assert SECRET not in str(refused.value)


def test_destinations_from_options_files_and_env(tmp_path: Path) -> None:
    file = tmp_path / "urls"
    file.write_text("# comment\nhttps://a.example/1\n\nhttps://b.example/2\n")
    found = destinations(["https://a.example/1"], [file], {"LOADKIT_NOTIFY_SLACK": "https://c.example/3",
                                                          "LOADKIT_NOTIFY_WEBHOOK": "https://d.example/4"})
    assert [(d.url, d.slack) for d in found] == [("https://a.example/1", False), ("https://b.example/2", False),
                                                 ("https://c.example/3", True), ("https://d.example/4", False)]


def test_slack_and_generic_bodies_reach_the_receiver(receiver: Receiver) -> None:
    said: list[str] = []
    notifier = Notifier([destination(f"slack+{receiver.url}/s/{SECRET}"), destination(f"{receiver.url}/g/{SECRET}")],
                        said.append, link="https://ci.example/9")
    notifier.send(Event.HALTED, result(GameDayVerdict.HALTED))
    [slack] = receiver.bodies(f"/s/{SECRET}")
    assert set(slack) == {"text", "blocks"} and "HALTED" in slack["text"]
    assert "Failing scenario latency" in slack["text"]
    assert slack["blocks"][0]["type"] == "header" and "<https://ci.example/9|report>" in str(slack["blocks"])
    [generic] = receiver.bodies(f"/g/{SECRET}")
    assert generic["kind"] == "gameday.halted" and generic["result"]["verdict"] == "halted"
    assert all(SECRET not in line for line in said) and len(said) == 2


def test_a_failing_receiver_is_a_warning_after_one_retry(receiver: Receiver) -> None:
    receiver.status = 503
    said: list[str] = []
    Notifier([destination(f"{receiver.url}/g/{SECRET}")], said.append).send(Event.FINISHED, result())
    assert len(receiver.received) == 2  # one retry
    [warning] = said
    assert "WARNING" in warning and "HTTP 503" in warning and "webhook 127.0.0.1" in warning and SECRET not in warning


def test_an_unreachable_receiver_is_a_warning(receiver: Receiver) -> None:
    said: list[str] = []
    url = f"http://127.0.0.1:1/{SECRET}"
    Notifier([destination(url)], said.append).send(Event.FINISHED, result())
    assert "ConnectError" in said[0] and SECRET not in said[0]


def test_http_stop_fires_after_consecutive_failures_only(receiver: Receiver) -> None:
    [check] = checkers(StopConditions(http=[HttpStop(url=f"{receiver.url}/healthz", failures=2)]),
                       None, started=time.time(), prometheus_url=None)  # type: ignore[arg-type]
    assert check.check() is None  # healthy
    receiver.status = 503
    assert check.check() is None  # one failure
    receiver.status = 200
    assert check.check() is None  # healthy again: the count starts over
    receiver.status = 503
    assert check.check() is None
    assert check.check() == "answered 503 2 times running"


def test_http_stop_counts_an_unreachable_health_url() -> None:
    [check] = checkers(StopConditions(http=[HttpStop(url="http://127.0.0.1:1/healthz", failures=1)]),
                       None, started=time.time(), prometheus_url=None)  # type: ignore[arg-type]
    assert check.check() == "answered ConnectError 1 times running"


def test_prometheus_stop_fires_on_a_non_empty_answer(start_prometheus: Callable[[list[str]], str]) -> None:
    prometheus = start_prometheus([])
    conditions = StopConditions(prometheus=[PrometheusStop(query='up{job="nothing"}'),
                                            PrometheusStop(query='vector(1) > 0')])
    quiet, firing = checkers(conditions, None, started=time.time(), prometheus_url=prometheus)  # type: ignore[arg-type]
    assert quiet.check() is None
    assert "returned 1 series" in (firing.check() or "")


def test_the_monitor_pulls_the_halt_switch_on_the_wall_clock() -> None:
    halt = HaltSwitch()
    monitor = StopMonitor(StopConditions(max_duration=0.5), None, halt, started=time.time(),  # type: ignore[arg-type]
                          prometheus_url=None, scenario=lambda: "s1")
    monitor.start()
    deadline = time.monotonic() + 5
    while halt.reason is None and time.monotonic() < deadline:
        time.sleep(0.05)
    monitor.stop()
    [firing] = monitor.firings
    assert firing.kind is StopKind.WALL_CLOCK and firing.scenario == "s1"
    assert halt.reason is not None and "over its limit" in halt.reason


def test_the_scorecard_and_junit_never_look_green_when_halted() -> None:
    from io import StringIO

    from rich.console import Console

    from loadkit.gameday.models import StopFiring
    from loadkit.report.gameday import gameday_junit, render_gameday

    halted = result(GameDayVerdict.HALTED).model_copy(update={
        "reason": "load stop condition request-success-rate: 12% over the last 2s",
        "stops": [StopFiring(kind=StopKind.LOAD, condition="request-success-rate (min 90, over 2s)",
                             at=datetime.now(UTC), reason="12% over the last 2s", scenario="latency")]})
    halted.scenarios[0] = halted.scenarios[0].model_copy(update={"status": ScenarioStatus.HALTED, "score": 0.0})
    out = StringIO()
    render_gameday(halted, Console(file=out, width=200))
    text = out.getvalue()
    assert "HALTED" in text and "resilience score 50" in text and "during latency" in text
    xml = gameday_junit(halted)
    assert 'errors="1"' in xml and "<error" in xml
