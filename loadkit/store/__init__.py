"""The one loadkit database (SQLite, WAL): its schema and migrations, and the history of every run,
chaos run and game day. The webhook keeps its tables here too (loadkit/webhook/store.py).

    from loadkit.store import save_result
    save_result("gameday", result, db_path, plan="bruno-site")
"""

from loadkit.store._db import SCHEMA_VERSION, Database
from loadkit.store.history import (
    History,
    HistoryEntry,
    HistoryKind,
    HistoryList,
    HistoryQuery,
    default_db_path,
    describe,
    judged,
    save_result,
)

__all__ = ["SCHEMA_VERSION", "Database", "History", "HistoryEntry", "HistoryKind", "HistoryList", "HistoryQuery",
           "default_db_path", "describe", "judged", "save_result"]
