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
