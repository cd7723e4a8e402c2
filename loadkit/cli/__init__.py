"""The `loadkit` command line. Thin: parse, wire, render.

This is the one place where exceptions become exit codes (see `LoadkitGroup.invoke`).
Command modules import only click at module level so `loadkit --help` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any, TextIO

import click

from loadkit import __version__
from loadkit.errors import EXIT_INTERRUPTED, EXIT_TARGET, Interrupted, LoadkitError

EXIT_INTERNAL = EXIT_TARGET  # an engine failure, never mistaken for a verdict

EXIT_CODES_HELP = """\b
Exit codes:
  0    pass: every threshold met
  1    fail: at least one threshold failed (or too little data to judge)
  2    usage or config error (bad option, profile, YAML, threshold)
  3    target unreachable or load engine error
  130  interrupted (Ctrl-C / SIGTERM): not judged; what was collected is shown
"""


class LoadkitGroup(click.Group):
    """A click group that maps loadkit errors and command return values to exit codes."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            rv = super().invoke(ctx)
        except LoadkitError as exc:
            _print_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a loadkit bug: say so in one line, keep the traceback for debugging
            if os.environ.get("LOADKIT_DEBUG"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo("  fix: this is a loadkit bug; rerun with LOADKIT_DEBUG=1 for the traceback and report it",
                       err=True)
            ctx.exit(EXIT_INTERNAL)
        if isinstance(rv, int) and ctx.parent is None:
            ctx.exit(rv)
        return rv


def _print_error(exc: LoadkitError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"  fix: {exc.hint}", err=True)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted("stopped by SIGTERM", signal_name=signal.Signals(signum).name)


@click.group(cls=LoadkitGroup, epilog=EXIT_CODES_HELP, context_settings={"auto_envvar_prefix": "LOADKIT"})
@click.version_option(__version__, prog_name="loadkit")
def cli() -> None:
    """Put realistic load on a canary route and decide whether it meets its thresholds.

    \b
    Try it without a cluster:
      loadkit demo                      # sandbox + smoke profile + scorecard
      loadkit sandbox up                # the local canary stack on :8080
      loadkit run --target http://127.0.0.1:8080/canary --profile smoke
    """


def _register() -> None:
    from loadkit.cli import (
        chaos,
        compare,
        demo,
        gameday,
        gate,
        history,
        profiles,
        run,
        sandbox,
        score,
        serve,
        worker,
    )

    cli.add_command(run.run)
    cli.add_command(score.score)
    cli.add_command(compare.compare)
    cli.add_command(chaos.chaos)
    cli.add_command(gameday.gameday)
    cli.add_command(serve.serve)
    cli.add_command(gate.gate)
    cli.add_command(history.history)
    cli.add_command(profiles.profiles)
    cli.add_command(sandbox.sandbox)
    cli.add_command(demo.demo)
    cli.add_command(worker.worker)


_register()


class _PipeSafeStdout:
    """stdout whose reader may go away (`loadkit profiles -o json | head -1`): the rest of the output
    is dropped and the command ends as it would have (its verdict's exit code), with no error."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self._broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)  # so the interpreter's own flush at exit finds no pipe
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _raise_interrupted)
    # Started as a background job (`loadkit run ... &`) a shell hands SIGINT over ignored: `kill -INT`
    # would then do nothing and the run would PASS on. SIGINT always interrupts (exit 130).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not isinstance(sys.stdout, _PipeSafeStdout):
        sys.stdout = _PipeSafeStdout(sys.stdout)  # type: ignore[assignment]
    cli.main(args=argv, prog_name="loadkit")
