"""SQLite (WAL) store for runs, their live and final results, events and freezes.

A restart loses nothing: finished verdicts stay, and runs that were in flight are marked
`interrupted` (never a pass). One connection, guarded by a lock: calls are short and the
webhook's threads (one per run) only write a snapshot a second.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from loadkit.models import RunResult, Verdict
from loadkit.webhook.models import EventRecord, Freeze, LiveState, RunRecord, RunStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, profile TEXT NOT NULL,
    hook TEXT NOT NULL, thresholds TEXT NOT NULL, target TEXT NOT NULL,
    status TEXT NOT NULL, verdict TEXT, score REAL, reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, finished_at TEXT, live_json TEXT, result_json TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_canary ON runs (namespace, name, checksum, created_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL, name TEXT NOT NULL, phase TEXT NOT NULL, checksum TEXT NOT NULL,
    event_type TEXT NOT NULL, message TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_canary ON events (namespace, name, id);
CREATE TABLE IF NOT EXISTS freezes (
    namespace TEXT NOT NULL, name TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
"""

_RUN_COLUMNS = ("id, namespace, name, checksum, profile, hook, thresholds, target, status, verdict, score, "
                "reason, created_at, finished_at, live_json, result_json")
# Hooks and listings need the verdict, not the full result (timeline, histogram): skip parsing it.
# The live state of a running run is read from the RunManager (fresher, already parsed).
_SUMMARY_COLUMNS = _RUN_COLUMNS.replace("live_json, result_json", "NULL, NULL")


MAX_SERIES = 1000  # canaries in per-canary metrics, newest first: a bound on label cardinality
MAX_EVENT_MESSAGE = 4096


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, path: Path | str, url_for: Callable[[str], str] = lambda run_id: f"/runs/{run_id}") -> None:
        self.path = str(path)
        self.url_for = url_for
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs -------------------------------------------------------------------------------------

    def interrupt_unfinished(self, reason: str) -> int:
        """At start-up (and shutdown): runs still marked running were cut off; they never pass."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET status=?, reason=?, finished_at=? WHERE status=?",
                (RunStatus.INTERRUPTED.value, reason, now().isoformat(), RunStatus.RUNNING.value),
            )
            return cur.rowcount

    def insert_run(self, run: RunRecord) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run.id, run.namespace, run.name, run.checksum, run.profile, run.hook.value, run.thresholds,
                 run.target, run.status.value, run.verdict, run.score, run.reason, run.created_at.isoformat(),
                 None, None, None),
            )

    def update_live(self, run_id: str, live: LiveState) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET live_json=? WHERE id=? AND status=?",
                       (live.model_dump_json(), run_id, RunStatus.RUNNING.value))

    def finish_run(self, run_id: str, status: RunStatus, *, verdict: Verdict | None, score: float | None,
                   reason: str, result: RunResult | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, verdict=?, score=?, reason=?, finished_at=?, result_json=? WHERE id=?",
                (status.value, verdict.value if verdict else None, score, reason, now().isoformat(),
                 result.model_dump_json() if result else None, run_id),
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
        return rows[0] if rows else None

    def runs_for(self, namespace: str, name: str, checksum: str, limit: int = 50) -> list[RunRecord]:
        """This revision's runs, newest first, without their full results (see get_run)."""
        return self._query(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE namespace=? AND name=? AND checksum=? "
                           "ORDER BY created_at DESC, rowid DESC LIMIT ?", (namespace, name, checksum, limit))

    def list_runs(self, namespace: str | None, name: str | None, limit: int = 100) -> list[RunRecord]:
        """Newest first, without full results (GET /runs/{id} has them)."""
        clause, args = _where(namespace, name)
        return self._query(f"SELECT {_SUMMARY_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, rowid DESC "
                           "LIMIT ?", (*args, limit))

    def verdict_counts(self) -> dict[tuple[str, str], int]:
        """Finished runs by (status, verdict): only grows, so it can be a Prometheus counter."""
        with self._lock:
            rows = self._db.execute("SELECT status, COALESCE(verdict, ''), COUNT(*) FROM runs WHERE status != ? "
                                    "GROUP BY status, verdict", (RunStatus.RUNNING.value,)).fetchall()
        return {(status, verdict): count for status, verdict, count in rows}

    def prune(self, older_than: datetime) -> int:
        """Forget finished runs and events older than `older_than` (retention); returns rows removed."""
        cutoff = older_than.isoformat()
        with self._tx() as db:
            runs = db.execute("DELETE FROM runs WHERE status != ? AND created_at < ?",
                              (RunStatus.RUNNING.value, cutoff)).rowcount
            events = db.execute("DELETE FROM events WHERE received_at < ?", (cutoff,)).rowcount
        return runs + events

    def latest_scores(self) -> list[tuple[str, str, float]]:
        """(namespace, name, score) of the newest scored run of every canary."""
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, name, score FROM runs r WHERE score IS NOT NULL AND created_at = "
                "(SELECT MAX(created_at) FROM runs WHERE namespace=r.namespace AND name=r.name "
                "AND score IS NOT NULL) ORDER BY created_at DESC LIMIT ?", (MAX_SERIES,)).fetchall()
        return [(str(ns), str(n), float(score)) for ns, n, score in rows]

    def _query(self, sql: str, args: tuple[object, ...]) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_run_from_row(row).model_copy(update={"url": self.url_for(str(row[0]))}) for row in rows]

    # -- events and freezes -----------------------------------------------------------------------

    def insert_event(self, event: EventRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (namespace, name, phase, checksum, event_type, message, timestamp, "
                "received_at) VALUES (?,?,?,?,?,?,?,?)",
                (event.namespace, event.name, event.phase, event.checksum, event.event_type[:64],
                 event.message[:MAX_EVENT_MESSAGE], event.timestamp[:64], event.received_at.isoformat()),
            )

    def list_events(self, namespace: str | None, name: str | None, limit: int = 100) -> list[EventRecord]:
        clause, args = _where(namespace, name)
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, name, phase, checksum, event_type, message, timestamp, received_at "
                f"FROM events {clause} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [EventRecord(namespace=r[0], name=r[1], phase=r[2], checksum=r[3], event_type=r[4], message=r[5],
                            timestamp=r[6], received_at=datetime.fromisoformat(r[7])) for r in rows]

    def set_freeze(self, freeze: Freeze) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO freezes (namespace, name, reason, created_at) VALUES (?,?,?,?)",
                       (freeze.namespace, freeze.name, freeze.reason, now().isoformat()))

    def clear_freeze(self, namespace: str, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM freezes WHERE namespace=? AND name=?", (namespace, name)).rowcount > 0

    def freezes(self) -> list[Freeze]:
        with self._lock:
            rows = self._db.execute("SELECT namespace, name, reason FROM freezes ORDER BY created_at").fetchall()
        return [Freeze(namespace=r[0], name=r[1], reason=r[2]) for r in rows]

    def freeze_for(self, namespace: str, name: str) -> Freeze | None:
        """The freeze that applies to a canary: exact, namespace-wide ('*' name) or global."""
        for freeze in self.freezes():
            if freeze.namespace in ("*", namespace) and freeze.name in ("*", name):
                return freeze
        return None


def _where(namespace: str | None, name: str | None) -> tuple[str, list[str]]:
    """A WHERE clause for the optional namespace/name filters of list queries."""
    where, args = [], []
    for column, value in (("namespace", namespace), ("name", name)):
        if value:
            where.append(f"{column}=?")
            args.append(value)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _run_from_row(row: tuple[object, ...]) -> RunRecord:
    (run_id, namespace, name, checksum, profile, hook, thresholds, target, status, verdict, score, reason,
     created_at, finished_at, live_json, result_json) = row
    return RunRecord(
        id=str(run_id), namespace=str(namespace), name=str(name), checksum=str(checksum), profile=str(profile),
        hook=hook, thresholds=str(thresholds), target=str(target), status=status,  # type: ignore[arg-type]
        verdict=Verdict(str(verdict)) if verdict else None,
        score=float(score) if isinstance(score, int | float) else None, reason=str(reason or ""),
        created_at=datetime.fromisoformat(str(created_at)),
        finished_at=datetime.fromisoformat(str(finished_at)) if finished_at else None,
        live=LiveState.model_validate(json.loads(str(live_json))) if live_json else None,
        result=RunResult.model_validate(json.loads(str(result_json))) if result_json else None,
    )
