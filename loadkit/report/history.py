"""`loadkit history` as a table: one line per stored run, chaos run or game day, newest first."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.store import HistoryEntry, judged
from loadkit.units import fmt

_VERDICT_STYLES = {"pass": "bold green", "marginal": "bold yellow", "interrupted": "bold yellow",
                   "halted": "bold magenta"}


def trend_text(trend: float | None) -> str:
    """+5 (better than the previous of its series), -3.5 (worse), ±0, or - (nothing to compare with)."""
    if trend is None:
        return "-"
    if round(trend, 2) == 0:
        return "±0"
    return f"+{fmt(trend)}" if trend > 0 else fmt(trend)


def _score(entry: HistoryEntry) -> str:
    """A stored score, for what judged something; an interrupted, errored or dry run shows none."""
    return fmt(entry.score) if entry.score is not None and judged(entry.verdict, entry.score) else "-"


def render_history(entries: list[HistoryEntry], console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("time (UTC)", "kind", "name", "target", "verdict", "score", "trend"):
        table.add_column(column, justify="right" if column in ("score", "trend") else "left")
    for entry in entries:
        target = entry.target
        if entry.canary:
            target = f"{target} ({entry.namespace}/{entry.canary})" if target else f"{entry.namespace}/{entry.canary}"
        table.add_row(entry.started_at.strftime("%Y-%m-%d %H:%M"), entry.kind.value, entry.name, target,
                      Text(entry.verdict.upper(), style=_VERDICT_STYLES.get(entry.verdict, "bold red")),
                      _score(entry), trend_text(entry.trend))
    console.print(table)
