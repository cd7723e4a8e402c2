"""The webhook's state in the loadkit database: analyses, their runs (live and final results), gates,
events, freezes, counters.

A restart loses nothing: analyses stay open, finished verdicts stay, gates stay, and runs that were
in flight are marked `interrupted` (never a pass). One connection, guarded by a lock: calls are
short and the webhook's threads (one per run) only write a snapshot a second.

The schema is loadkit/store's (one file, one schema for the webhook and the history of every run):
versioned with `PRAGMA user_version` and migrated forward in place at start-up, so a database written
by an older loadkit keeps its history.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from loadkit.models.results import RunResult, Verdict
from loadkit.store import Database
from loadkit.webhook.models import (
    AnalysisOutcome,
    AnalysisRecord,
    AnalysisStatus,
    EventRecord,
    Freeze,
    GateRecord,
    GateState,
    LiveState,
    RunRecord,
    RunStatus,
)

_RUN_COLUMNS = ("id, analysis, namespace, name, checksum, profile, hook, thresholds, target, plan_key, continuous, "
                "status, verdict, score, reason, decisive, created_at, finished_at, live_json, result_json")
# Hooks and listings need the verdict, not the full result (timeline, histogram): skip parsing it.
# The live state of a running run is read from the RunManager (fresher, already parsed).
_SUMMARY_COLUMNS = _RUN_COLUMNS.replace("live_json, result_json", "NULL, NULL")
_ANALYSIS_COLUMNS = "id, namespace, name, checksum, status, opened_at, opened_by, closed_at, outcome, reason"

MAX_SERIES = 1000  # canaries in per-canary metrics, newest first: a bound on label cardinality
MAX_EVENT_MESSAGE = 4096
NEXT_ROLLOUT = ""  # the `analysis` of gates that belong to the next rollout (confirm-rollout)
_OPEN = "WHERE namespace=? AND name=? AND status='open'"  # a literal, so SQLite uses the partial unique index


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


class Store(Database):
    """The webhook's tables of the one loadkit database (loadkit/store: the schema and its migrations)."""

    def __init__(self, path: Path | str, url_for: Callable[[str], str] = lambda run_id: f"/runs/{run_id}") -> None:
        super().__init__(path)
        self.url_for = url_for

    # -- analyses -----------------------------------------------------------------------------------

    def enter_analysis(self, namespace: str, name: str, checksum: str,
                       opened_by: str) -> tuple[AnalysisRecord, bool, AnalysisRecord | None]:
        """The open analysis of this canary for `checksum`, opening one if needed: (analysis, opened, superseded).

        A different checksum closes the open analysis as superseded (a new revision) and opens a new one.
        Opening an analysis consumes the gates given for "the next rollout".
        """
        current = self.open_analysis(namespace, name)  # the common case reads only: no write lock
        if current is not None and current.checksum == checksum:
            return current, False, None
        with self._tx() as db:
            open_ = _one_analysis(db, _OPEN, (namespace, name))
            if open_ is not None and open_.checksum == checksum:
                return open_, False, None
            superseded = None
            if open_ is not None:
                superseded = _close(db, open_, AnalysisOutcome.SUPERSEDED,
                                    f"a new revision arrived (checksum {checksum})")
            analysis = AnalysisRecord(id=new_id(), namespace=namespace, name=name, checksum=checksum,
                                      status=AnalysisStatus.OPEN, opened_at=now(), opened_by=opened_by)
            db.execute(f"INSERT INTO analyses ({_ANALYSIS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (analysis.id, namespace, name, checksum, analysis.status.value,
                        analysis.opened_at.isoformat(), opened_by, None, None, ""))
            # The next rollout's approval is used up; its halt holds this analysis's gates too (a
            # Canary without a confirm-rollout hook got past it) until someone approves.
            db.execute("DELETE FROM gates WHERE namespace=? AND name=? AND analysis=? AND state=?",
                       (namespace, name, NEXT_ROLLOUT, GateState.APPROVED.value))
            for (reason,) in db.execute("SELECT reason FROM gates WHERE namespace=? AND name=? AND analysis=? "
                                        "AND state=?", (namespace, name, NEXT_ROLLOUT, GateState.HALTED.value)
                                        ).fetchall():
                for hook in ("confirm-traffic-increase", "confirm-promotion"):
                    db.execute("INSERT OR REPLACE INTO gates (namespace, name, analysis, hook, state, reason, "
                               "updated_at) VALUES (?,?,?,?,?,?,?)", (namespace, name, analysis.id, hook,
                               GateState.HALTED.value, f"halted before this analysis opened: {reason}".rstrip(": "),
                               now().isoformat()))
            return analysis, True, superseded

    def close_analysis(self, namespace: str, name: str, outcome: AnalysisOutcome, reason: str) -> AnalysisRecord | None:
        """Close the canary's open analysis, if any; returns it as closed."""
        with self._tx() as db:
            open_ = _one_analysis(db, _OPEN, (namespace, name))
            return _close(db, open_, outcome, reason) if open_ is not None else None

    def open_analysis(self, namespace: str, name: str) -> AnalysisRecord | None:
        with self._lock:
            return _one_analysis(self._db, _OPEN, (namespace, name))

    def get_analysis(self, analysis_id: str) -> AnalysisRecord | None:
        with self._lock:
            return _one_analysis(self._db, "WHERE id=?", (analysis_id,))

    def list_analyses(self, namespace: str | None, name: str | None, limit: int = 100) -> list[AnalysisRecord]:
        clause, args = _where(namespace, name)
        with self._lock:
            rows = self._db.execute(f"SELECT {_ANALYSIS_COLUMNS} FROM analyses {clause} "
                                    "ORDER BY opened_at DESC, rowid DESC LIMIT ?", (*args, limit)).fetchall()
        return [_analysis_from_row(r) for r in rows]

    def open_analyses(self) -> list[AnalysisRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_ANALYSIS_COLUMNS} FROM analyses WHERE status=? ORDER BY opened_at "
                                    "DESC LIMIT ?", (AnalysisStatus.OPEN.value, MAX_SERIES)).fetchall()
        return [_analysis_from_row(r) for r in rows]

    def analysis_counts(self) -> dict[str, int]:
        """Closed analyses by outcome, from the counters (they never go down)."""
        return {labels: value for labels, value in self._counters("analyses").items()}

    # -- gates --------------------------------------------------------------------------------------

    def set_gate(self, gate: GateRecord) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO gates (namespace, name, analysis, hook, state, reason, updated_at) "
                       "VALUES (?,?,?,?,?,?,?)", (gate.namespace, gate.name, gate.analysis, gate.hook,
                                                 gate.state.value, gate.reason, gate.updated_at.isoformat()))

    def clear_gate(self, namespace: str, name: str, analysis: str, hook: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM gates WHERE namespace=? AND name=? AND analysis=? AND hook=?",
                              (namespace, name, analysis, hook)).rowcount > 0

    def gates(self, namespace: str, name: str, analyses: tuple[str, ...]) -> list[GateRecord]:
        """The gates of these analyses ("" = the next rollout) of one canary."""
        marks = ",".join("?" * len(analyses))
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, name, analysis, hook, state, reason, updated_at FROM gates "
                f"WHERE namespace=? AND name=? AND analysis IN ({marks}) ORDER BY hook",
                (namespace, name, *analyses)).fetchall()
        return [GateRecord(namespace=r[0], name=r[1], analysis=r[2], hook=r[3], state=GateState(r[4]), reason=r[5],
                           updated_at=datetime.fromisoformat(r[6])) for r in rows]

    def open_gates(self) -> list[GateRecord]:
        """Gates of open analyses and of next rollouts (for /metrics)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT g.namespace, g.name, g.analysis, g.hook, g.state, g.reason, g.updated_at FROM gates g "
                "LEFT JOIN analyses a ON a.id = g.analysis WHERE g.analysis = '' OR a.status = ? LIMIT ?",
                (AnalysisStatus.OPEN.value, MAX_SERIES)).fetchall()
        return [GateRecord(namespace=r[0], name=r[1], analysis=r[2], hook=r[3], state=GateState(r[4]), reason=r[5],
                           updated_at=datetime.fromisoformat(r[6])) for r in rows]

    # -- runs -------------------------------------------------------------------------------------

    def interrupt_unfinished(self, reason: str) -> int:
        """At start-up (and shutdown): runs still marked running were cut off; they never pass."""
        with self._tx() as db:
            rows = db.execute("SELECT COUNT(*) FROM runs WHERE status=?", (RunStatus.RUNNING.value,)).fetchone()[0]
            db.execute(
                "UPDATE runs SET status=?, reason=?, finished_at=? WHERE status=?",
                (RunStatus.INTERRUPTED.value, reason, now().isoformat(), RunStatus.RUNNING.value),
            )
            if rows:
                _count(db, "runs", f"{RunStatus.INTERRUPTED.value}|", rows)
            return int(rows)

    def insert_run(self, run: RunRecord) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run.id, run.analysis, run.namespace, run.name, run.checksum, run.profile, run.hook.value,
                 run.thresholds, run.target, run.plan_key, int(run.continuous), run.status.value, run.verdict,
                 run.score, run.reason, run.decisive, run.created_at.isoformat(), None, None, None),
            )

    def update_live(self, run_id: str, live: LiveState) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET live_json=?, decisive=? WHERE id=? AND status=?",
                       (live.model_dump_json(), live.decisive, run_id, RunStatus.RUNNING.value))

    def finish_run(self, run_id: str, status: RunStatus, *, verdict: Verdict | None, score: float | None,
                   reason: str, result: RunResult | None, decisive: str = "") -> None:
        """Record a run's end once; loadkit_runs_total counts it in the same transaction."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE runs SET status=?, verdict=?, score=?, reason=?, decisive=?, finished_at=?, result_json=? "
                "WHERE id=? AND status=?",
                (status.value, verdict.value if verdict else None, score, reason, decisive, now().isoformat(),
                 result.model_dump_json() if result else None, run_id, RunStatus.RUNNING.value),
            ).rowcount
            if changed:
                _count(db, "runs", f"{status.value}|{verdict.value if verdict else ''}")

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
        return rows[0] if rows else None

    def runs_of(self, analysis_id: str, limit: int = 200) -> list[RunRecord]:
        """An analysis's runs, newest first, without their full results (see get_run)."""
        return self._query(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE analysis=? "
                           "ORDER BY created_at DESC, rowid DESC LIMIT ?", (analysis_id, limit))

    def list_runs(self, namespace: str | None, name: str | None, limit: int = 100) -> list[RunRecord]:
        """Newest first, without full results (GET /runs/{id} has them)."""
        clause, args = _where(namespace, name)
        return self._query(f"SELECT {_SUMMARY_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, rowid DESC "
                           "LIMIT ?", (*args, limit))

    def verdict_counts(self) -> dict[tuple[str, str], int]:
        """Finished runs by (status, verdict) since the store was created: never goes down (a counter)."""
        out = {}
        for labels, value in self._counters("runs").items():
            status, _, verdict = labels.partition("|")
            out[(status, verdict)] = value
        return out

    def prune(self, older_than: datetime) -> int:
        """Forget finished runs, closed analyses (with their gates) and events older than `older_than`;
        never the runs of an analysis still open (its gates read them)."""
        cutoff = older_than.isoformat()
        with self._tx() as db:
            runs = db.execute("DELETE FROM runs WHERE status != ? AND created_at < ? AND analysis NOT IN "
                              "(SELECT id FROM analyses WHERE status = 'open')",
                              (RunStatus.RUNNING.value, cutoff)).rowcount
            events = db.execute("DELETE FROM events WHERE received_at < ?", (cutoff,)).rowcount
            gone = [r[0] for r in db.execute("SELECT id FROM analyses WHERE status=? AND closed_at < ?",
                                             (AnalysisStatus.CLOSED.value, cutoff)).fetchall()]
            for analysis_id in gone:
                db.execute("DELETE FROM gates WHERE analysis=?", (analysis_id,))
                db.execute("DELETE FROM analyses WHERE id=?", (analysis_id,))
        return runs + events + len(gone)

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

    def _counters(self, name: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT labels, value FROM counters WHERE name=?", (name,)).fetchall()
        return {str(labels): int(value) for labels, value in rows}

    # -- events and freezes -----------------------------------------------------------------------

    def insert_event(self, event: EventRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (namespace, name, phase, checksum, event_type, message, timestamp, "
                "received_at, analysis) VALUES (?,?,?,?,?,?,?,?,?)",
                (event.namespace, event.name, event.phase, event.checksum, event.event_type[:64],
                 event.message[:MAX_EVENT_MESSAGE], event.timestamp[:64], event.received_at.isoformat(),
                 event.analysis),
            )

    def list_events(self, namespace: str | None, name: str | None, limit: int = 100) -> list[EventRecord]:
        clause, args = _where(namespace, name)
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, name, phase, checksum, event_type, message, timestamp, received_at, analysis "
                f"FROM events {clause} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [EventRecord(namespace=r[0], name=r[1], phase=r[2], checksum=r[3], event_type=r[4], message=r[5],
                            timestamp=r[6], received_at=datetime.fromisoformat(r[7]), analysis=r[8]) for r in rows]

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


def _count(db: sqlite3.Connection, name: str, labels: str, by: int = 1) -> None:
    db.execute("INSERT INTO counters (name, labels, value) VALUES (?,?,?) "
               "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value", (name, labels, by))


def _close(db: sqlite3.Connection, analysis: AnalysisRecord, outcome: AnalysisOutcome, reason: str) -> AnalysisRecord:
    closed = analysis.model_copy(update={"status": AnalysisStatus.CLOSED, "closed_at": now(), "outcome": outcome,
                                         "reason": reason})
    db.execute("UPDATE analyses SET status=?, closed_at=?, outcome=?, reason=? WHERE id=?",
               (closed.status.value, closed.closed_at.isoformat() if closed.closed_at else None, outcome.value,
                reason, analysis.id))
    _count(db, "analyses", outcome.value)
    return closed


def _one_analysis(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> AnalysisRecord | None:
    row = db.execute(f"SELECT {_ANALYSIS_COLUMNS} FROM analyses {where} ORDER BY opened_at DESC LIMIT 1",
                     args).fetchone()
    return _analysis_from_row(row) if row else None


def _analysis_from_row(row: tuple[object, ...]) -> AnalysisRecord:
    (analysis_id, namespace, name, checksum, status, opened_at, opened_by, closed_at, outcome, reason) = row
    return AnalysisRecord(
        id=str(analysis_id), namespace=str(namespace), name=str(name), checksum=str(checksum),
        status=AnalysisStatus(str(status)), opened_at=datetime.fromisoformat(str(opened_at)),
        opened_by=str(opened_by), closed_at=datetime.fromisoformat(str(closed_at)) if closed_at else None,
        outcome=AnalysisOutcome(str(outcome)) if outcome else None, reason=str(reason or ""),
    )


def _where(namespace: str | None, name: str | None) -> tuple[str, list[str]]:
    """A WHERE clause for the optional namespace/name filters of list queries."""
    where, args = [], []
    for column, value in (("namespace", namespace), ("name", name)):
        if value:
            where.append(f"{column}=?")
            args.append(value)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _run_from_row(row: tuple[object, ...]) -> RunRecord:
    (run_id, analysis, namespace, name, checksum, profile, hook, thresholds, target, plan_key, continuous, status,
     verdict, score, reason, decisive, created_at, finished_at, live_json, result_json) = row
    return RunRecord(
        id=str(run_id), analysis=str(analysis or ""), namespace=str(namespace), name=str(name),
        checksum=str(checksum), profile=str(profile), hook=hook, thresholds=str(thresholds),  # type: ignore[arg-type]
        target=str(target), plan_key=str(plan_key or ""), continuous=bool(continuous),
        status=status,  # type: ignore[arg-type]
        verdict=Verdict(str(verdict)) if verdict else None,
        score=float(score) if isinstance(score, int | float) else None, reason=str(reason or ""),
        decisive=str(decisive or ""), created_at=datetime.fromisoformat(str(created_at)),
        finished_at=datetime.fromisoformat(str(finished_at)) if finished_at else None,
        live=LiveState.model_validate(json.loads(str(live_json))) if live_json else None,
        result=RunResult.model_validate(json.loads(str(result_json))) if result_json else None,
    )
