"""The Locust plugin's stream as the loadkit process reads it: client-side stats and snapshots.

The plugin (loadkit/load/locust_plugin.py) writes these as JSON lines without importing pydantic;
the runner validates each line into a `Snapshot`. `Stats` is also the run's total in every result.
"""

from __future__ import annotations

import enum

from pydantic import Field

from loadkit.models.base import ResultModel


class Stats(ResultModel):
    """Client-side numbers for a run (or a window of it).

    status_codes counts each HTTP status ("0" = no answer: connection error or timeout);
    status_classes groups them: 2xx, 3xx, 4xx, 5xx and no_response.
    success_rate_pct follows Flagger: 5xx answers and connection errors are failures.
    error_rate_pct counts every request Locust marks failed (4xx, 5xx, connection, catch_response
    failures) plus every exception a task raised (`exceptions`, e.g. a failed assert), over requests.
    Latency percentiles come from an HdrHistogram (3 significant digits) and are reported as the
    upper edge of their bucket, so a reported p99 <= 500 ms really is <= 500 ms.
    An open-model run (a rate) also has `iterations` started, `dropped_iterations` (k6's: arrivals that
    could not start within the allowed lateness), `cut_off_iterations` (started, still running when the
    run ended: each counted once in the latencies at its age then) and the start lag (intended -> actual start); its
    latencies count from each iteration's intended start. None in a closed-model (users) run.
    """

    requests: int = 0
    failures: int = 0
    exceptions: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    success_rate_pct: float | None = None
    error_rate_pct: float | None = None
    status_codes: dict[str, int] = Field(default_factory=dict)
    status_classes: dict[str, int] = Field(default_factory=dict)
    failures_by_kind: dict[str, int] = Field(default_factory=dict)
    duration_s: float = 0.0
    iterations: int | None = None
    dropped_iterations: int | None = None
    cut_off_iterations: int | None = None
    start_lag_p50_ms: float | None = None
    start_lag_p99_ms: float | None = None
    start_lag_max_ms: float | None = None


class Snapshot(ResultModel):
    """One line of the Locust plugin's stream: the last window and everything so far."""

    elapsed_s: float
    users: int  # an open-model run: iterations running at that moment
    rate: float | None = None  # an open-model run: the scheduled iterations per second at that moment
    cpu_pct: float
    lag_ms: float
    window: Stats
    window_histogram: str = ""  # the window's latencies (HdrHistogram, µs, base64): windows merge exactly
    cumulative: Stats
    workers: int | None = None  # a distributed run's live workers (None: not distributed)


class WorkerEventKind(enum.StrEnum):
    JOINED = "joined"
    LOST = "lost"
    REJOINED = "rejoined"  # a lost worker heartbeats again: Locust gave it users back
    REFUSED = "refused"
    UNPLANNED = "unplanned"  # a worker without this run's plan took users: evicted, its load uncounted
    DROPPED = "dropped"  # load windows not from this run's planned workers: never merged


class WorkerEvent(ResultModel):
    """A Locust worker of a distributed run joined the master, was lost mid-run, or was refused.

    `at_s`: when its last window arrived (seconds into the run; for a lost worker, where its share of
    the load stops); `detected_s`: when the master noticed; `requests`: what it had sent by then.
    """

    event: WorkerEventKind
    node: str
    index: int | None = None
    at_s: float | None = None
    detected_s: float | None = None
    requests: int | None = None
    reason: str = ""
    users_moved: bool = False  # lost: it left the run, so Locust moved its users to the other workers
