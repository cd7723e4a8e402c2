"""`loadkit compare`: is the canary measurably worse than the primary? (Kayenta-style judge)"""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli._options import DurationType, config_option, load_options, output_option, prometheus_options


@click.command("compare")
@click.option("--target", metavar="URL", help="The canary's URL: run load against it and --baseline at once.")
@click.option("--baseline", metavar="URL|NAME",
              help="The primary: a URL with --target; a workload name with --prometheus (default: CANARY-primary).")
@load_options
@prometheus_options
@click.option("--interval", type=DurationType(),
              help="With --prometheus: the window to compare (default: prometheus.interval, 1m).")
@click.option("--step", type=DurationType(),
              help="With --prometheus: one latency point per step (default: interval/60, at least 1s).")
@click.option("--max-degradation", "max_degradation_pct", type=click.FloatRange(min=0), default=5.0,
              show_default=True, help="Allowed latency increase of the canary's median, in %.")
@click.option("--max-error-increase", "max_error_increase_pct", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="Allowed error-rate increase, in percentage points.")
@click.option("--confidence", type=click.FloatRange(0.5, 1, min_open=True, max_open=True), default=0.98,
              show_default=True, help="A difference counts only when significant at this level (Kayenta: 0.98).")
@click.option("--min-samples", type=click.IntRange(min=3),
              help="Per side: requests (load; default 50) or points (Prometheus; default 20). Fewer is a fail.")
@click.option("--critical", "critical", multiple=True, type=click.Choice(["latency", "error-rate"]),
              help="A failing critical metric fails the comparison whatever the score (default: error-rate).")
@config_option
@output_option(help_text="text: each decision explained; json: the comparison model on stdout.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write JUnit XML (one testcase per compared metric) to this file.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write result.json, junit.xml and report.html (canary and primary overlaid) here.")
@click.option("--quiet", "-q", is_flag=True, help="No live progress on stderr.")
def compare(target: str | None, baseline: str | None, profile: str, locustfile: str | None, users: int | None,
            spawn_rate: float | None, duration: float | None, headers: tuple[tuple[str, str], ...], processes: int,
            prometheus_url: str | None, canary_name: str | None, namespace: str | None, interval: float | None,
            step: float | None, max_degradation_pct: float, max_error_increase_pct: float, confidence: float,
            min_samples: int | None, critical: tuple[str, ...], config_path: Path | None, output: str,
            junit_path: Path | None, report_dir: Path | None, quiet: bool) -> int:
    """Compare the canary with the primary: latency (Mann-Whitney U) and errors (proportion test).

    Two ways to get the samples: run the same profile against both at once (--target and
    --baseline URLs) and compare every request; or read both workloads' series from Prometheus
    over the same window (--prometheus, --canary, --namespace).

    \b
    A metric is `high` (fails) only when the difference is significant AND larger than allowed:
    the canary's median latency more than --max-degradation % above the primary's (the plan's
    "performance impact < 5 %"), or its error rate more than --max-error-increase points higher.
    Score = share of metrics passing; pass >= 95, marginal >= 75, else fail; a failed critical
    metric fails the comparison.

    \b
    Examples:
      loadkit compare --target http://127.0.0.1:8080/canary --baseline http://127.0.0.1:8080 -t 30s
      loadkit compare --target http://127.0.0.1:8080/canary --baseline http://127.0.0.1:8080 --report-dir out/
      loadkit compare --prometheus http://127.0.0.1:9090 --canary bruno-site --namespace bruno --interval 10m

    Exits 0 on pass, 1 on marginal or fail (too little data is a fail), 2 on bad input,
    3 when a target or Prometheus cannot be reached, 130 when interrupted.
    """
    from loadkit.cli._compare import execute_compare

    return execute_compare(
        target=target, baseline=baseline, profile=profile, locustfile=locustfile, users=users, spawn_rate=spawn_rate,
        duration=duration, headers=dict(headers), processes=processes, prometheus_url=prometheus_url,
        canary_name=canary_name, namespace=namespace, interval=interval, step=step,
        settings={"max_degradation_pct": max_degradation_pct, "max_error_increase_pct": max_error_increase_pct,
                  "confidence": confidence, "min_samples": min_samples, "step": step,
                  **({"critical": list(critical)} if critical else {})},
        config_path=config_path, output=output, junit_path=junit_path, report_dir=report_dir, quiet=quiet,
    )
