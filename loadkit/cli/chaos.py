"""`loadkit chaos run|validate|cleanup`: Chaos Toolkit experiments under load, scored and rolled back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from loadkit.cli._options import (
    DurationType,
    RateType,
    config_option,
    history_options,
    output_option,
    prometheus_options,
)


def _parse_var(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """`k=v` or `k:type=v` (type: str, int, float, bool, json), like `chaos run --var`."""
    out: dict[str, Any] = {}
    casts: dict[str, Callable[[str], Any]] = {
        "str": str, "int": int, "float": float, "json": json.loads,
        "bool": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
    }
    for value in values:
        key, sep, raw = value.partition("=")
        name, _, kind = key.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: write it as key=value or key:type=value")
        try:
            out[name.strip()] = casts[kind or "str"](raw)
        except KeyError:
            raise click.BadParameter(f"{value!r}: unknown type {kind!r} (str, int, float, bool, json)") from None
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from None
    return out


def guard_options(f: Any) -> Any:
    for option in reversed([
        click.option("--allow-primary", is_flag=True, help="Allow actions on the primary workload (it serves users)."),
        click.option("--allow-namespace", "allow_namespaces", multiple=True, metavar="REGEX",
                     help="Namespaces actions may touch, repeatable (default: any but system namespaces)."),
        click.option("--max-kill-share", type=click.FloatRange(0, 1, min_open=True),
                     help="Largest share of a workload's pods a kill may take (default 0.5)."),
        click.option("--max-fault-duration", "max_fault_s", type=DurationType(),
                     help="Longest a fault may stay (its TTL, a pause while it is on); default 15m."),
        click.option("--allow-unguarded", is_flag=True,
                     help="Also run activities loadkit cannot guard (process, http, other modules, controls, "
                          "dynamic configuration): loudly, and recorded in the result."),
        click.option("--var", "variables", multiple=True, callback=_parse_var, metavar="KEY[:TYPE]=VALUE",
                     help="Experiment configuration value, repeatable (like chaos run --var)."),
    ]):
        f = option(f)
    return f


@click.group("chaos")
def chaos() -> None:
    """Chaos Toolkit experiments against the canary, under load, always rolled back.

    \b
    Example:
      loadkit chaos run experiments/local-latency.yaml --target http://127.0.0.1:8080/canary
    """


@chaos.command("run")
@click.argument("experiment", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--target", metavar="URL", help="Where the load goes (default: the experiment's loadkit_target).")
@click.option("--profile", "-p", default="steady", show_default=True, help="Traffic profile; its peak users hold.")
@click.option("--users", "-u", type=click.IntRange(min=1), help="Users of load (overrides the profile's peak).")
@click.option("--rate", type=RateType(), help="Open model: iterations per second held through the experiment, "
              "latency from each intended start (instead of --users).")
@guard_options
@click.option("--dry-run", is_flag=True, help="Run the probes and the load only; no action (fault) runs.")
@click.option("--cooldown", type=DurationType(), default="10s", show_default=True,
              help="Keep the load on after the rollbacks to measure the recovery (at least a recovery window).")
@click.option("--recovery-window", type=DurationType(), default="5s", show_default=True,
              help="Recovered = the thresholds hold over a whole window this long.")
@click.option("--impact-window", type=DurationType(), default="5s", show_default=True,
              help="The fault's impact is also judged over its worst rolling window this long (a burst is not "
                   "averaged away over a long fault).")
@prometheus_options
@config_option
@output_option
@click.option("--journal", "journal_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write Chaos Toolkit's journal here.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write JUnit XML (one testcase per check).")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write result.json, junit.xml, report.html and timeline.csv here.")
@history_options
def run(experiment: Path, target: str | None, profile: str, users: int | None, allow_primary: bool,
        allow_namespaces: tuple[str, ...], max_kill_share: float | None, max_fault_s: float | None,
        allow_unguarded: bool, variables: dict[str, Any], dry_run: bool,
        cooldown: float, recovery_window: float, impact_window: float, prometheus_url: str | None,
        canary_name: str | None,
        namespace: str | None, config_path: Path | None, output: str, journal_path: Path | None,
        junit_path: Path | None, report_dir: Path | None, db_path: Path | None, no_history: bool,
        rate: float | None) -> int:
    """Run EXPERIMENT (Chaos Toolkit JSON/YAML) under load and score what happened.

    The load starts before the steady-state hypothesis and runs through the method and the
    rollbacks; rollbacks always run (also on failure, Ctrl-C or SIGTERM). The result has the
    journal's status, the steady states, load per phase, availability during the fault, the
    recovery time, checks, a score and a verdict. Exit codes as for `loadkit run`; a --dry-run
    that ran to its end has the verdict dry-run (never pass), exits 0 and is not kept in the history.
    Prometheus checks in the thresholds (--prometheus) are read over the fault window; the
    workload defaults to the experiment's `canary` and `namespace` configuration. The result is
    kept in the history (see `loadkit history`; --db, --no-history).

    \b
    Examples:
      loadkit chaos run experiments/local-pod-kill.yaml --target http://127.0.0.1:8080/canary
      loadkit chaos run experiments/local-latency.yaml --target http://127.0.0.1:8080/canary --rate 50
      loadkit chaos run experiments/latency-canary.yaml --var canary=bruno-site --var namespace=bruno \\
          --target http://bruno-site-canary.bruno:80 --allow-namespace bruno --junit chaos.xml --report-dir out/
    """
    from loadkit.chaos.models import JournalStatus
    from loadkit.cli._console import stdout_console
    from loadkit.cli._execute import error_outputs, prepare_outputs
    from loadkit.cli._history import Keep
    from loadkit.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS, EXIT_TARGET, UsageError
    from loadkit.models.results import Verdict
    from loadkit.report import write_report_dir
    from loadkit.report.chaos import chaos_junit, render_chaos
    from loadkit.report.junit import write_text

    prepare_outputs(junit_path, report_dir)
    _check_journal(journal_path)
    with error_outputs(junit_path, report_dir, f"loadkit.chaos.{experiment.stem}"):
        result = _run(experiment, target, profile, users, allow_primary, allow_namespaces, max_kill_share,
                      max_fault_s, allow_unguarded, variables, dry_run, cooldown, recovery_window, impact_window,
                      prometheus_url, canary_name, namespace, config_path, journal_path, rate)
    # a dry run tested nothing: it must never be the run the next one trends against
    Keep(db_path, enabled=not no_history and not result.dry_run).save(
        "chaos", result, canary=_canary_of(canary_name, namespace, variables))
    if output == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        render_chaos(result, stdout_console())
    if junit_path is not None:
        write_text(junit_path, chaos_junit(result))
    if report_dir is not None:
        write_report_dir(result, report_dir)
    if result.journal_error:
        raise UsageError(f"the result is above, but the journal could not be written: {result.journal_error}",
                         hint="choose a writable --journal path")
    if result.interrupted or result.verdict is Verdict.INTERRUPTED:
        return EXIT_INTERRUPTED
    if result.verdict is Verdict.ERROR or result.journal_status is JournalStatus.ABORTED:
        return EXIT_TARGET  # nothing was injected, or an activity raised: not a verdict on the canary
    return EXIT_PASS if result.verdict in (Verdict.PASS, Verdict.DRY_RUN) else EXIT_FAIL  # a dry run that ran


def _canary_of(canary_name: str | None, namespace: str | None, variables: dict[str, Any]) -> tuple[str, str] | None:
    """The canary a chaos run was about, for the history: the options, else the experiment's --var."""
    name, ns = canary_name or variables.get("canary"), namespace or variables.get("namespace")
    return (ns, name) if isinstance(name, str) and isinstance(ns, str) and name and ns else None


def _check_journal(path: Path | None) -> None:
    """Fail before the run, not after it, when the journal cannot be written."""
    from loadkit.errors import UsageError

    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        raise UsageError(f"cannot write --journal {path}: {exc.strerror or exc}", hint="choose a writable path") \
            from None


def _run(experiment: Path, target: str | None, profile: str, users: int | None, allow_primary: bool,
         allow_namespaces: tuple[str, ...], max_kill_share: float | None, max_fault_s: float | None,
         allow_unguarded: bool, variables: dict[str, Any], dry_run: bool, cooldown: float, recovery_window: float,
         impact_window: float, prometheus_url: str | None, canary_name: str | None, namespace: str | None,
         config_path: Path | None, journal_path: Path | None, rate: float | None = None) -> Any:
    from loadkit.chaos.driver import ChaosOptions, run_chaos
    from loadkit.cli._console import stderr_console
    from loadkit.cli._server import server_side
    from loadkit.config import load_config

    config = load_config(config_path)
    options = ChaosOptions(experiment_path=experiment, target=target, profile=profile, users=users, rate=rate,
                           variables=variables, dry_run=dry_run, allow_primary=allow_primary,
                           allow_namespaces=allow_namespaces, max_kill_share=max_kill_share,
                           max_fault_s=max_fault_s, allow_unguarded=allow_unguarded, journal_path=journal_path,
                           cooldown_s=cooldown, recovery_window_s=recovery_window, impact_window_s=impact_window,
                           server=server_side(config, prometheus_url=prometheus_url, canary_name=canary_name,
                                              namespace=namespace))
    stderr_console().print(f"loadkit chaos: {experiment} ({'dry run, ' if dry_run else ''}load: {profile})",
                           highlight=False)
    return run_chaos(options, config)


@chaos.command("validate")
@click.argument("experiments", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@guard_options
def validate(experiments: tuple[Path, ...], allow_primary: bool, allow_namespaces: tuple[str, ...],
             max_kill_share: float | None, max_fault_s: float | None, allow_unguarded: bool,
             variables: dict[str, Any]) -> int:
    """Check experiments as Chaos Toolkit does (schema, modules, arguments) plus loadkit's guards.

    \b
    Example:
      loadkit chaos validate experiments/*.yaml
    """
    from loadkit.chaos.driver import ChaosOptions, prepare
    from loadkit.errors import EXIT_PASS, EXIT_USAGE, LoadkitError

    bad = 0
    for path in experiments:
        try:
            prepared = prepare(ChaosOptions(experiment_path=path, variables=variables, allow_primary=allow_primary,
                                            allow_namespaces=allow_namespaces, max_kill_share=max_kill_share,
                                            max_fault_s=max_fault_s, allow_unguarded=allow_unguarded))
            click.echo(f"ok       {path}  ({prepared.experiment.get('title')})")
            for item in prepared.unguarded:
                click.echo(f"         UNGUARDED: {item}")
        except LoadkitError as exc:
            bad += 1
            click.echo(f"invalid  {path}: {exc.message.removeprefix(f'{path}: ')}")
    return EXIT_USAGE if bad else EXIT_PASS


@chaos.command("cleanup")
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="A namespace to clean, repeatable (default: every namespace, if the credentials may list them).")
@click.option("--sandbox", "sandbox_admin_url", metavar="ADMIN_URL",
              help="Also clean this local sandbox (its admin URL; default: $LOADKIT_SANDBOX_ADMIN_URL).")
@click.option("--expired", "expired_only", is_flag=True,
              help="Only objects past their expiry (the frequent reaper: deploy/chaos).")
@click.option("--run", "run_id", metavar="RUN_ID", help="Only what this run created (it may still be going).")
@click.option("--skip-kubernetes", is_flag=True, help="Do not talk to a Kubernetes API (sandbox only).")
def cleanup(namespaces: tuple[str, ...], sandbox_admin_url: str | None, expired_only: bool, run_id: str | None,
            skip_kubernetes: bool) -> int:
    """Remove leftovers labelled app.kubernetes.io/managed-by=loadkit, and sandbox faults of runs that are gone.

    Cleans whatever it can reach and says what it could not (exit 3 then). Without a configured
    Kubernetes it skips the cluster with a note.

    \b
    Examples:
      loadkit chaos cleanup --namespace bruno
      loadkit chaos cleanup --expired --namespace bruno          # what the reaper CronJob runs
      loadkit chaos cleanup --sandbox http://127.0.0.1:8081
    """
    from loadkit.chaos.cleanup import remove_everything
    from loadkit.errors import EXIT_PASS, EXIT_TARGET

    report = remove_everything(namespaces, sandbox_admin_url, kubernetes=not skip_kubernetes,
                               expired_only=expired_only, run=run_id)
    for line in report.lines():
        click.echo(line)
    return EXIT_TARGET if report.failed else EXIT_PASS
