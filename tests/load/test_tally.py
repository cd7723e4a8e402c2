"""tally_of: request counts from Stats, latency counts from a real HdrHistogram, never rounded in."""

from __future__ import annotations

import random

import pytest

from loadkit.analysis import tally_of
from loadkit.load._window import Window, decode_histogram
from loadkit.models.wire import Stats
from loadkit.scoring import LatencyBound

# Buckets (µs): 499 ms in [498944, 499199]; 499.98, 500 and 500.2 ms share [499968, 500223]; 501 ms in
# [500992, 501247]. Only whole buckets beyond a bound count.
SAMPLES_MS = {499.0: 3, 499.98: 4, 500.0: 5, 500.2: 6, 501.0: 7, 600.0: 8}


def recorded(samples: dict[float, int], status: int = 200) -> Window:
    w = Window()
    for ms, n in samples.items():
        for _ in range(n):
            w.record("GET", "/", ms, status, None)
    return w


def stats_of(w: Window) -> Stats:
    return Stats(**w.summary(1.0))


def reference(encoded: str, bounds: list[LatencyBound]) -> dict[LatencyBound, int]:
    """The rule read straight off hdrh's recorded iterator: whole buckets beyond each bound."""
    hist = decode_histogram(encoded)
    buckets = [(hist.get_lowest_equivalent_value(item.value_iterated_to),
                hist.get_highest_equivalent_value(item.value_iterated_to), item.count_added_in_this_iter_step)
               for item in hist.get_recorded_iterator()]
    return {b: sum(n for low, high, n in buckets if (low > b.bound_ms * 1000 if b.above else high < b.bound_ms * 1000))
            for b in bounds}


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        pytest.param(LatencyBound(500.0, above=True), 7 + 8, id="over-500-not-its-own-bucket"),
        pytest.param(LatencyBound(500.0, above=False), 3, id="under-500-not-its-own-bucket"),
        pytest.param(LatencyBound(499.0, above=True), 4 + 5 + 6 + 7 + 8, id="over-499-not-its-own-bucket"),
        pytest.param(LatencyBound(499.0, above=False), 0, id="under-499-none"),
        pytest.param(LatencyBound(500.1, above=True), 7 + 8, id="fractional-bound-over"),
        pytest.param(LatencyBound(500.1, above=False), 3, id="fractional-bound-under"),
        pytest.param(LatencyBound(499.1995, above=False), 3, id="just-past-the-top-of-499s-bucket"),
        pytest.param(LatencyBound(500.9915, above=True), 7 + 8, id="just-short-of-the-bottom-of-501s-bucket"),
        pytest.param(LatencyBound(600.0, above=True), 0, id="over-600-none"),
        pytest.param(LatencyBound(600.0, above=False), 3 + 4 + 5 + 6 + 7, id="under-600-not-its-own-bucket"),
        pytest.param(LatencyBound(601.0, above=False), 3 + 4 + 5 + 6 + 7 + 8, id="under-601-all"),
        pytest.param(LatencyBound(0.0, above=True), 33, id="over-0-all"),
        pytest.param(LatencyBound(10_000.0, above=False), 33, id="under-10s-all"),
    ],
)
def test_latency_counts_are_whole_buckets_beyond_the_bound(bound: LatencyBound, expected: int) -> None:
    w = recorded(SAMPLES_MS)
    tally = tally_of(stats_of(w), w.encoded_histogram(), [bound])
    assert tally.beyond == {bound: expected}
    assert tally.timed == 33


def test_a_value_in_the_bounds_bucket_is_not_beyond_it() -> None:
    over, under = LatencyBound(500.0, True), LatencyBound(500.0, False)
    for ms in (499.98, 500.0, 500.2):
        w = recorded({ms: 10})
        assert tally_of(stats_of(w), w.encoded_histogram(), [over, under]).beyond == {over: 0, under: 0}, ms
    w = recorded({501.0: 10, 499.0: 2})
    assert tally_of(stats_of(w), w.encoded_histogram(), [over, under]).beyond == {over: 10, under: 2}


def test_request_counts_follow_flagger_and_the_error_rate() -> None:
    w = recorded({100.0: 90})
    w.merge(recorded({100.0: 4}, status=503))
    w.record("GET", "/", 50.0, 404, "HTTP 404")
    w.record("GET", "/", 0.0, 0, ConnectionRefusedError())
    w.record("GET", "/", 0.0, 0, TimeoutError())
    w.on_locust_user_error(exception=AssertionError("bad body"))
    for _ in range(4):
        w.record("GET", "/", 100.0, 503, "HTTP 503")
    stats = stats_of(w)
    tally = tally_of(stats, w.encoded_histogram(), [])
    # 4 bare 503s (no exception) + 4 failed 503s + 2 no answers; the 404 is not a server failure
    assert (tally.requests, tally.server_failures, tally.errors, tally.timed) == (101, 10, 8, 99)
    assert tally.beyond == {}


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        pytest.param(
            Stats(requests=10, failures=3, exceptions=2, status_codes={"200": 7, "500": 2, "0": 1}),
            (10, 3, 5, 0),
            id="5xx-and-no-answer"
        ),
        pytest.param(Stats(requests=10, failures=9, exceptions=5, status_codes={"599": 9, "200": 1}), (10, 9, 10, 0),
                     id="errors-clamped-to-requests"),
        pytest.param(Stats(requests=5, status_codes={"200": 3, "404": 1, "600": 1}), (5, 0, 0, 0),
                     id="4xx-and-600-are-not-5xx"),
        pytest.param(Stats(), (0, 0, 0, 0), id="empty"),
    ],
)
def test_counts_without_a_histogram(stats: Stats, expected: tuple[int, int, int, int]) -> None:
    bound = LatencyBound(500.0, True)
    tally = tally_of(stats, "", [bound])
    assert (tally.requests, tally.server_failures, tally.errors, tally.timed) == expected
    assert tally.beyond == {bound: 0}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_the_recorded_iterator_on_random_latencies(seed: int) -> None:
    rng = random.Random(seed)
    w = Window()
    for _ in range(3000):
        w.record("GET", "/", rng.lognormvariate(4.5, 1.2), 200, None)
    encoded = w.encoded_histogram()
    bounds = [LatencyBound(rng.uniform(0.5, 3000.0), rng.random() < 0.5) for _ in range(40)]
    bounds += [LatencyBound(ms, above) for ms in (1.0, 2.047, 2.048, 100.0, 262.144) for above in (True, False)]
    tally = tally_of(stats_of(w), encoded, bounds)
    assert tally.beyond == reference(encoded, bounds)
    assert tally.timed == 3000
