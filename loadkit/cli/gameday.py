"""`loadkit gameday run|validate`: a plan of chaos scenarios under one baseline load, scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loadkit.cli._options import config_option, history_options, output_option
from loadkit.cli.chaos import _parse_var

prometheus_url_option = click.option(
    "--prometheus", "prometheus_url", metavar="URL",
    help="Prometheus for stop conditions without a url: (default: prometheus.url in the config).")

GAMEDAY_EXIT_HELP = """\b
Exit codes:
  0    pass: every scenario met its expectation, or DRY-RUN: a --dry-run that
       ran to its end (nothing injected, nothing judged, not in the history)
  1    fail: a scenario did not, or HALTED: a stop condition fired (the system
       under test broke a limit the plan set; the rest were skipped)
  2    bad plan (unknown key, missing experiment, bad query, weight 0, primary
       target without allow_primary): nothing ran
  3    error: the baseline load failed, or a scenario injected nothing
  130  interrupted (SIGTERM / Ctrl-C): the current scenario was rolled back
"""


@click.group("gameday", epilog=GAMEDAY_EXIT_HELP)
def gameday() -> None:
    """Game days: ordered chaos scenarios under one baseline load, with stop conditions and a score.

    \b
    Example:
      loadkit sandbox up --port 8080
      loadkit gameday run experiments/gamedays/sandbox.yaml
    """


@gameday.command("validate", epilog=GAMEDAY_EXIT_HELP)
@click.argument("plan", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--target", metavar="URL", help="Where the load would go (default: the plan's target.url).")
@click.option("--var", "variables", multiple=True, callback=_parse_var, metavar="KEY[:TYPE]=VALUE",
              help="A variable for every scenario that declares it, repeatable (over the plan's variables).")
@prometheus_url_option
@config_option
def validate(plan: Path, target: str | None, variables: dict[str, Any], prometheus_url: str | None,
             config_path: Path | None) -> int:
    """Check PLAN: its keys, every scenario's experiment (as `chaos validate`, with the guards) and its
    stop conditions (a Prometheus query by Prometheus when it answers). Exit 2 when anything is wrong.

    \b
    Example:
      loadkit gameday validate experiments/gamedays/bruno-site.yaml
    """
    from loadkit.errors import EXIT_PASS
    from loadkit.gameday.runner import GameDayOptions, check_plan

    checked = check_plan(GameDayOptions(plan_path=plan, target=target, variables=variables,
                                        prometheus_url=prometheus_url, config_path=config_path), need_target=False)
    spec = checked.plan.spec
    click.echo(f"ok  {plan}  ({spec.name}: {len(spec.scenarios)} scenarios, "
               f"weights {sum(s.weight for s in spec.scenarios)})")
    for note in checked.notes:
        click.echo(f"    note: {note}")
    return EXIT_PASS


@gameday.command("run", epilog=GAMEDAY_EXIT_HELP)
@click.argument("plan", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--target", metavar="URL", help="Where the load goes (default: the plan's target.url).")
@click.option("--var", "variables", multiple=True, callback=_parse_var, metavar="KEY[:TYPE]=VALUE",
              help="A variable for every scenario that declares it, repeatable (over the plan's variables).")
@click.option("--notify", "notify_urls", multiple=True, metavar="URL",
              help="POST start/halt/finish here, repeatable: Slack for hooks.slack.com or slack+https://..., "
                   "else JSON. Also $LOADKIT_NOTIFY_SLACK, $LOADKIT_NOTIFY_WEBHOOK. Never printed (host only).")
@click.option("--notify-file", "notify_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A file of notification URLs, one a line (a mounted secret), repeatable.")
@click.option("--link", metavar="URL", help="A link for the notifications (the CI job, the report).")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write result.json, junit.xml, report.html (and error.txt when it did not pass) here.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write JUnit XML (one testsuite per scenario; halted or interrupted ones are errors).")
@click.option("--dry-run", is_flag=True, help="The load and the probes only; no scenario's action (fault) runs. "
              "Verdict dry-run (not judged, score 0, exit 0 when it ran to its end), never stored in the history.")
@prometheus_url_option
@config_option
@history_options
@output_option
def run(plan: Path, target: str | None, variables: dict[str, Any], notify_urls: tuple[str, ...],
        notify_files: tuple[Path, ...], link: str | None, report_dir: Path | None, junit_path: Path | None,
        dry_run: bool, prometheus_url: str | None, config_path: Path | None, db_path: Path | None,
        no_history: bool, output: str) -> int:
    """Run PLAN: the baseline load for the whole game day, each scenario as one `chaos run` under it.

    A failed scenario does not stop the game day. A stop condition (checked a few times a second)
    halts it at once: the current scenario is rolled back, the rest are skipped, the verdict is
    HALTED (exit 1: not a pass). SIGTERM/SIGINT roll back the current scenario too (exit 130).
    The result goes to stdout (scorecard or -o json); progress to stderr.

    \b
    Examples:
      loadkit gameday run experiments/gamedays/sandbox.yaml --report-dir out/
      loadkit gameday run experiments/gamedays/bruno-site.yaml --notify-file /secrets/slack -o json
    """
    from loadkit.cli._console import stderr_console, stdout_console
    from loadkit.cli._execute import error_outputs, prepare_outputs
    from loadkit.cli._history import Keep
    from loadkit.gameday.models import GameDayResult
    from loadkit.gameday.notify import Notifier, destinations
    from loadkit.gameday.runner import GameDayOptions, check_plan, run_gameday
    from loadkit.report import write_report_dir
    from loadkit.report.gameday import gameday_junit, render_gameday
    from loadkit.report.junit import write_text

    prepare_outputs(junit_path, report_dir)
    err = stderr_console()

    def say(text: str) -> None:
        err.print(text, highlight=False, markup=False)

    def publish(result: GameDayResult) -> None:
        """The judged game day, kept before any notification (a signal then cannot lose it)."""
        target_spec = checked.plan.spec.target
        canary = (target_spec.namespace, target_spec.canary) if target_spec.namespace and target_spec.canary else None
        keep = Keep(db_path, enabled=not no_history)
        if result.dry_run:
            say("loadkit gameday: a dry run is not stored in the history (it judged nothing)")
        else:
            keep.save("gameday", result, plan=result.plan, canary=canary)
        if output == "json":
            click.echo(result.model_dump_json(indent=2))
        else:
            render_gameday(result, stdout_console())
        if junit_path is not None:
            write_text(junit_path, gameday_junit(result))
        if report_dir is not None:
            write_report_dir(result, report_dir, keep.history("gameday", result.plan))

    with error_outputs(junit_path, report_dir, f"loadkit.gameday.{plan.stem}"):
        options = GameDayOptions(plan_path=plan, target=target, variables=variables, dry_run=dry_run,
                                 config_path=config_path, prometheus_url=prometheus_url)
        checked = check_plan(options)
        notifier = Notifier(destinations(notify_urls, notify_files), say, link)
        for note in checked.notes:
            say(f"loadkit gameday: note: {note}")
        result = run_gameday(checked, options, notifier, say, publish=publish)
    return exit_code(result.verdict.value)


def exit_code(verdict: str) -> int:
    from loadkit.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS, EXIT_TARGET

    return {"pass": EXIT_PASS, "dry-run": EXIT_PASS, "fail": EXIT_FAIL, "halted": EXIT_FAIL,
            "interrupted": EXIT_INTERRUPTED, "error": EXIT_TARGET}[verdict]
