"""The latency percentile curve straight from a result's HdrHistogram: every recorded value, not
re-bucketed.

Each point is (x, latency ms) with x = 1/(1 - p) for the cumulative share p of requests at or below
that value (HdrHistogram's own plot: 10 is p90, 100 p99, 1000 p99.9); the last value, p = 1, is
placed at 2·n, half a request past the next-to-last step. Values are the upper edges of their
buckets (HdrHistogram's convention, as the reported p99 is), in ms.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

DIGITS = 3


def percentile_curve(encoded: str) -> list[tuple[float, float]]:
    """[(1/(1-p), ms)] for every distinct recorded value of the base64 HdrHistogram (µs)."""
    hist = HdrHistogram.decode(encoded)
    total = hist.get_total_count()
    if not total:
        return []
    points: list[tuple[float, float]] = []
    seen = 0
    for item in hist.get_recorded_iterator():
        seen += item.count_at_value_iterated_to
        value_ms = round(hist.get_highest_equivalent_value(item.value_iterated_to) / 1000.0, DIGITS)
        share = seen / total
        x = 2.0 * total if share >= 1.0 else 1.0 / (1.0 - share)
        points.append((round(x, DIGITS), value_ms))
    return points
