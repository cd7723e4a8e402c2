"""Load through the phases of an experiment: pure functions of stamped windows and times.

- phase stats: the exact stats (merged HdrHistograms) of the windows in a time range;
- rolling spans: every run of consecutive windows covering `window_s` inside a range, so a short
  burst is judged over a few seconds and is not averaged away over a long fault;
- the worst span for a threshold, the time to detect (the end of the first span in which a load
  threshold broke) and the time to recover (from the fault's removal until the thresholds hold
  over a whole span again: a sustained recovery, not one lucky second).

A span counts only if it holds at least `WINDOW_MIN_REQUESTS` requests (the threshold's own
`min_samples` is for whole phases, not for a few seconds); too few, and it tells nothing.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from loadkit.chaos.live import Stamped
from loadkit.load._window import merge_summaries
from loadkit.models.specs import Metric, Threshold, ThresholdRange
from loadkit.models.wire import Stats
from loadkit.scoring import UNITS, Observation, client_thresholds, evaluate, observations_from_stats

WINDOW_MIN_REQUESTS = 10  # per rolling window: fewer and one request decides it; raise the users
_SLACK_S = 0.5  # snapshots arrive about once a second, not exactly on it
WINDOW_SLACK_S = _SLACK_S


@dataclass(frozen=True)
class Span:
    """Consecutive windows: they cover (start, end] and their merged stats."""

    start: float
    end: float
    stats: Stats


class Recovery(enum.Enum):
    """Why no recovery time was found (see `recovery`)."""

    NOT_RECOVERED = "not recovered"  # whole, well-loaded windows followed; the thresholds never held over one
    THIN = "thin"  # whole windows followed, none with WINDOW_MIN_REQUESTS requests
    SHORT = "short"  # the load stopped before a whole window followed


def phase_stats(windows: Sequence[Stamped], start: float | None, end: float | None) -> Stats:
    """Stats of the windows that ended in (start, end]."""
    return _merge(_between(windows, start, end))


def rolling_spans(windows: Sequence[Stamped], start: float | None, end: float | None,
                  window_s: float) -> list[Span]:
    """Every span of consecutive windows ending in (start, end] that covers `window_s`, in time
    order. A range shorter than `window_s` is one span: all of it (a burst cannot hide there)."""
    inside = _between(windows, start, end)
    spans = [span for i in range(len(inside)) if (span := _span(inside[i:], window_s)) is not None]
    if not spans and inside:
        spans = [Span(_begins(inside[0]), inside[-1].at, _merge(inside))]
    return spans


def loaded(spans: Sequence[Span], min_requests: int = WINDOW_MIN_REQUESTS) -> list[Span]:
    return [s for s in spans if s.stats.requests >= min_requests]


def worst_span(spans: Sequence[Span], metric: Metric, bounds: ThresholdRange) -> tuple[Span, float] | None:
    """The span where `metric` is furthest outside `bounds` (or closest to them), and its value;
    the earliest on a tie. None when no span has a value for it."""
    valued = [(s, v) for s in spans if (v := window_value(s.stats, metric)) is not None]
    if not valued:
        return None
    return min(valued, key=lambda sv: _margin(sv[1], bounds))


def span_observations(stats: Stats) -> dict[Metric, Observation]:
    """Every metric a span has a value for: the client metrics, and availability (its success rate)."""
    observations = dict(observations_from_stats(stats))
    observations[Metric.AVAILABILITY] = Observation(stats.success_rate_pct if stats.requests else None,
                                                    stats.requests, UNITS[Metric.AVAILABILITY])
    return observations


def window_value(stats: Stats, metric: Metric) -> float | None:
    observation = span_observations(stats).get(metric)
    return observation.value if observation else None


def detect_time(spans: Sequence[Span], fault_start: float, thresholds: Sequence[Threshold],
                min_requests: int = WINDOW_MIN_REQUESTS) -> float | None:
    """Seconds from `fault_start` to the end of the first well-loaded span in which a load
    threshold broke; None if none did."""
    for span in loaded(spans, min_requests):
        if not holds(span.stats, thresholds, min_requests):
            return max(0.0, span.end - fault_start)
    return None


def recovery(windows: Sequence[Stamped], since: float, thresholds: Sequence[Threshold], window_s: float = 5.0,
             min_requests: int = WINDOW_MIN_REQUESTS) -> float | Recovery:
    """Seconds from `since` (the fault's removal) to the start of the first `window_s` span after
    it in which every load threshold holds; else why there was none."""
    after = [w for w in windows if w.at > since]
    why = Recovery.SHORT
    for i in range(len(after)):
        span = _span(after[i:], window_s)
        if span is None:
            break  # not enough load left for a whole window
        if span.stats.requests < min_requests:
            why = Recovery.THIN if why is Recovery.SHORT else why
            continue
        if holds(span.stats, thresholds, min_requests):
            return max(0.0, span.start - since)
        why = Recovery.NOT_RECOVERED
    return why


def load_after(windows: Sequence[Stamped], since: float) -> float:
    """Seconds of load that followed `since`."""
    return max((w.at - since for w in windows if w.at > since), default=0.0)


def holds(stats: Stats, thresholds: Sequence[Threshold], min_requests: int = WINDOW_MIN_REQUESTS) -> bool:
    """Every client-side threshold holds over these stats (judged with `min_requests`, not the
    thresholds' own min_samples, which are meant for a whole phase)."""
    judged = [t.model_copy(update={"min_samples": None}) for t in client_thresholds(thresholds)
              if t.resolved_metric is not Metric.RECOVERY_TIME]
    card = evaluate(judged, span_observations(stats), min_requests)
    return all(c.passed for c in card.checks)


def _margin(value: float, bounds: ThresholdRange) -> float:
    """How far inside the bounds a value is (negative: outside)."""
    margins = [value - bounds.min] if bounds.min is not None else []
    margins += [bounds.max - value] if bounds.max is not None else []
    return min(margins)


def _between(windows: Sequence[Stamped], start: float | None, end: float | None) -> list[Stamped]:
    return [w for w in windows if (start is None or w.at > start) and (end is None or w.at <= end)]


def _begins(window: Stamped) -> float:
    return window.at - window.snapshot.window.duration_s


def _span(windows: Sequence[Stamped], window_s: float) -> Span | None:
    """The whole `window_s` span that starts with windows[0], or None when the windows run out first."""
    begins = _begins(windows[0])
    parts = list(itertools.takewhile(lambda w: w.at <= begins + window_s + _SLACK_S, windows))
    if parts[-1].at - begins < window_s - _SLACK_S:
        return None
    return Span(begins, parts[-1].at, _merge(parts))


def _merge(parts: Sequence[Stamped]) -> Stats:
    merged = merge_summaries([(w.snapshot.window.model_dump(), w.snapshot.window_histogram) for w in parts],
                             duration_s=sum(w.snapshot.window.duration_s for w in parts))
    return Stats.model_validate(merged)
