"""Exact statistics: what counts as a failure, and percentiles that are never rounded down."""

from __future__ import annotations

import random

import pytest

from loadkit.load._window import (
    MAX_ERROR_MESSAGES,
    OTHER_MESSAGES,
    Window,
    decode_histogram,
    endpoint_rows,
    failure_kind,
    new_histogram,
    values_at_percentiles,
)


def filled(samples: list[tuple[float, int]], failures: set[int] | None = None) -> Window:
    w = Window()
    for i, (ms, status) in enumerate(samples):
        failed = (failures is not None and i in failures) or status == 0 or status >= 400
        w.record("GET", "/", ms, status, ConnectionRefusedError() if status == 0 else ("HTTP" if failed else None))
    return w


def test_a_504ms_p99_is_not_stored_as_500() -> None:
    w = filled([(10.0, 200)] * 98 + [(504.0, 200)] * 2)
    s = w.summary(1.0)
    assert 504.0 <= s["p99_ms"] <= 504.0 * 1.001


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_are_within_0_1pct_above_the_exact_value(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(3, 1) for _ in range(5000)]
    s = filled([(v, 200) for v in values]).summary(1.0)
    ordered = sorted(values)
    for pct, key in ((50, "p50_ms"), (95, "p95_ms"), (99, "p99_ms")):
        exact = ordered[int(pct / 100 * len(ordered) + 0.5) - 1]
        assert exact <= s[key] + 0.001 <= exact * 1.001 + 0.002


@pytest.mark.parametrize(
    ("status", "kind"),
    [(0, "connection"), (503, "http_5xx"), (500, "http_5xx"), (404, "http_4xx"), (200, "other")],
)
def test_failure_kinds(status: int, kind: str) -> None:
    assert failure_kind(status, ConnectionRefusedError() if status == 0 else "x") == kind


def test_timeouts_are_their_own_kind() -> None:
    assert failure_kind(0, TimeoutError()) == "timeout"


def test_success_rate_follows_flagger_error_rate_counts_every_failure() -> None:
    samples = [(5.0, 200)] * 90 + [(5.0, 503)] * 4 + [(5.0, 404)] * 5 + [(0.0, 0)]
    s = filled(samples).summary(2.0)
    assert s["requests"] == 100 and s["failures"] == 10
    assert s["success_rate_pct"] == 95.0  # 4 x 5xx + 1 connection error; 4xx are not Flagger failures
    assert s["error_rate_pct"] == 10.0
    assert s["status_codes"] == {"0": 1, "200": 90, "404": 5, "503": 4}
    assert s["status_classes"] == {"2xx": 90, "4xx": 5, "5xx": 4, "no_response": 1}
    assert s["failures_by_kind"] == {"connection": 1, "http_4xx": 5, "http_5xx": 4}
    assert s["rps"] == 50.0


def test_connection_errors_have_no_latency() -> None:
    s = filled([(0.0, 0)] * 10).summary(1.0)
    assert s["p99_ms"] is None and s["success_rate_pct"] == 0.0


def test_empty_window() -> None:
    s = Window().summary(1.0)
    assert s["requests"] == 0 and s["p50_ms"] is None and s["success_rate_pct"] is None


def test_wire_roundtrip_and_merge_are_exact() -> None:
    a = filled([(float(i), 200) for i in range(1, 500)])
    b = filled([(float(i), 503) for i in range(500, 1000)])
    merged = Window()
    merged.merge(Window.from_wire(a.to_wire()))
    merged.merge(Window.from_wire(b.to_wire()))
    direct = filled([(float(i), 200) for i in range(1, 500)] + [(float(i), 503) for i in range(500, 1000)])
    assert merged.summary(1.0) == direct.summary(1.0)
    assert merged.errors == direct.errors


def test_take_moves_everything_and_resets() -> None:
    w = filled([(1.0, 200), (2.0, 500)])
    taken = w.take()
    assert taken.requests == 2 and taken.failures == 1 and taken.hist.get_total_count() == 2
    assert w.requests == 0 and w.hist.get_total_count() == 0 and not w.codes


def test_failure_messages_are_counted_and_bounded() -> None:
    w = Window()
    for i in range(200):
        w.record("GET", f"/p{i}", 1.0, 500, f"HTTP 500 number {i}")
    w.record("GET", "/p0", 1.0, 500, "HTTP 500 number 0")
    assert len(w.errors) == 51  # 50 messages and the other ones' row
    assert w.errors["GET /p0: HTTP 500 number 0"] == 2
    assert w.errors[OTHER_MESSAGES] == 150 and sum(w.errors.values()) == 201


def test_the_error_table_keeps_the_most_frequent_and_drops_no_count() -> None:
    # review finding 9: 60 distinct 404s, then 1000 identical 503s over 10 windows: the 503 is kept, exactly
    window, total = Window(), Window()
    for i in range(60):
        window.record("GET", f"/missing/{i}", 1.0, 404, f"HTTP 404 for id {i}")
    total.merge(window.take())
    for _second in range(10):
        for _ in range(100):
            window.record("GET", "/", 1.0, 503, "HTTP 503")
        total.merge(window.take())
    assert total.errors["GET /: HTTP 503"] == 1000
    assert sum(total.errors.values()) == 1060 == total.failures
    assert len(total.errors) == MAX_ERROR_MESSAGES + 1 and total.errors[OTHER_MESSAGES] == 11


def test_inline_recording_matches_hdrhistogram_record_value() -> None:
    from loadkit.load._window import HIGHEST_US, new_histogram

    rng = random.Random(7)
    values_us = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 500_000, 504_000, HIGHEST_US - 1, HIGHEST_US]
    values_us += [int(rng.lognormvariate(8, 3)) % HIGHEST_US for _ in range(20_000)]
    reference = new_histogram()
    window = Window()
    for us in values_us:
        ms = us / 1000.0  # Locust reports milliseconds as a float
        reference.record_value(min(int(ms * 1000.0), HIGHEST_US))
        window.record("GET", "/", ms, 200, None)
    hist = window.hist
    assert list(hist.counts) == list(reference.counts)
    assert (hist.get_total_count(), hist.get_min_value(), hist.get_max_value()) == (
        reference.get_total_count(), reference.get_min_value(), reference.get_max_value())
    assert hist.encode() == reference.encode()


def test_samples_longer_than_an_hour_are_clamped() -> None:
    from loadkit.load._window import HIGHEST_US

    w = filled([(HIGHEST_US / 1000.0 * 2, 200)])
    assert w.hist.get_total_count() == 1
    assert w.summary(1.0)["max_ms"] >= HIGHEST_US / 1000.0


def test_summaries_with_histograms_merge_exactly() -> None:
    from loadkit.load._window import merge_summaries

    a = filled([(float(i), 200) for i in range(1, 300)] + [(5.0, 503)] * 3)
    b = filled([(float(i), 200) for i in range(300, 600)] + [(0.0, 0)])
    both = filled([(float(i), 200) for i in range(1, 300)] + [(5.0, 503)] * 3
                  + [(float(i), 200) for i in range(300, 600)] + [(0.0, 0)])
    merged = merge_summaries([(a.summary(1.0), a.encoded_histogram()), (b.summary(1.0), b.encoded_histogram())], 2.0)
    assert merged == both.summary(2.0)


def test_endpoint_percentiles_are_never_below_the_runs_and_at_most_1_6pct_above() -> None:
    rng = random.Random(4)
    w = filled([(rng.lognormvariate(3, 1.5), 200) for _ in range(20_000)])
    run = w.summary(1.0)
    row = endpoint_rows(w.endpoints)[0]
    for value, key in zip(row[4:8], ("p50_ms", "p95_ms", "p99_ms", "max_ms"), strict=True):
        assert run[key] <= value <= run[key] * 1.016 + 0.002, (key, value, run[key])
    assert len(w.endpoints[("GET", "/")][2]) < 20_000 / 16  # groups of 16 buckets, not one entry a request


def test_percentiles_in_one_pass_are_hdrh_s_own() -> None:
    """values_at_percentiles is hdrh's get_value_at_percentile, value for value, also on a decoded histogram."""
    rng = random.Random(7)
    for trial in range(60):
        hist = new_histogram()
        for _ in range(rng.choice([1, 3, 200, 5000])):
            hist.record_value(int(rng.lognormvariate(rng.uniform(2, 12), rng.uniform(0.1, 3))) + 1)
        if trial % 2:
            hist = decode_histogram(hist.encode())
        wanted = [0.0, 1.0, 50.0, 95.0, 99.0, 99.9, 100.0, rng.uniform(0, 100)]
        assert values_at_percentiles(hist, wanted) == {p: hist.get_value_at_percentile(p) for p in wanted}
    assert values_at_percentiles(new_histogram(), [50.0]) == {50.0: new_histogram().get_value_at_percentile(50.0)}
