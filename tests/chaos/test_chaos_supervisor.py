"""What stops a chaos run early without a signal: the supervisor's decisions, clock given."""

from __future__ import annotations

import pytest

from loadkit.chaos.gate import Phase
from loadkit.chaos.signals import RunControl, Supervisor

T = 1_000.0


def supervisor(phase: Phase, *, attempt: float | None = T, load: bool = True, expiry: float | None = None,
               max_fault_s: float = 5.0) -> Supervisor:
    control = RunControl()
    control.phase = phase
    return Supervisor(control, lambda: attempt, lambda: load, max_fault_s, grace_s=30.0, expiry=lambda: expiry)


@pytest.mark.parametrize(("given", "now", "words"), [
    ({}, T + 4.9, None),
    ({}, T + 5.1, "over --max-fault-duration (5s)"),
    ({"attempt": None}, T + 60, None),  # nothing attempted: no fault to time
    ({"load": False}, T, "the load stopped"),
    ({"expiry": T + 3}, T + 3.0, "reached its own expiry"),
    ({"expiry": T + 3}, T + 2.9, None),
], ids=["within", "over-the-max", "no-fault", "load-stopped", "expired", "not-yet-expired"])
def test_the_experiment_is_stopped_when(given: dict[str, object], now: float, words: str | None) -> None:
    decision = supervisor(Phase.METHOD, **given).check(now)  # type: ignore[arg-type]
    if words is None:
        assert decision is None
    else:
        assert decision is not None and decision[0] == "stop" and words in decision[1], decision


def test_rollbacks_still_running_after_the_watchdog_are_abandoned() -> None:
    watch = supervisor(Phase.METHOD)
    assert watch.check(T + 6) is not None
    watch.control.phase = Phase.ROLLBACKS
    assert watch.check(T + 20) is None  # within the grace
    decision = watch.check(T + 37)
    assert decision is not None and decision[0] == "abandon"


def test_after_the_experiment_nothing_is_stopped() -> None:
    for phase in (Phase.CLEANUP, Phase.COOLDOWN, Phase.AFTER, Phase.REPORT):
        assert supervisor(phase, load=False, expiry=T).check(T + 100) is None
