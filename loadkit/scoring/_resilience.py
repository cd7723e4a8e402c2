"""The resilience score of a game day, Litmus-style: pure arithmetic, no I/O, no clock.

A scenario's score is the share of its checks that passed (0-100); a scenario that did not run to
its end (halted, interrupted, skipped) scores 0 and stays in the denominator, so stopping early can
never raise a score. The game day's score is the weighted mean Σ wᵢ·sᵢ / Σ wᵢ; each category's score
is the same formula over the scenarios of that category.

    >>> resilience_score([Scored(100.0, 3, "network"), Scored(50.0, 1, "network")])
    87.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    """One scenario as the score sees it: its score (0-100), its weight (1-10) and its category."""

    score: float
    weight: int
    category: str


def scenario_score(passed: int, counted: int, ran: bool = True) -> float:
    """% of a scenario's counted checks that passed; 0 when it did not run to its end or had no check."""
    if not ran or counted <= 0:
        return 0.0
    if not 0 <= passed <= counted:
        raise ValueError(f"passed ({passed}) must be between 0 and the checks counted ({counted})")
    return round(100.0 * passed / counted, 1)


def resilience_score(scenarios: Sequence[Scored]) -> float:
    """Σ wᵢ·sᵢ / Σ wᵢ over the scenarios (0 for none)."""
    total = sum(s.weight for s in scenarios)
    if total <= 0:
        return 0.0
    return round(sum(s.weight * s.score for s in scenarios) / total, 1)


def category_scores(scenarios: Sequence[Scored]) -> dict[str, float]:
    """The same formula within each category, in the order the categories first appear."""
    categories = list(dict.fromkeys(s.category for s in scenarios))
    return {c: resilience_score([s for s in scenarios if s.category == c]) for c in categories}
