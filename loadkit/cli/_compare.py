"""Wiring of `loadkit compare`: pick the mode, get the samples, judge, render, exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from loadkit.analysis import compare_now, compare_scored
from loadkit.cli._console import stderr_console, stdout_console
from loadkit.cli._execute import error_outputs, prepare_outputs
from loadkit.cli._progress import Progress
from loadkit.cli._server import server_side
from loadkit.config import load_config
from loadkit.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS, UsageError
from loadkit.load.plan import plan_run
from loadkit.load.preflight import validate_target
from loadkit.load.profiles import get_profile
from loadkit.models.results import Classification, CompareVerdict, Comparison
from loadkit.models.specs import CompareSpec, Source
from loadkit.models.wire import Stats
from loadkit.report import write_report_dir
from loadkit.report.junit import comparison_junit, write_text
from loadkit.report.text import render_comparison
from loadkit.units import fmt, with_unit


def execute_compare(*, target: str | None, baseline: str | None, profile: str, locustfile: str | None,
                    users: int | None, spawn_rate: float | None, duration: float | None, headers: dict[str, str],
                    processes: int, prometheus_url: str | None, canary_name: str | None, namespace: str | None,
                    interval: float | None, step: float | None, settings: dict[str, Any], config_path: Path | None,
                    output: str, quiet: bool, junit_path: Path | None = None, report_dir: Path | None = None) -> int:
    prepare_outputs(junit_path, report_dir)
    with error_outputs(junit_path, report_dir, "loadkit.compare"):
        comparison, interrupted = _compare(
            target=target, baseline=baseline, profile=profile, locustfile=locustfile, users=users,
            spawn_rate=spawn_rate, duration=duration, headers=headers, processes=processes,
            prometheus_url=prometheus_url, canary_name=canary_name, namespace=namespace, interval=interval,
            step=step, settings=settings, config_path=config_path, quiet=quiet)
    if output == "json":
        click.echo(comparison.model_dump_json(indent=2))
    else:
        render_compare(comparison, stdout_console())
    if junit_path is not None:
        write_text(junit_path, comparison_junit(comparison))
    if report_dir is not None:
        write_report_dir(comparison, report_dir)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PASS if comparison.verdict is CompareVerdict.PASS else EXIT_FAIL


def _compare(*, target: str | None, baseline: str | None, profile: str, locustfile: str | None,
             users: int | None, spawn_rate: float | None, duration: float | None, headers: dict[str, str],
             processes: int, prometheus_url: str | None, canary_name: str | None, namespace: str | None,
             interval: float | None, step: float | None, settings: dict[str, Any], config_path: Path | None,
             quiet: bool) -> tuple[Comparison, bool]:
    config = load_config(config_path)
    err = stderr_console()
    interrupted = False
    if target is not None:
        if prometheus_url is not None or interval is not None or step is not None:
            raise UsageError("--target runs load; --prometheus, --interval and --step read Prometheus: use one way",
                             hint="loadkit compare --target CANARY_URL --baseline PRIMARY_URL, or "
                                  "loadkit compare --prometheus URL --canary NAME --namespace NS")
        if baseline is None:
            raise UsageError("--baseline URL is missing: the primary to compare the canary with",
                             hint="e.g. --target http://127.0.0.1:8080/canary --baseline http://127.0.0.1:8080")
        # before it is printed: a bad one (credentials) is never echoed
        baseline = validate_target(baseline, "--baseline")
        spec = CompareSpec.model_validate({**settings, "source": Source.CLIENT})
        plan = plan_run(get_profile(profile, config.profiles), target=target, locustfile=locustfile, users=users,
                        spawn_rate=spawn_rate, duration_s=duration, headers=headers, processes=processes,
                        base_dir=config.path.parent if config.path else None)
        err.print(f"loadkit compare: {plan.profile} ({plan.locustfile.name}, {plan.duration_s:g}s) against "
                  f"{plan.target} and {baseline} at once", highlight=False)
        with Progress(err, plan.duration_s, [], 0, enabled=not quiet) as progress:
            comparison, interrupted = compare_scored(plan, baseline, spec, on_snapshot=progress.update)
    else:
        server = server_side(config, prometheus_url=prometheus_url, canary_name=canary_name, namespace=namespace,
                             interval_s=interval or config.prometheus.interval)
        if server.prometheus is None:
            raise UsageError("say where the samples come from: --target and --baseline URLs (runs load), or "
                             "--prometheus URL with --canary NAME --namespace NS",
                             hint="see loadkit compare --help")
        window = interval or config.prometheus.interval
        if step is not None and step >= window:
            raise UsageError(f"--step {step:g}s is not shorter than the window ({window:g}s): the comparison needs "
                             "one latency point per step", hint="e.g. --interval 10m --step 15s")
        spec = CompareSpec.model_validate({**settings, "source": Source.PROMETHEUS, "interval": interval,
                                           **({"baseline": baseline} if baseline else {})})
        comparison = compare_now(spec, server)
    return comparison, interrupted


def render_compare(comparison: Comparison, console: Console) -> None:
    render_comparison(comparison, console, title="loadkit compare")
    for label, stats in (("canary", comparison.canary_stats), ("baseline", comparison.baseline_stats)):
        if stats is not None:
            console.print(f"  {label:<8} {_stats_line(stats)}", highlight=False)
    if comparison.queries and any(m.classification is Classification.NODATA for m in comparison.metrics):
        console.print("  no data on a side: check the workload names; the queries are in --output json",
                      highlight=False, style="yellow")


def _stats_line(s: Stats) -> str:
    return (f"requests {s.requests:,}  errors {with_unit(s.error_rate_pct, '%')}  p50 {with_unit(s.p50_ms, 'ms')}  "
            f"p99 {with_unit(s.p99_ms, 'ms')}  rps {fmt(s.rps)}")
