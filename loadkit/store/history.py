"""The history of every run, chaos run and game day: one row each in the loadkit database.

A row keeps what a listing needs (kind, name, target, canary, times, verdict, score) and the whole
result as JSON with its `schema_version`. The trend of a row is its score minus the score of the
previous judged row of the same series: the same plan for game days, the same profile (run) or
experiment (chaos) against the same target otherwise. Interrupted and errored rows measured
nothing, so they neither get a trend nor serve as one's base; nor does a run stopped early by
`--abort-on-fail` (it failed, but on part of its plan: it is stored without a score).

    save_result("gameday", result, db_path, plan="bruno-site")   # -> HistoryEntry
"""

from __future__ import annotations

import enum
import os
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from loadkit.errors import StoreError
from loadkit.models.base import SCHEMA_VERSION
from loadkit.store._db import Database

UNJUDGED = ("interrupted", "error", "not-judged", "dry-run")  # verdicts that judged nothing: no trend from or to them


def judged(verdict: str, score: float | None) -> bool:
    """A stored result a score trend may show: it has a score and its verdict judged something."""
    return score is not None and verdict not in UNJUDGED


class HistoryKind(enum.StrEnum):
    RUN = "run"
    CHAOS = "chaos"
    GAMEDAY = "gameday"


# Where each kind keeps the name of its series, first match wins (a `plan=` argument overrides).
_NAME_FIELDS: dict[HistoryKind, tuple[str, ...]] = {
    HistoryKind.RUN: ("profile",),
    HistoryKind.CHAOS: ("experiment", "experiment_path"),
    HistoryKind.GAMEDAY: ("plan_name", "plan", "name", "title"),
}


class Result(Protocol):
    """What a result model needs to be stored: RunResult, ChaosResult, a game day's result."""

    @property
    def verdict(self) -> Any: ...

    @property
    def started_at(self) -> datetime: ...

    def model_dump_json(self) -> str: ...


class HistoryEntry(BaseModel):
    """One stored run, chaos run or game day, as `loadkit history -o json` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: HistoryKind
    name: str = Field(description="The profile (run), experiment (chaos) or plan (gameday)")
    target: str = ""
    namespace: str = ""
    canary: str = ""
    started_at: datetime
    ended_at: datetime
    recorded_at: datetime
    # Text, not loadkit's Verdict: a newer loadkit may store a verdict this one does not know.
    verdict: str
    score: float | None = None
    trend: float | None = Field(default=None, description="score minus the previous judged score of the series")
    previous_id: str | None = None
    schema_version: int = Field(description="The stored result's schema_version")


class HistoryList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    db: str
    entries: list[HistoryEntry]


@dataclass(frozen=True)
class HistoryQuery:
    kind: HistoryKind | None = None
    namespace: str | None = None
    canary: str | None = None
    since: datetime | None = None
    limit: int = 50


_COLUMNS = ("id, kind, name, target, namespace, canary, started_at, ended_at, recorded_at, verdict, score, "
            "schema_version")
# The previous judged row of the same series (game days: the plan; otherwise name and target).
_PREVIOUS = (
    "SELECT p.{column} FROM history p WHERE p.kind = h.kind AND p.name = h.name "
    "AND (h.kind = 'gameday' OR p.target = h.target) AND p.score IS NOT NULL "
    f"AND p.verdict NOT IN {UNJUDGED} "
    "AND (p.started_at < h.started_at OR (p.started_at = h.started_at AND p.rowid < h.rowid)) "
    "ORDER BY p.started_at DESC, p.rowid DESC LIMIT 1"
)


class History(Database):
    """The history table of the loadkit database."""

    def add(self, entry: HistoryEntry, result_json: str) -> None:
        with self._tx() as db:
            db.execute(f"INSERT INTO history ({_COLUMNS}, result_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (entry.id, entry.kind.value, entry.name, entry.target, entry.namespace, entry.canary,
                        _iso(entry.started_at), _iso(entry.ended_at), _iso(entry.recorded_at), entry.verdict,
                        entry.score, entry.schema_version, result_json))

    def entries(self, query: HistoryQuery) -> list[HistoryEntry]:
        """Newest first, each with its trend against the previous judged row of its series."""
        where, args = _where(query)
        sql = (f"SELECT {_COLUMNS}, ({_PREVIOUS.format(column='score')}), ({_PREVIOUS.format(column='id')}) "
               f"FROM history h {where} ORDER BY h.started_at DESC, h.rowid DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, query.limit)).fetchall()
        return [_entry(row) for row in rows]

    def result_json(self, entry_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT result_json FROM history WHERE id=?", (entry_id,)).fetchone()
        return str(row[0]) if row else None


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """$LOADKIT_DB, else $XDG_STATE_HOME/loadkit/loadkit.db, else ~/.local/state/loadkit/loadkit.db."""
    env = os.environ if env is None else env
    if env.get("LOADKIT_DB"):
        return Path(env["LOADKIT_DB"]).expanduser()
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"  # XDG: absolute
    return base / "loadkit" / "loadkit.db"


def describe(kind: HistoryKind | str, result: Result, *, plan: str | None = None,
             canary: str | tuple[str, str] | None = None) -> HistoryEntry:
    """The history row of a result model (pure: nothing is written)."""
    kind = HistoryKind(kind)
    name = plan or _first_name(result, _NAME_FIELDS[kind])
    if not name:
        raise ValueError(f"a {kind.value} result without {' or '.join(_NAME_FIELDS[kind])}: pass plan=NAME")
    namespace, workload = _canary(result, canary)
    started = _utc(result.started_at)
    ended = getattr(result, "ended_at", None)
    # a run stopped early (--abort-on-fail) was not scored: no score, so no trend from or to it
    score = None if getattr(result, "stopped_early", None) is not None else getattr(result, "score", None)
    return HistoryEntry(
        id=uuid.uuid4().hex[:12], kind=kind, name=name, target=_target(result), namespace=namespace,
        canary=workload, started_at=started, ended_at=_utc(ended) if isinstance(ended, datetime) else started,
        recorded_at=datetime.now(UTC), verdict=_text(result.verdict),
        score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
        schema_version=int(getattr(result, "schema_version", SCHEMA_VERSION)),
    )


def save_result(kind: HistoryKind | str, result: Result, db_path: Path | str | None = None, *,
                plan: str | None = None, canary: str | tuple[str, str] | None = None) -> HistoryEntry:
    """Store one result in the history; `db_path` None is `default_db_path()`.

    `kind` is run, chaos or gameday; `plan` names the series when the result does not (a game day's
    plan name); `canary` is "NAMESPACE/NAME" or (namespace, name). Raises StoreError when the
    database cannot be written: callers that must not fail on it (the CLI) warn instead.
    """
    entry = describe(kind, result, plan=plan, canary=canary)
    path = Path(db_path) if db_path is not None else default_db_path()
    history = History(path)
    try:
        history.add(entry, result.model_dump_json())
    except sqlite3.Error as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc
    finally:
        history.close()
    return entry


def _first_name(result: object, fields: tuple[str, ...]) -> str:
    for field in fields:
        value = getattr(result, field, None)
        value = getattr(value, "name", value) if not isinstance(value, str) else value  # a plan model
        if isinstance(value, str) and value:
            return value
    return ""


def _target(result: object) -> str:
    target = getattr(result, "target", None)
    if target is None:
        target = getattr(result, "targets", None)
    if isinstance(target, list | tuple):
        return ", ".join(str(getattr(t, "url", t)) for t in target)
    return str(getattr(target, "url", target)) if target is not None else ""


def _canary(result: object, canary: str | tuple[str, str] | None) -> tuple[str, str]:
    if isinstance(canary, tuple):
        return canary
    if isinstance(canary, str) and canary:
        namespace, sep, name = canary.partition("/")
        if not sep or not namespace or not name:
            raise ValueError(f"canary {canary!r}: write it as NAMESPACE/NAME")
        return namespace, name
    own_namespace, own_name = getattr(result, "namespace", None), getattr(result, "canary", None)
    if isinstance(own_namespace, str) and isinstance(own_name, str):  # ScoreResult-like results say it
        return own_namespace, own_name
    return "", ""


def _text(value: object) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    """Fixed width, so that text order is time order in SQL."""
    return _utc(value).isoformat(timespec="microseconds")


def _where(query: HistoryQuery) -> tuple[str, list[object]]:
    where: list[str] = []
    args: list[object] = []
    for clause, value in (("h.kind = ?", query.kind.value if query.kind else None),
                          ("h.namespace = ?", query.namespace), ("h.canary = ?", query.canary),
                          ("h.started_at >= ?", _iso(query.since) if query.since else None)):
        if value is not None:
            where.append(clause)
            args.append(value)
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    (entry_id, kind, name, target, namespace, canary, started, ended, recorded, verdict, score, version,
     previous_score, previous_id) = row
    judged = score is not None and verdict not in UNJUDGED and previous_score is not None
    return HistoryEntry(
        id=entry_id, kind=HistoryKind(kind), name=name, target=target, namespace=namespace, canary=canary,
        started_at=datetime.fromisoformat(started), ended_at=datetime.fromisoformat(ended),
        recorded_at=datetime.fromisoformat(recorded), verdict=verdict, score=score,
        trend=round(float(score) - float(previous_score), 6) if judged else None,
        previous_id=previous_id if judged else None, schema_version=int(version),
    )
