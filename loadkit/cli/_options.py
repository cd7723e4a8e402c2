"""Options shared by several commands, defined once."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from loadkit.units import MAX_RATE, parse_duration, parse_header

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class HeaderType(click.ParamType):
    name = "'NAME: VALUE'"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_header(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class RateType(click.ParamType):
    """Iterations per second: a finite number above 0 (`--rate 0` would start nothing), at most MAX_RATE."""

    name = "PER_SECOND"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            rate = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number; give iterations per second, e.g. --rate 100", param, ctx)
        if not math.isfinite(rate):
            self.fail(f"{value} is not a finite number; give iterations per second, e.g. --rate 100", param, ctx)
        if rate <= 0:
            self.fail(f"{value} is not above 0; give iterations per second, e.g. --rate 100", param, ctx)
        if rate > MAX_RATE:
            self.fail(f"{value} is more than loadkit schedules in one run ({MAX_RATE:.0f} iterations/s, all its "
                      "processes and workers together); give a lower rate", param, ctx)
        return rate


RATE_HELP = ("Open model: start this many iterations (one task of a user) per second, whether or not earlier "
             "ones finished; latency counts from each iteration's intended start. Instead of --users.")


def rate_option(f: F) -> F:
    """`--rate R --max-in-flight N`: an open-model run."""
    f = click.option("--max-in-flight", type=click.IntRange(min=1),
                     help="With --rate: iterations running at once per Locust process (default: two seconds of "
                          "the rate, at least 100); an arrival finding them all busy waits, and is dropped "
                          "after 1 s.")(f)
    return click.option("--rate", type=RateType(), help=RATE_HELP)(f)


RESULT_OUTPUT_HELP = "text: a scorecard; json: the result model on stdout."


def output_option(f: F | None = None, *, help_text: str = RESULT_OUTPUT_HELP) -> Any:
    """`--output text|json`; use as `@output_option` or `@output_option(help_text=...)`."""
    decorator = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help=help_text)
    return decorator(f) if f is not None else decorator


def config_option(f: F) -> F:
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        help="YAML config with profiles and thresholds (default: ./loadkit.yaml if present).",
    )(f)


def load_options(f: F) -> F:
    """Profile overrides shared by run-like commands."""
    options = [
        click.option("--profile", "-p", default="smoke", show_default=True,
                     help="Named traffic profile (see: loadkit profiles)."),
        click.option("--locustfile", "-f", help="A Locust file or a built-in journey (website, api)."),
        click.option("--users", "-u", type=click.IntRange(min=1), help="Peak users (rescales the profile)."),
        click.option("--spawn-rate", "-r", type=click.FloatRange(min=0, min_open=True),
                     help="Users started per second."),
        click.option("--duration", "-t", type=DurationType(), help="Run time, e.g. 30s, 5m, 1h30m."),
        click.option("--header", "-H", "headers", type=HeaderType(), multiple=True,
                     help="Extra request header, repeatable, e.g. -H 'x-canary: insider'."),
        click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Locust processes (one per core) for more load; uses Locust's --processes."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def prometheus_options(f: F) -> F:
    """`--prometheus URL --canary NAME --namespace NS`: where Prometheus checks read from."""
    options = [
        click.option("--prometheus", "prometheus_url", metavar="URL",
                     help="Prometheus base URL for Prometheus checks (default: prometheus.url in the config)."),
        click.option("--canary", "canary_name", metavar="NAME",
                     help="The canary workload, Flagger's target (e.g. bruno-site); the primary is NAME-primary."),
        click.option("--namespace", metavar="NS", help="The canary's namespace (e.g. bruno)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


DB_HELP = ("The history database (default: $LOADKIT_DB, else $XDG_STATE_HOME/loadkit/loadkit.db, "
           "i.e. ~/.local/state/loadkit/loadkit.db).")


def db_option(f: F) -> F:
    """`--db PATH`: the loadkit database the history is read from or written to."""
    return click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), envvar="LOADKIT_DB",
                        help=DB_HELP)(f)


def history_options(f: F) -> F:
    """`--db PATH --no-history`: where a command keeps its result (see `loadkit history`)."""
    f = click.option("--no-history", is_flag=True,
                     help="Do not keep this result in the history database.")(f)
    return db_option(f)
