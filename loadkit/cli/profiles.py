"""`loadkit profiles`: list the traffic profiles (built-in and from the config file)."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli._options import config_option, output_option


@click.command("profiles")
@config_option
@output_option
def profiles(config_path: Path | None, output: str) -> int:
    """List the named traffic profiles with their shape, users, duration and journey.

    \b
    Example:
      loadkit profiles
      loadkit profiles --output json | jq '.profiles[].name'
    """
    import json

    from rich.table import Table

    from loadkit.cli._console import stdout_console
    from loadkit.config import load_config
    from loadkit.units import format_duration

    config = load_config(config_path)
    ordered = sorted(config.profiles.values(), key=lambda p: p.name)
    if output == "json":
        rows = [
            {
                "name": p.name, "description": p.description, "shape": p.shape_name, "users": p.users,
                "spawn_rate": p.spawn_rate, "duration_s": p.default_duration(), "locustfile": p.locustfile,
                "headers": dict(p.headers), "source": p.source,
                "stages": [s.__dict__ for s in p.resolve_stages()],
            }
            for p in ordered
        ]
        click.echo(json.dumps({"schema_version": 1, "profiles": rows}, indent=2))
        return 0
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "shape", "users", "duration", "locustfile", "description"):
        table.add_column(column)
    for p in ordered:
        table.add_row(p.name, p.shape_name, str(p.users), format_duration(p.default_duration()), p.locustfile,
                      p.description)
    stdout_console().print(table)
    return 0
