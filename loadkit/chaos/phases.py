"""Load through the phases of an experiment: pure functions of stamped windows and times.

- phase stats: the exact stats (merged HdrHistograms) of the windows in a time range;
- availability: the fault window's success rate (5xx and connection errors are downtime);
- recovery time: from the fault's start until the load thresholds hold again over a whole
  `window_s` (a sustained recovery, not one lucky second); 0 when they never broke.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadkit.chaos.live import Stamped
from loadkit.load._window import merge_summaries
from loadkit.models import Stats, Threshold
from loadkit.scoring import client_thresholds, evaluate, observations_from_stats


def phase_stats(windows: Sequence[Stamped], start: float | None, end: float | None) -> Stats:
    """Stats of the windows that ended in (start, end]."""
    parts = [w for w in windows if (start is None or w.at > start) and (end is None or w.at <= end)]
    return _merge(parts)


def recovery_time(windows: Sequence[Stamped], fault_start: float, thresholds: Sequence[Threshold],
                  window_s: float = 5.0, min_samples: int = 10) -> float | None:
    """Seconds from `fault_start` to the start of the first `window_s` span in which every
    threshold holds; None if that never happened before the load ended."""
    after = [w for w in windows if w.at > fault_start]
    for i, first in enumerate(after):
        begins = first.at - first.snapshot.window.duration_s
        span = [w for w in after[i:] if w.at <= begins + window_s + 0.5]
        if span[-1].at - begins < window_s - 0.5:
            return None  # not enough load left to show a sustained recovery
        stats = _merge(span)
        if stats.requests >= min_samples and _holds(stats, thresholds, min_samples):
            return max(0.0, begins - fault_start)
    return None


def _holds(stats: Stats, thresholds: Sequence[Threshold], min_samples: int) -> bool:
    card = evaluate(client_thresholds(thresholds), observations_from_stats(stats), min_samples)
    return all(c.passed for c in card.checks)


def _merge(parts: Sequence[Stamped]) -> Stats:
    merged = merge_summaries([(w.snapshot.window.model_dump(), w.snapshot.window_histogram) for w in parts],
                             duration_s=sum(w.snapshot.window.duration_s for w in parts))
    return Stats.model_validate(merged)
