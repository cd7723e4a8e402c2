"""Keeping a result in the history: what `loadkit run`, `chaos run` and `gameday run` do at the end.

The history is a record, not the verdict: a database that cannot be written is a warning on stderr,
and the command's output and exit code are what they would have been without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadkit.cli._console import stderr_console


@dataclass(frozen=True)
class Keep:
    """`--db PATH` / `--no-history`, as parsed: where results go, or that they go nowhere."""

    db_path: Path | None = None
    enabled: bool = True

    def save(self, kind: str, result: Any, *, plan: str | None = None,
             canary: str | tuple[str, str] | None = None) -> None:
        """Store `result`; never raises (but for KeyboardInterrupt): a failure is a warning."""
        if not self.enabled:
            return
        from loadkit.store import default_db_path, save_result

        path = self.db_path or default_db_path()
        try:
            save_result(kind, result, path, plan=plan, canary=canary)
        except Exception as exc:  # any failure to keep a record: warn, never change the verdict
            err = stderr_console()
            err.print(f"warning: the result was not saved in the history ({path}): "
                      f"{getattr(exc, 'message', None) or exc}", highlight=False, markup=False)
            err.print("  fix: give a writable file with --db PATH or LOADKIT_DB, or skip it with --no-history",
                      highlight=False, markup=False)

    def history(self, kind: str, name: str, limit: int = 100) -> list[Any]:
        """The stored results of one series (kind and name), newest first; [] when there is no history to
        read (disabled, or the database cannot be opened: the report then has no trend, nothing fails)."""
        if not self.enabled:
            return []
        from loadkit.store import History, HistoryKind, HistoryQuery, default_db_path

        path = self.db_path or default_db_path()
        try:
            db = History(path)
            try:
                entries = db.entries(HistoryQuery(kind=HistoryKind(kind), limit=limit))
            finally:
                db.close()
        except Exception:  # a report without its trend is still the report
            return []
        return [e for e in entries if e.name == name]
