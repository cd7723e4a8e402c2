"""`loadkit run`: put a traffic profile on a target and score it against the thresholds."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli._options import (
    DurationType,
    config_option,
    history_options,
    load_options,
    output_option,
    prometheus_options,
    rate_option,
)


@click.command("run")
@click.option("--target", required=True, metavar="URL",
              help="Base URL of the canary route, e.g. http://127.0.0.1:8080/canary.")
@load_options
@rate_option
@click.option("--baseline", metavar="URL",
              help="The primary's URL, for compare checks ({baseline: primary}): the same profile runs against it "
                   "at the same time, e.g. http://127.0.0.1:8080 on the sandbox.")
@prometheus_options
@config_option
@output_option
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write JUnit XML (one testcase per check) to this file.")
@click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write result.json, junit.xml, report.html, timeline.csv and locust.log here.")
@click.option("--min-samples", type=click.IntRange(min=1),
              help="Fewer requests than this is a FAIL with 'insufficient data' (default 100).")
@click.option("--quiet", "-q", is_flag=True, help="No live progress on stderr.")
@click.option("--workers", type=int, metavar="N",
              help="Load from N Locust workers over TCP (Locust's distributed mode): local ones, or with "
                   "--master-bind remote ones (`loadkit worker --master HOST:PORT`) the run waits for.")
@click.option("--master-bind", metavar="HOST:PORT",
              help="With --workers: listen here for remote workers, e.g. 0.0.0.0:5557 (no auth/TLS: "
                   "firewall it to the workers).")
@click.option("--workers-wait", type=DurationType(),
              help="How long to wait for the --workers to connect (default 60s); fewer exits 3.")
@click.option("--abort-on-fail", is_flag=True,
              help="Stop as soon as the whole run's verdict is certain to fail (the requests so far break a "
                   "threshold even if every request still planned is perfect) and exit 1, saying when and why. "
                   "A run that would pass goes to its end.")
@history_options
def run(target: str, profile: str, locustfile: str | None, users: int | None, spawn_rate: float | None,
        duration: float | None, headers: tuple[tuple[str, str], ...], processes: int,
        config_path: Path | None, output: str, junit_path: Path | None, report_dir: Path | None,
        min_samples: int | None, quiet: bool, baseline: str | None, prometheus_url: str | None,
        canary_name: str | None, namespace: str | None, db_path: Path | None, no_history: bool,
        workers: int | None = None, master_bind: str | None = None, workers_wait: float | None = None,
        rate: float | None = None, max_in_flight: int | None = None, abort_on_fail: bool = False) -> int:
    """Run a load profile against TARGET and score it.

    \b
    Examples:
      loadkit run --target http://127.0.0.1:8080/canary --profile smoke
      loadkit run --target http://bruno-site-canary.bruno:80 -p steady -u 50 -t 2m -o json | jq .verdict
      loadkit run --target http://127.0.0.1:8080 -H 'x-canary: insider' --junit load.xml
      loadkit run --target http://127.0.0.1:8080 -p steady -u 500 --workers 4
      loadkit run --target http://site.bruno:80 -p stress --workers 8 --master-bind 0.0.0.0:5557
      loadkit run --target http://127.0.0.1:8080/canary --rate 100 -t 1m   # open model: 100 iterations/s
      loadkit run --target http://127.0.0.1:8080/canary -p steady --abort-on-fail   # a broken canary fails early
      loadkit run --target http://127.0.0.1:8080/canary --config loadkit.yaml \\
          --prometheus http://127.0.0.1:9090 --canary bruno-site --namespace bruno --baseline http://127.0.0.1:8080

    The result is kept in the history (see `loadkit history`; --db, --no-history).
    With --abort-on-fail (or `abort_on_fail: true` on a threshold) a run whose failure is already certain
    stops early and is judged FAIL: every output says when (seconds into the run) and why.
    Exits 0 when every threshold is met, 1 when one fails (or there was too little data),
    2 on bad input, 3 when the target or Locust fails, 130 when interrupted.
    """
    from loadkit.cli._execute import execute_run
    from loadkit.cli._history import Keep

    return execute_run(
        target=target, profile=profile, locustfile=locustfile, users=users, spawn_rate=spawn_rate,
        duration=duration, headers=dict(headers), processes=processes, config_path=config_path,
        output=output, junit_path=junit_path, report_dir=report_dir, min_samples=min_samples, quiet=quiet,
        baseline=baseline, prometheus_url=prometheus_url, canary_name=canary_name, namespace=namespace,
        keep=Keep(db_path, enabled=not no_history), workers=workers, master_bind=master_bind,
        workers_wait=workers_wait, rate=rate, max_in_flight=max_in_flight, abort_on_fail=abort_on_fail,
    )
