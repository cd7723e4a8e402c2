"""The parent's timeline is bounded: at most MAX_POINTS rows of numbers, coarser past that, exact where
it can be (counts, rates from counts, generator health) and never optimistic where it cannot (percentiles)."""

from __future__ import annotations

import math
import random
import tracemalloc
from typing import Any

import pytest

from loadkit.analysis import assess_generator, timeline_point
from loadkit.load._timeline import FIELDS, MAX_POINTS, Timeline, merge_rows
from loadkit.load.shapes import RateStage
from loadkit.models.wire import Snapshot

KINDS = ("connection", "http_4xx", "http_5xx", "timeout")


def record(second: int, rng: random.Random, *, open_model: bool = False) -> dict[str, Any]:
    """A plugin snapshot line (parsed) with varied, self-consistent numbers, as `_Stream._handle` gets it."""
    n = 0 if rng.random() < 0.05 else rng.randint(1, 5000)
    kinds = {k: rng.randint(1, 1 + n // 50) for k in KINDS if n and rng.random() < 0.3}  # never 0: as the plugin
    failures, exceptions = sum(kinds.values()), rng.randint(0, 3) if n else 0
    bad = sum(kinds.get(k, 0) for k in ("connection", "http_5xx", "timeout"))
    duration = round(rng.uniform(0.9, 1.1), 3)
    p50 = rng.uniform(1, 50)
    p95, p99, top = p50 * 2, p50 * rng.uniform(2, 9), p50 * 20
    window: dict[str, Any] = {
        "requests": n, "failures": failures, "exceptions": exceptions, "rps": round(n / duration, 3),
        "p50_ms": p50 if n else None, "p95_ms": p95 if n else None, "p99_ms": p99 if n else None,
        "max_ms": top if n else None, "success_rate_pct": 100.0 * (n - bad) / n if n else None,
        "error_rate_pct": min(100.0, 100.0 * (failures + exceptions) / n) if n else None,
        "status_codes": {"200": n - failures, **({"503": kinds["http_5xx"]} if "http_5xx" in kinds else {})},
        "status_classes": {"2xx": n - failures}, "failures_by_kind": dict(sorted(kinds.items())),
        "duration_s": duration,
    }
    if open_model:
        window.update(iterations=n, dropped_iterations=rng.randint(0, 2), cut_off_iterations=0,
                      start_lag_p50_ms=rng.uniform(0, 5), start_lag_p99_ms=rng.uniform(5, 150),
                      start_lag_max_ms=200.0)
    return {"type": "snapshot", "elapsed_s": float(second), "users": 0 if second == 1 else rng.randint(1, 60),
            "rate": (50.0 if second > 1 else 0.0) if open_model else None,
            "cpu_pct": rng.choice([12.5, 60.0, 91.0, 99.5]), "lag_ms": rng.choice([0.4, 3.0, 120.0]),
            "window": window, "window_histogram": "HISTFAAAA" * 200,
            "cumulative": {**window, "requests": 4000 * second}, "workers": rng.choice([None, 3, 2])}


def snapshots(count: int, seed: int = 1, *, open_model: bool = False) -> list[Snapshot]:
    rng = random.Random(seed)
    out = []
    for s in range(1, count + 1):
        line = record(s, rng, open_model=open_model)
        line.pop("type")
        out.append(Snapshot.model_validate(line))
    return out


def filled(snaps: list[Snapshot], max_points: int = MAX_POINTS) -> Timeline:
    timeline = Timeline(max_points)
    for s in snaps:
        timeline.append(s)
    return timeline


def test_the_parent_holds_as_much_after_100k_seconds_as_after_20k() -> None:
    """100 000 seconds (28 hours) hold what 20 000 did: at most the timeline's rows. Before, every kept
    second was a pydantic Snapshot (about 1.9 KB each of these): 80 000 more seconds held ~150 MB more.
    (The stream's own per-second cost, its Timeline row, is tests/load/test_memory.py's.)"""
    seen = snapshots(500, seed=7)  # made before tracing: only what the timeline holds of them counts
    timeline = Timeline(max_points=1000)

    def feed(seconds: range) -> None:
        for s in seconds:
            timeline.append(seen[s % len(seen)])

    tracemalloc.start()
    try:
        feed(range(20_000))
        at_20k = tracemalloc.get_traced_memory()[0]
        feed(range(20_000, 100_000))
        at_100k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(timeline) <= 1001 and timeline.step == 128
    full = 1000 * 8 * (len(FIELDS) + len(KINDS))  # its 1000 rows of floats: the timeline's size at its largest
    assert at_20k < 1.5 * full and abs(at_100k - at_20k) < full // 4, (at_20k, at_100k, full)


def test_a_run_shorter_than_max_points_keeps_every_second_as_it_was() -> None:
    snaps = snapshots(300)
    timeline = filled(snaps)
    assert len(timeline) == 300 and timeline.step == 1
    assert [timeline_point(s).model_dump_json() for s in timeline] == [timeline_point(s).model_dump_json()
                                                                       for s in snaps]
    for kept, was in zip(timeline[:-1], snaps, strict=False):  # each window's numbers, bit for bit
        assert kept.window.model_dump() == {**was.window.model_dump(), "status_codes": {}, "status_classes": {}}
        assert kept.model_dump(exclude={"window", "window_histogram", "cumulative"}) == \
            was.model_dump(exclude={"window", "window_histogram", "cumulative"})
        assert kept.window_histogram == "" and kept.cumulative.requests == 0
    assert timeline[-1] is snaps[-1]  # the last one whole: the run's final figures


def test_the_last_snapshot_stays_whole_however_coarse_the_rest() -> None:
    snaps = snapshots(1000)
    timeline = filled(snaps, max_points=16)
    assert timeline[-1] is snaps[-1] and timeline[len(timeline) - 1] is snaps[-1]
    assert timeline[-1].window_histogram and timeline[-1].cumulative.requests == 4000 * 1000
    assert list(timeline)[-1] is snaps[-1]
    with pytest.raises(IndexError):
        timeline[len(timeline)]


@pytest.mark.parametrize("count", [5, 17, 64, 1000, 4097], ids=lambda n: f"{n}s")
@pytest.mark.parametrize("max_points", [4, 5, 16], ids=lambda n: f"max{n}")
def test_totals_over_a_coarsened_timeline_are_the_sums_of_its_seconds(count: int, max_points: int) -> None:
    snaps = snapshots(count, seed=count, open_model=True)
    timeline = filled(snaps, max_points)
    rows, kept = list(timeline)[:-1], snaps[:-1]
    assert timeline.rows <= max_points and len(timeline) == timeline.rows + 1
    for name in ("requests", "failures", "exceptions", "iterations", "dropped_iterations", "cut_off_iterations"):
        assert sum(getattr(r.window, name) for r in rows) == sum(getattr(s.window, name) for s in kept), name
    for kind in KINDS:
        assert sum(r.window.failures_by_kind.get(kind, 0) for r in rows) == \
            sum(s.window.failures_by_kind.get(kind, 0) for s in kept)
    assert sum(r.window.duration_s for r in rows) == pytest.approx(sum(s.window.duration_s for s in kept), abs=1e-6)
    assert [r.elapsed_s for r in rows] == sorted(r.elapsed_s for r in rows)
    assert rows[-1].elapsed_s == kept[-1].elapsed_s
    assert max(r.window.p99_ms or 0 for r in rows) == max(s.window.p99_ms or 0 for s in kept)
    for r in rows:  # rates recomputed from the summed counts, as the plugin computes a window's
        w = r.window
        assert w.rps == round(w.requests / w.duration_s, 3)
        if w.requests:
            assert w.error_rate_pct == min(100.0, 100.0 * (w.failures + w.exceptions) / w.requests)


def test_a_merged_row_is_as_slow_as_its_slowest_part() -> None:
    snaps = snapshots(6)  # 5 rows into 4: the first four merge in pairs
    timeline = filled(snaps, max_points=4)
    assert timeline.step == 2 and timeline.rows == 3
    first, second, third = timeline[0], timeline[1], timeline[2]
    for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        for row, parts in ((first, snaps[0:2]), (second, snaps[2:4])):
            values = [getattr(p.window, name) for p in parts if getattr(p.window, name) is not None]
            assert getattr(row.window, name) == (max(values) if values else None), name
    assert third.window == snaps[4].window.model_copy(update={"status_codes": {}, "status_classes": {}})
    assert (first.elapsed_s, second.elapsed_s, third.elapsed_s) == (2.0, 4.0, 5.0)
    assert first.users == max(snaps[0].users, snaps[1].users)


def row(*kinds: float, **fields: float) -> list[float]:
    """A timeline row: FIELDS in order (NaN for None), then the failures of each kind."""
    base = {"elapsed_s": 1.0, "users": 10.0, "rate": math.nan, "cpu_pct": 50.0, "lag_ms": 1.0, "workers": math.nan,
            "requests": 100.0, "failures": 0.0, "exceptions": 0.0, "rps": 100.0, "p50_ms": 5.0, "p95_ms": 9.0,
            "p99_ms": 20.0, "max_ms": 40.0, "success_rate_pct": 100.0, "error_rate_pct": 0.0, "duration_s": 1.0,
            "iterations": math.nan, "dropped_iterations": math.nan, "cut_off_iterations": math.nan,
            "start_lag_p50_ms": math.nan, "start_lag_p99_ms": math.nan, "start_lag_max_ms": math.nan}
    values = {**base, **fields}
    return [values[name] for name in FIELDS] + list(kinds)


NAN = math.nan


@pytest.mark.parametrize(("a", "b", "expected"), [
    pytest.param(row(requests=100.0, duration_s=1.0), row(requests=300.0, duration_s=1.0),
                 {"requests": 400.0, "duration_s": 2.0, "rps": 200.0}, id="counts-sum-rps-from-them"),
    pytest.param(row(requests=100.0, success_rate_pct=90.0), row(requests=300.0, success_rate_pct=100.0),
                 {"success_rate_pct": 97.5}, id="success-rate-from-the-failed-counts"),
    pytest.param(row(requests=100.0, failures=10.0, exceptions=5.0), row(requests=100.0, failures=100.0),
                 {"error_rate_pct": 57.5}, id="error-rate-from-counts"),
    pytest.param(row(requests=0.0, success_rate_pct=NAN, error_rate_pct=NAN, p99_ms=NAN),
                 row(requests=0.0, success_rate_pct=NAN, error_rate_pct=NAN, p99_ms=NAN),
                 {"success_rate_pct": NAN, "error_rate_pct": NAN, "p99_ms": NAN, "rps": 0.0}, id="no-requests-none"),
    pytest.param(row(p99_ms=NAN), row(p99_ms=30.0), {"p99_ms": 30.0, "p50_ms": 5.0}, id="percentile-none-and-one"),
    pytest.param(row(p99_ms=80.0, max_ms=90.0), row(p99_ms=30.0, max_ms=300.0), {"p99_ms": 80.0, "max_ms": 300.0},
                 id="percentiles-the-larger"),
    pytest.param(row(cpu_pct=90.0, duration_s=3.0), row(cpu_pct=50.0, duration_s=1.0), {"cpu_pct": 80.0},
                 id="cpu-weighted-by-duration"),
    pytest.param(row(lag_ms=150.0, users=5.0), row(lag_ms=1.0, users=9.0), {"lag_ms": 150.0, "users": 9.0},
                 id="lag-and-users-the-larger"),
    pytest.param(row(elapsed_s=3.0, rate=20.0, workers=3.0), row(elapsed_s=4.0, rate=50.0, workers=2.0),
                 {"elapsed_s": 4.0, "rate": 50.0, "workers": 2.0}, id="later-elapsed-and-rate-fewer-workers"),
    pytest.param(row(workers=2.0), row(workers=3.0), {"workers": 2.0}, id="a-lost-worker-stays-visible"),
    pytest.param(row(iterations=NAN), row(iterations=NAN), {"iterations": NAN}, id="closed-model-stays-none"),
    pytest.param(row(iterations=7.0, dropped_iterations=1.0), row(iterations=NAN, dropped_iterations=2.0),
                 {"iterations": 7.0, "dropped_iterations": 3.0}, id="open-model-counts"),
    pytest.param(row(4.0), row(1.0, 2.0), {"kinds": [5.0, 2.0]}, id="failures-by-kind-sum-a-new-kind"),
    pytest.param(row(4.0, 2.0), row(1.0, 0.0), {"kinds": [5.0, 2.0]}, id="failures-by-kind-sum"),
])
def test_merge_rules(a: list[float], b: list[float], expected: dict[str, Any]) -> None:
    before = list(a)
    merged = merge_rows(a, b)
    for name, value in expected.items():
        got = merged[len(FIELDS):] if name == "kinds" else merged[FIELDS.index(name)]
        assert got == pytest.approx(value, nan_ok=True), name
    assert a == before  # the parts are left as they were


@pytest.mark.parametrize("open_model", [False, True], ids=["users", "rate"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generator_health_of_a_coarsened_timeline_is_that_of_every_second(open_model: bool, seed: int) -> None:
    """Busy and late seconds are counted whole as they arrive: a row that averages a 99 % second with a
    12 % one must not hide the busy one, nor one late second make two late."""
    snaps = snapshots(3000, seed=seed, open_model=open_model)
    stages = [RateStage(duration_s=3000.0, start=50.0, end=50.0)] if open_model else []
    exact = assess_generator(snaps, 2, stages, max_in_flight=55)
    coarse = filled(snaps, max_points=10)
    assert coarse.step >= 256
    assert assess_generator(coarse, 2, stages, max_in_flight=55) == exact
    # and what the rows alone would say is different: the exact count is what keeps it right
    assert assess_generator(list(coarse), 2, stages, max_in_flight=55) != exact


def test_generator_health_with_no_loaded_second_reads_every_one() -> None:
    snaps = [s.model_copy(update={"users": 0, "cpu_pct": 95.0}) for s in snapshots(50)]
    coarse = filled(snaps, max_points=4)
    health = assess_generator(coarse, 1)
    assert health == assess_generator(snaps, 1) and health.saturated and health.cpu_avg_pct == 95.0


def test_a_timeline_reads_like_a_list() -> None:
    snaps = snapshots(40)
    timeline = filled(snaps, max_points=8)
    as_list = list(timeline)
    assert len(as_list) == len(timeline) and timeline[1:3] == as_list[1:3] and timeline[::-1][0] is snaps[-1]
    assert [timeline[i] for i in range(-len(timeline), 0)] == as_list
    assert not Timeline() and len(Timeline()) == 0 and list(Timeline()) == []
    one = filled(snaps[:1])
    assert len(one) == 1 and one[-1] is snaps[0] and one[0] is snaps[0]
