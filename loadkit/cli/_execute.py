"""Wiring shared by `loadkit run` and `loadkit demo`: plan, run with progress, render, exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from loadkit.analysis import baseline_target, require, run_scored
from loadkit.cli._console import stderr_console, stdout_console
from loadkit.cli._history import Keep
from loadkit.cli._progress import Progress
from loadkit.cli._server import server_side
from loadkit.config import Config, load_config
from loadkit.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS, ConfigError, LoadkitError, UsageError
from loadkit.load.plan import plan_run
from loadkit.load.profiles import get_profile
from loadkit.load.runner import LoadPlan
from loadkit.models.results import RunResult, ScoreResult, Verdict
from loadkit.report import render_scorecard, result_json, write_junit, write_report_dir
from loadkit.report.junit import checks_junit, error_junit, write_text
from loadkit.report.text import render_score
from loadkit.scoring import FailFast
from loadkit.units import fmt, host_port


def execute_run(*, target: str, profile: str, locustfile: str | None, users: int | None,
                spawn_rate: float | None, duration: float | None, headers: dict[str, str],
                processes: int, config_path: Path | None, output: str, junit_path: Path | None,
                report_dir: Path | None, min_samples: int | None, quiet: bool, baseline: str | None = None,
                prometheus_url: str | None = None, canary_name: str | None = None,
                namespace: str | None = None, keep: Keep | None = None, workers: int | None = None,
                master_bind: str | None = None, workers_wait: float | None = None, rate: float | None = None,
                max_in_flight: int | None = None, abort_on_fail: bool = False) -> int:
    prepare_outputs(junit_path, report_dir)
    with error_outputs(junit_path, report_dir, f"loadkit.{profile}"):
        return _execute(target=target, profile=profile, locustfile=locustfile, users=users, spawn_rate=spawn_rate,
                        duration=duration, headers=headers, processes=processes, config_path=config_path,
                        output=output, junit_path=junit_path, report_dir=report_dir, min_samples=min_samples,
                        quiet=quiet, baseline=baseline, prometheus_url=prometheus_url, canary_name=canary_name,
                        namespace=namespace, keep=keep, workers=workers, master_bind=master_bind,
                        workers_wait=workers_wait, rate=rate, max_in_flight=max_in_flight,
                        abort_on_fail=abort_on_fail)


def _execute(*, target: str, profile: str, locustfile: str | None, users: int | None,
             spawn_rate: float | None, duration: float | None, headers: dict[str, str],
             processes: int, config_path: Path | None, output: str, junit_path: Path | None,
             report_dir: Path | None, min_samples: int | None, quiet: bool, baseline: str | None,
             prometheus_url: str | None, canary_name: str | None, namespace: str | None,
             keep: Keep | None, workers: int | None, master_bind: str | None, workers_wait: float | None,
             rate: float | None = None, max_in_flight: int | None = None, abort_on_fail: bool = False) -> int:
    config = load_config(config_path)
    server = server_side(config, prometheus_url=prometheus_url, canary_name=canary_name, namespace=namespace,
                         baseline=baseline)
    chosen = get_profile(profile, config.profiles)
    plan = plan_run(chosen, target=target, locustfile=locustfile, users=users, spawn_rate=spawn_rate,
                    duration_s=duration, headers=headers, processes=processes,
                    base_dir=config.path.parent if config.path else None, workers=workers,
                    master_bind=master_bind, workers_wait_s=workers_wait, rate=rate,
                    max_in_flight=max_in_flight)
    samples = min_samples or config.min_samples
    require(config.thresholds, server)  # settings and queries refused before the header, not after
    fail_fast = _fail_fast(config, samples, plan, abort_on_fail)
    err = stderr_console()
    against = f" (and the baseline {server.baseline_url} at once)" if baseline_target(config.thresholds, server) \
        else ""
    on = f" on {plan.workers} worker{'s' if plan.workers > 1 else ''}" if plan.workers else ""
    load = f"peak {fmt(plan.peak_rate)} iterations/s" if plan.open_model else \
        f"peak {max(s.users for s in plan.stages)} users"
    err.print(f"loadkit: {plan.profile} ({plan.locustfile.name}, {load}{on}, {plan.duration_s:g}s) -> {plan.target}"
              f"{against}", highlight=False)
    if plan.master_bind is not None:
        host = plan.master_bind[0] if plan.master_bind[0] not in ("0.0.0.0", "*", "::") else "THIS-HOST"
        err.print(f"loadkit: waiting up to {plan.workers_wait_s:g}s for {plan.workers} worker(s): `loadkit worker "
                  f"--master {host_port(host, plan.master_bind[1])}` (Locust's worker protocol has no "
                  "authentication or TLS: let only the workers reach this port)", highlight=False)
    for t in fail_fast.thresholds:
        if t.delay_abort_eval is not None and t.delay_abort_eval >= plan.duration_s:
            err.print(f"loadkit: warning: {t.name}: delay_abort_eval {t.delay_abort_eval:g}s is not shorter than the "
                      f"run ({plan.duration_s:g}s): it cannot stop this run (shorten delay_abort_eval)",
                      highlight=False)
    if abort_on_fail and not fail_fast.enabled:
        err.print("loadkit: --abort-on-fail: no threshold here can be decisive (only request-success-rate, "
                  "error-rate and client-side latency checks can), so the run goes to its end", highlight=False)
    with Progress(err, plan.duration_s, config.thresholds, samples, enabled=not quiet) as progress:
        result = run_scored(plan, config.thresholds, samples, on_snapshot=progress.update, log_dir=report_dir,
                            server=server, fail_fast=fail_fast)
    if result.stopped_early is not None:
        err.print(f"loadkit: {result.stopped_early.summary}", highlight=False)
    if keep is not None:
        keep.save("run", result, canary=(server.workload.namespace, server.workload.name) if server.workload else None)
    emit(result, output=output, junit_path=junit_path, report_dir=report_dir)
    return exit_code(result)


def _fail_fast(config: Config, min_samples: int, plan: LoadPlan, every: bool) -> FailFast:
    """Stops the run once its whole-run verdict is certain to fail (the plan's length and peak load
    bound what is still to come)."""
    peak = plan.peak_rate if plan.open_model else max((s.users for s in plan.stages), default=0)
    try:
        return FailFast(config.thresholds, min_samples, planned_s=plan.duration_s, every=every, peak_load=peak)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="abort_on_fail works on request-success-rate, error-rate and "
                          "client-side latency checks") from exc


@contextmanager
def error_outputs(junit_path: Path | None, report_dir: Path | None, suite: str) -> Iterator[None]:
    """A run that ends in an error (exit 2, 3 or 130 before a result) still says why in the files CI
    reads: JUnit gets an `<error>` testcase, the report directory an error.txt and that junit.xml."""
    try:
        yield
    except LoadkitError as exc:
        _write_error(exc.message, exc.hint, exc.exit_code, junit_path, report_dir, suite)
        raise
    except KeyboardInterrupt:
        _write_error("interrupted before there was a result", None, EXIT_INTERRUPTED, junit_path, report_dir, suite)
        raise


def _write_error(message: str, hint: str | None, code: int, junit_path: Path | None, report_dir: Path | None,
                 suite: str) -> None:
    xml = error_junit(suite, message, hint, code, datetime.now(UTC))
    with contextlib.suppress(OSError):  # a path we cannot write is the error being reported already
        if junit_path is not None:
            write_text(junit_path, xml)
        if report_dir is not None:
            write_text(report_dir / "junit.xml", xml)
            write_text(report_dir / "error.txt", f"loadkit ended without a result (exit {code}):\n{message}\n"
                       + (f"fix: {hint}\n" if hint else ""))


def prepare_outputs(junit_path: Path | None, report_dir: Path | None) -> None:
    """Fail before the run, not after it, when a result file cannot be written."""
    try:
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / ".loadkit-write-check").touch()
            (report_dir / ".loadkit-write-check").unlink()
        if junit_path is not None:
            junit_path.parent.mkdir(parents=True, exist_ok=True)
            junit_path.touch()
    except OSError as exc:
        which = "--report-dir" if report_dir is not None and exc.filename and str(report_dir) in str(exc.filename) \
            else "--junit"
        raise UsageError(f"cannot write {which} {exc.filename}: {exc.strerror or exc}",
                         hint="choose a writable path") from exc


def emit(result: RunResult, *, output: str, junit_path: Path | None, report_dir: Path | None) -> None:
    """stdout gets the result (scorecard or JSON); files get the rest."""
    if output == "json":
        click.echo(result_json(result))
    else:
        render_scorecard(result, stdout_console())
    try:
        if junit_path is not None:
            write_junit(result, junit_path)
        if report_dir is not None:
            write_report_dir(result, report_dir)
    except OSError as exc:
        raise UsageError(f"the run finished but {exc.filename} could not be written: {exc.strerror or exc}",
                         hint="the result is on stdout above; choose a writable path next time") from exc


def emit_score(result: ScoreResult, *, output: str, junit_path: Path | None) -> None:
    if output == "json":
        click.echo(result.model_dump_json(indent=2))
    else:
        render_score(result, stdout_console())
    if junit_path is not None:
        try:
            write_text(junit_path, checks_junit(
                f"loadkit.score.{result.canary}", result.checks, result.evaluated_at, result.evaluated_at,
                {"target": result.target, "prometheus": result.prometheus, "verdict": result.verdict.value,
                 "score": fmt(result.score)}, result.warnings))
        except OSError as exc:
            raise UsageError(f"the result is on stdout but {exc.filename} could not be written: "
                             f"{exc.strerror or exc}", hint="choose a writable --junit path") from exc


def exit_code(result: RunResult | ScoreResult) -> int:
    if isinstance(result, RunResult) and result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PASS if result.verdict is Verdict.PASS else EXIT_FAIL
