"""The resilience score: table tests of the pure formula."""

from __future__ import annotations

import pytest

from loadkit.scoring import Scored, category_scores, resilience_score, scenario_score


@pytest.mark.parametrize(("passed", "counted", "ran", "expected"), [
    (5, 5, True, 100.0),
    (0, 4, True, 0.0),
    (2, 3, True, 66.7),
    (3, 4, True, 75.0),
    (4, 4, False, 0.0),  # halted / interrupted / skipped: 0 whatever passed before
    (0, 0, True, 0.0),  # no check: nothing shows it held
], ids=["all", "none", "two-of-three", "three-of-four", "not-run", "no-checks"])
def test_scenario_score(passed: int, counted: int, ran: bool, expected: float) -> None:
    assert scenario_score(passed, counted, ran) == expected


def test_scenario_score_refuses_more_passed_than_counted() -> None:
    with pytest.raises(ValueError, match="between 0"):
        scenario_score(5, 4)


@pytest.mark.parametrize(("scenarios", "expected"), [
    ([], 0.0),
    ([Scored(80.0, 1, "network")], 80.0),
    ([Scored(100.0, 3, "network"), Scored(50.0, 1, "network")], 87.5),
    ([Scored(100.0, 1, "a"), Scored(0.0, 1, "b")], 50.0),
    ([Scored(100.0, 9, "a"), Scored(0.0, 1, "b")], 90.0),
    ([Scored(100.0, 2, "a"), Scored(0.0, 10, "b")], 16.7),  # a halted heavy scenario stays in the denominator
], ids=["empty", "one", "weighted", "equal-weights", "heavy-pass", "heavy-not-run"])
def test_resilience_score(scenarios: list[Scored], expected: float) -> None:
    assert resilience_score(scenarios) == expected


def test_skipping_never_raises_the_score() -> None:
    ran = [Scored(60.0, 2, "network")]
    assert resilience_score([*ran, Scored(0.0, 5, "resources")]) < resilience_score(ran)


@pytest.mark.parametrize(("scenarios", "expected"), [
    ([], {}),
    ([Scored(100.0, 2, "redundancy"), Scored(40.0, 3, "network"), Scored(0.0, 1, "network")],
     {"redundancy": 100.0, "network": 30.0}),
    ([Scored(50.0, 1, "dependencies"), Scored(100.0, 1, "dependencies")], {"dependencies": 75.0}),
], ids=["empty", "two-categories", "one-category"])
def test_category_scores(scenarios: list[Scored], expected: dict[str, float]) -> None:
    assert category_scores(scenarios) == expected
