"""`loadkit history`: the stored runs, chaos runs and game days, with their trend."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from loadkit.cli._options import db_option, output_option

SINCE_HINT = "write a duration back from now such as 30d, 12h or 90m, or a date such as 2026-11-01"
_CANARY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


def parse_since(value: str, now: datetime) -> datetime:
    """`30d`, `12h`, `90m` (back from `now`) or an ISO date/time (UTC unless it has an offset)."""
    from loadkit.units import parse_duration

    text = value.strip()
    if text and text[0].isdigit() and text[-1].isalpha():
        try:
            return now - timedelta(seconds=parse_duration(text))
        except ValueError:
            pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration nor a date: {SINCE_HINT}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


class SinceType(click.ParamType):
    name = "30d|12h|90m|DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value), datetime.now(UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class CanaryType(click.ParamType):
    name = "NAMESPACE/NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        if not _CANARY.match(str(value)):
            self.fail(f"{value!r}: write the canary as NAMESPACE/NAME, e.g. bruno/bruno-site", param, ctx)
        namespace, _, name = str(value).partition("/")
        return namespace, name


@click.command("history")
@click.option("--kind", type=click.Choice(["run", "chaos", "gameday"]), help="Only this kind of result.")
@click.option("--canary", type=CanaryType(), help="Only results about this canary, e.g. bruno/bruno-site.")
@click.option("--since", type=SinceType(), metavar="30d|12h|90m|DATE",
              help="Only results that started after this: 30d, 12h, 90m back, or a date.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many results, newest first.")
@db_option
@output_option(help_text="text: a table; json: the entries with schema_version on stdout.")
def history(kind: str | None, canary: tuple[str, str] | None, since: datetime | None, limit: int,
            db_path: Path | None, output: str) -> int:
    """List the stored runs, chaos runs and game days: verdict, score and trend.

    The trend is the score's change from the previous judged result of the same series: the same
    plan for game days, the same profile (run) or experiment (chaos) against the same target.

    \b
    Examples:
      loadkit history
      loadkit history --kind gameday --since 90d
      loadkit history --canary bruno/bruno-site --since 2026-11-01 -o json | jq '.entries[0].trend'
    """
    from loadkit.cli._console import stdout_console
    from loadkit.errors import EXIT_PASS
    from loadkit.report.history import render_history
    from loadkit.store import History, HistoryKind, HistoryList, HistoryQuery, default_db_path

    path = db_path or default_db_path()
    query = HistoryQuery(kind=HistoryKind(kind) if kind else None, namespace=canary[0] if canary else None,
                         canary=canary[1] if canary else None, since=since, limit=limit)
    entries = []
    if path.exists():  # a history never written is empty, not an error (and is not created by reading)
        store = History(path)
        try:
            entries = store.entries(query)
        finally:
            store.close()
    if output == "json":
        click.echo(HistoryList(db=str(path), entries=entries).model_dump_json(indent=2))
    elif entries:
        render_history(entries, stdout_console())
    else:
        click.echo(_nothing(path, query))
    return EXIT_PASS


def _nothing(path: Path, query: Any) -> str:
    if not path.exists():
        return (f"no history yet: {path} does not exist. loadkit run, chaos run and gameday run keep their "
                "results there (or give --db PATH / LOADKIT_DB).")
    filters = [f"{label} {value}" for label, value in (
        ("kind", query.kind.value if query.kind else None),
        ("canary", f"{query.namespace}/{query.canary}" if query.canary else None),
        ("since", query.since.isoformat(timespec="minutes") if query.since else None)) if value]
    return f"no results in {path}" + (f" ({', '.join(filters)})" if filters else "") + "."
