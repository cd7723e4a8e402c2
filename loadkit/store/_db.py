"""The one loadkit database: SQLite in WAL mode, its schema, and the migrations that bring an older
file forward in place.

Every writer (the webhook, `loadkit run`, `chaos run`, `gameday run`) opens the same file through
`Database`, so a file written by any loadkit version opens in any later one: `PRAGMA user_version`
says which migrations it has, and the missing ones run at open, each in its own transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadkit.errors import StoreError

# Version 0: the first release's tables (the webhook's). Later versions are the migrations below,
# applied in order. Never edit one that has shipped: add the next.
_SCHEMA_V0 = """
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

_MIGRATIONS: tuple[str, ...] = (
    # 1: analyses as the unit of state; gates; counters that never go down when rows are pruned.
    """
    ALTER TABLE runs ADD COLUMN analysis TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN plan_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN continuous INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN decisive TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_by_analysis ON runs (analysis, created_at);
    ALTER TABLE events ADD COLUMN analysis TEXT NOT NULL DEFAULT '';
    CREATE TABLE analyses (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL, status TEXT NOT NULL,
        opened_at TEXT NOT NULL, opened_by TEXT NOT NULL,
        closed_at TEXT, outcome TEXT, reason TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX one_open_analysis_per_canary ON analyses (namespace, name) WHERE status = 'open';
    CREATE INDEX analyses_by_canary ON analyses (namespace, name, opened_at);
    CREATE TABLE gates (
        namespace TEXT NOT NULL, name TEXT NOT NULL, analysis TEXT NOT NULL, hook TEXT NOT NULL,
        state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, name, analysis, hook)
    );
    CREATE TABLE counters (
        name TEXT NOT NULL, labels TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name, labels)
    );
    INSERT INTO counters (name, labels, value)
        SELECT 'runs', status || '|' || COALESCE(verdict, ''), COUNT(*) FROM runs WHERE status != 'running'
        GROUP BY status, verdict;
    """,
    # 2: the history of every run, chaos run and game day, whoever ran it (the CLI, a CronJob).
    # `schema_version` is the result model's, so a reader knows how to parse `result_json`; `name`
    # is the profile, experiment or plan, the series a trend follows.
    """
    CREATE TABLE history (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('run', 'chaos', 'gameday')),
        name TEXT NOT NULL, target TEXT NOT NULL DEFAULT '',
        namespace TEXT NOT NULL DEFAULT '', canary TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL, ended_at TEXT NOT NULL, recorded_at TEXT NOT NULL,
        verdict TEXT NOT NULL, score REAL,
        schema_version INTEGER NOT NULL, result_json TEXT NOT NULL
    );
    CREATE INDEX history_by_time ON history (started_at);
    CREATE INDEX history_by_series ON history (kind, name, target, started_at);
    CREATE INDEX history_by_canary ON history (namespace, canary, started_at);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class Database:
    """One connection to the loadkit database, guarded by a lock (calls are short), migrated at open.

    A file that is not a loadkit database, or one written by a newer loadkit, is a `StoreError`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer loadkit (schema {version}, this one reads up to "
                             f"{SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            # Each step in its own write transaction, reading the version again under the lock:
            # another process (a second CLI, the webhook) may have migrated the file meanwhile.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if int(self._db.execute("PRAGMA user_version").fetchone()[0]) == number:
                    for statement in _statements((_SCHEMA_V0 if number == 0 else "") + _MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number + 1}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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


def _statements(script: str) -> list[str]:
    """The statements of a migration (none of ours has a `;` inside a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]
