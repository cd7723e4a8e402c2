"""`loadkit profiles`: list the traffic profiles (built-in and from the config file)."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli._options import config_option, output_option


@click.command("profiles")
@config_option
@output_option
def profiles(config_path: Path | None, output: str) -> int:
    """List the named traffic profiles with their shape, load (users, or iterations/s), duration and journey.

    \b
    Example:
      loadkit profiles
      loadkit profiles --output json | jq '.profiles[].name'
    """
    from rich.table import Table

    from loadkit.cli._console import stdout_console
    from loadkit.config import load_config
    from loadkit.models.results import ProfileList
    from loadkit.units import fmt, format_duration

    config = load_config(config_path)
    listing = ProfileList(profiles=[p.info() for p in sorted(config.profiles.values(), key=lambda p: p.name)])
    if output == "json":
        click.echo(listing.model_dump_json(indent=2))
        return 0
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "shape", "load", "duration", "locustfile", "description"):
        table.add_column(column)
    for p in listing.profiles:
        load = f"{fmt(p.rate)}/s" if p.rate is not None else f"{p.users} users"
        table.add_row(p.name, p.shape, load, format_duration(p.duration_s), p.locustfile, p.description)
    stdout_console().print(table)
    return 0
