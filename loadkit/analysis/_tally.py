"""From a window's Stats and HdrHistogram to the counts the decisive-breach rule tests.

Runs once a second per run, so it reads the histogram's counts array directly: hdrh's recorded
iterator is pure Python and walks every bucket up to the slowest request (~100 ms a call).

Latency counts are conservative: a request counts as beyond a bound only when its whole bucket is
(3 significant digits: 500.2 ms shares 500 ms's bucket, [499.968, 500.223] ms, so it is neither
over nor under 500 ms). A decisive breach never rests on the histogram's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from loadkit.load._window import decode_histogram
from loadkit.models.wire import Stats
from loadkit.scoring import LatencyBound, Tally


def tally_of(stats: Stats, encoded_histogram: str, bounds: Sequence[LatencyBound]) -> Tally:
    """Counts of one window (or run): its Stats and its base64 HdrHistogram of latencies (µs).

        tally_of(snapshot.window, snapshot.window_histogram, tracker.bounds)
    """
    n = stats.requests
    server = sum(count for code, count in stats.status_codes.items() if _is_server_failure(code))
    errors = stats.failures + stats.exceptions
    if not encoded_histogram:
        return Tally(n, min(server, n), min(errors, n), 0, dict.fromkeys(bounds, 0))
    import numpy as np  # here, not at import: keeps `loadkit --help` fast

    hist = decode_histogram(encoded_histogram)
    counts = np.ctypeslib.as_array(hist.counts)  # a view, not a copy
    beyond = {b: _beyond(hist, counts, b) for b in bounds}
    return Tally(n, min(server, n), min(errors, n), int(hist.get_total_count()), beyond)


def _is_server_failure(code: str) -> bool:
    """Flagger's failures: no answer ("0") and 5xx."""
    return code == "0" or (len(code) == 3 and code.startswith("5") and code.isdigit())


def _beyond(hist: HdrHistogram, counts: Any, bound: LatencyBound) -> int:
    us = bound.bound_ms * 1000.0
    if us < 0:
        return int(hist.get_total_count()) if bound.above else 0
    # Buckets are ordered by value: those after the bound's bucket start above it, those before the
    # bucket of ceil(bound) end below it (bounds need not be whole microseconds).
    if bound.above:
        return int(counts[_index(hist, math.floor(us)) + 1:].sum())
    return int(counts[:_index(hist, math.ceil(us))].sum())


def _index(hist: HdrHistogram, value: int) -> int:
    """hdrh's counts index of `value` (its _counts_index_for), from the histogram's public layout."""
    bucket = (value | hist.sub_bucket_mask).bit_length() - hist.unit_magnitude - \
        hist.sub_bucket_half_count_magnitude - 1
    sub_bucket = value >> (bucket + hist.unit_magnitude)
    return int(((bucket + 1) << hist.sub_bucket_half_count_magnitude) + sub_bucket - hist.sub_bucket_half_count)
