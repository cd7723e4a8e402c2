"""The run's seconds as the loadkit process keeps them: a bounded timeline, read as a list of Snapshots.

The plugin sends a snapshot a second. The last one is kept whole (its cumulative Stats are the
run's final figures); of every earlier one only the numbers the timeline and the generator's health
read, one float per field in columns (`array('d')`, NaN for None), not a pydantic object per second.
A row costs about 230 bytes, and there are at most `MAX_POINTS` of them (four hours at 1 s), however
long the run. Reading a row (`timeline[i]`, iteration, slicing) builds its `Snapshot` again: its
window's numbers, no encoded histogram, no status codes, an empty cumulative.

When the rows are full, adjacent pairs merge (1 s -> 2 s -> 4 s ...), and from then on each new
second merges into the last row until that row spans the current resolution. A merged row keeps:

- counts summed (requests, failures, exceptions, failures by kind, iterations, dropped and cut-off
  iterations) and duration_s summed; rps = requests / duration_s;
- error_rate_pct recomputed from the summed counts, success_rate_pct from the requests it counted
  as failed (recovered exactly from each part's rate): both as the plugin computes a window's;
- latency and start-lag percentiles, max_ms: the larger of the parts. Not the true percentile of
  the merged window (its histogram is not kept), but never below it: a slow second never looks fast;
- cpu_pct: the mean weighted by duration; lag_ms and users: the larger;
- elapsed_s and rate: the later part's; workers: the fewer, so a lost worker stays visible.

The generator's health (CPU and event-loop saturation, the most iterations in flight) is not read
from the rows: `seconds` (a `GeneratorSeconds`) counts every second whole as it arrives, so it is
exact whatever the resolution.

    timeline = Timeline()
    for snapshot in stream: timeline.append(snapshot)
    timeline[-1].cumulative            # the run's final figures
    [timeline_point(s) for s in timeline]
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from loadkit.models.wire import Snapshot, Stats

MAX_POINTS = 14_400  # four hours at one second a row; longer runs coarsen to 2 s, 4 s ...
CPU_SATURATED_PCT = 90.0  # a second at this CPU or more is a busy one (generator health)
LAG_SATURATED_MS = 100.0  # a second whose event loop was this late or more is a late one

_NOTHING = Stats()  # an earlier second's cumulative: only the last one's counts
_NAN = math.nan

_SNAPSHOT_FIELDS = ("elapsed_s", "users", "rate", "cpu_pct", "lag_ms", "workers")
_STATS_FIELDS = ("requests", "failures", "exceptions", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                 "success_rate_pct", "error_rate_pct", "duration_s", "iterations", "dropped_iterations",
                 "cut_off_iterations", "start_lag_p50_ms", "start_lag_p99_ms", "start_lag_max_ms")
FIELDS = (*_SNAPSHOT_FIELDS, *_STATS_FIELDS)  # a row's columns in order; then one per failure kind
_AT = {name: i for i, name in enumerate(FIELDS)}
_INTS = frozenset({"users", "workers", "requests", "failures", "exceptions", "iterations", "dropped_iterations",
                   "cut_off_iterations"})
_SUMMED = tuple(_AT[n] for n in ("iterations", "dropped_iterations", "cut_off_iterations"))  # may be None
_LARGER = tuple(_AT[n] for n in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "start_lag_p50_ms", "start_lag_p99_ms",
                                 "start_lag_max_ms"))  # may be None
_ELAPSED, _USERS, _RATE, _CPU, _LAG, _WORKERS = (_AT[n] for n in _SNAPSHOT_FIELDS)
_REQUESTS, _FAILURES, _EXCEPTIONS, _RPS = (_AT[n] for n in ("requests", "failures", "exceptions", "rps"))
_SUCCESS, _ERROR, _DURATION = (_AT[n] for n in ("success_rate_pct", "error_rate_pct", "duration_s"))

Row = list[float]  # one row: FIELDS in order (NaN for None), then the failures of each kind the timeline knows


def _failed_for_flagger(row: Row) -> float:
    """The requests a row's success rate counted as failed (5xx and no answer), from the rate itself:
    success = 100 (n - bad) / n, so bad = n (100 - success) / 100, an integer to well within rounding."""
    n, success = row[_REQUESTS], row[_SUCCESS]
    return 0.0 if success != success or not n else float(round(n * (100.0 - success) / 100.0))


def merge_rows(a: Row, b: Row) -> Row:
    """Two adjacent rows (`a` the earlier) as one: the rules of the module docstring. NaN is None
    (x != x only for NaN): None and None is None, None and a number is the number. Written out, not
    with helpers: it runs every second of a long run."""
    out = a + [0.0] * (len(b) - len(a))  # a failure kind the earlier row had not seen
    for i in range(len(FIELDS), len(b)):
        out[i] += b[i]
    for i in _SUMMED:
        if (y := b[i]) == y:
            out[i] = y if (x := a[i]) != x else x + y
    for i in _LARGER:
        if (y := b[i]) > a[i] or a[i] != a[i]:
            out[i] = y
    for i in (_REQUESTS, _FAILURES, _EXCEPTIONS):
        out[i] += b[i]
    out[_ELAPSED], out[_RATE] = b[_ELAPSED], b[_RATE]
    out[_USERS], out[_LAG] = max(a[_USERS], b[_USERS]), max(a[_LAG], b[_LAG])
    if (y := b[_WORKERS]) < a[_WORKERS] or a[_WORKERS] != a[_WORKERS]:
        out[_WORKERS] = y
    da, db = a[_DURATION], b[_DURATION]
    duration = out[_DURATION] = round(da + db, 3)
    out[_CPU] = (a[_CPU] * da + b[_CPU] * db) / (da + db) if da + db > 0 else (a[_CPU] + b[_CPU]) / 2
    n = out[_REQUESTS]
    out[_RPS] = round(n / duration, 3) if duration > 0 else 0.0
    bad = _failed_for_flagger(a) + _failed_for_flagger(b)
    out[_SUCCESS] = 100.0 * (n - bad) / n if n else _NAN
    out[_ERROR] = min(100.0, 100.0 * (out[_FAILURES] + out[_EXCEPTIONS]) / n) if n else _NAN
    return out


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else value


def _opt_int(value: float) -> int | None:
    return None if math.isnan(value) else int(value)


@dataclass
class Samples:
    """The CPU and event-loop lag of a set of seconds: what generator health reads of them."""

    n: int = 0
    busy: int = 0  # seconds at >= CPU_SATURATED_PCT
    late: int = 0  # seconds with the loop >= LAG_SATURATED_MS late
    cpu_sum: float = 0.0
    cpu_max: float = -math.inf
    lag_max: float = -math.inf

    def add(self, cpu: float, lag: float) -> None:
        self.n += 1
        self.busy += cpu >= CPU_SATURATED_PCT
        self.late += lag >= LAG_SATURATED_MS
        self.cpu_sum += cpu
        self.cpu_max = max(self.cpu_max, cpu)
        self.lag_max = max(self.lag_max, lag)


@dataclass
class GeneratorSeconds:
    """Every second's CPU and loop lag counted as it arrives, in the sets generator health chooses from:
    `loaded` (after the first, with users: a closed-model run), `scheduled` (after the first, with a
    rate: an open-model run) and `every`; and the most users (iterations in flight) of any second."""

    every: Samples = field(default_factory=Samples)
    loaded: Samples = field(default_factory=Samples)
    scheduled: Samples = field(default_factory=Samples)
    users_max: int = 0

    def add(self, snapshot: Snapshot) -> None:
        cpu, lag = snapshot.cpu_pct, snapshot.lag_ms
        if self.every.n:  # the first second (Locust starting) is not a sample of a loaded generator
            if snapshot.users > 0:
                self.loaded.add(cpu, lag)
            if snapshot.rate:
                self.scheduled.add(cpu, lag)
        self.every.add(cpu, lag)
        self.users_max = max(self.users_max, snapshot.users)

    @classmethod
    def of(cls, snapshots: Iterable[Snapshot]) -> GeneratorSeconds:
        seconds = cls()
        for snapshot in snapshots:
            seconds.add(snapshot)
        return seconds


class Timeline(Sequence[Snapshot]):
    """The run's snapshots, all but the last as rows of numbers: bounded by `max_points` rows."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        self.max_points = max_points
        self.seconds = GeneratorSeconds()
        self.step = 1  # seconds (snapshots) a full row holds now: 1, 2, 4 ...
        self._cols: list[array[float]] = [array("d") for _ in FIELDS]  # then one per failure kind
        self._kinds: dict[str, int] = {}  # failure kind -> its column
        self._fill = 0  # snapshots in the last row
        self._tail: Row = []  # the last row: what the next second merges into
        self._stale = False  # the last row's columns are behind _tail (written when read)
        self._last: Snapshot | None = None

    def append(self, snapshot: Snapshot) -> None:
        if self._last is not None:
            self._store(self._row(self._last))
        self._last = snapshot
        self.seconds.add(snapshot)

    @property
    def rows(self) -> int:
        """The stored rows (every snapshot but the last)."""
        return len(self._cols[0])

    def _row(self, snapshot: Snapshot) -> Row:
        w = snapshot.window
        row = [_NAN if (v := getattr(snapshot, name)) is None else v for name in _SNAPSHOT_FIELDS]
        row += [_NAN if (v := getattr(w, name)) is None else v for name in _STATS_FIELDS]
        if w.failures_by_kind:
            for kind in w.failures_by_kind.keys() - self._kinds.keys():  # new: 0 in the earlier rows
                self._kinds[kind] = len(self._cols)
                self._cols.append(array("d", bytes(8 * self.rows)))
            row += [0.0] * (len(self._cols) - len(row))
            for kind, n in w.failures_by_kind.items():
                row[self._kinds[kind]] = n
        return row

    def _store(self, row: Row) -> None:
        if self.rows and self._fill < self.step:
            self._tail = merge_rows(self._tail, row)
            self._stale = True
            self._fill += 1
            return
        if self.rows >= self.max_points:
            self._coarsen()
            if self._fill < self.step:  # an odd count left its last row half full
                self._store(row)
                return
        self._flush()
        row += [0.0] * (len(self._cols) - len(row))  # no failure of a kind seen before
        for col, value in zip(self._cols, row, strict=True):
            col.append(value)
        self._tail, self._fill = row, 1

    def _coarsen(self) -> None:
        """Merge adjacent pairs of rows in place: half the rows, twice the resolution."""
        self._flush()
        rows = self.rows
        for j in range(rows // 2):
            self._put(j, merge_rows(self._read(2 * j), self._read(2 * j + 1)))
        if rows % 2:
            self._put(rows // 2, self._read(rows - 1))
        kept = (rows + 1) // 2
        for col in self._cols:
            del col[kept:]
        self._fill = self.step if rows % 2 else 2 * self.step
        self.step *= 2
        self._tail = self._read(kept - 1)

    def _flush(self) -> None:
        if self._stale:
            self._tail += [0.0] * (len(self._cols) - len(self._tail))  # a kind first seen since
            self._put(self.rows - 1, self._tail)
            self._stale = False

    def _read(self, i: int) -> Row:
        return [col[i] for col in self._cols]

    def _put(self, i: int, row: Row) -> None:
        for col, value in zip(self._cols, row, strict=True):
            col[i] = value

    def _snapshot(self, i: int) -> Snapshot:
        self._flush()
        v = self._read(i)
        stats: dict[str, Any] = {name: _opt_int(v[_AT[name]]) if name in _INTS else _opt(v[_AT[name]])
                                 for name in _STATS_FIELDS}
        stats["duration_s"], stats["rps"] = v[_DURATION], v[_RPS]
        kinds = {kind: int(v[at]) for kind, at in sorted(self._kinds.items()) if v[at]}
        window = Stats.model_construct(**stats, status_codes={}, status_classes={}, failures_by_kind=kinds)
        return Snapshot.model_construct(
            elapsed_s=v[_ELAPSED], users=int(v[_USERS]), rate=_opt(v[_RATE]), cpu_pct=v[_CPU], lag_ms=v[_LAG],
            window=window, window_histogram="", cumulative=_NOTHING, workers=_opt_int(v[_WORKERS]))

    def __len__(self) -> int:
        return self.rows + (self._last is not None)

    @overload
    def __getitem__(self, index: int) -> Snapshot: ...

    @overload
    def __getitem__(self, index: slice) -> list[Snapshot]: ...

    def __getitem__(self, index: int | slice) -> Snapshot | list[Snapshot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("timeline index out of range")
        if index == self.rows:
            assert self._last is not None
            return self._last
        return self._snapshot(index)

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(self.rows):
            yield self._snapshot(i)
        if self._last is not None:
            yield self._last

    def __repr__(self) -> str:
        return f"Timeline({len(self)} snapshots, {self.step}s a row, at most {self.max_points} rows)"


def generator_seconds(snapshots: Sequence[Snapshot]) -> GeneratorSeconds:
    """What generator health reads of a run's seconds: a Timeline's own exact count, or a list's."""
    return snapshots.seconds if isinstance(snapshots, Timeline) else GeneratorSeconds.of(snapshots)
