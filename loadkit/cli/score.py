"""`loadkit score`: score a canary from Prometheus alone, as Flagger's analysis would, with no load."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli._options import DurationType, config_option, output_option, prometheus_options


@click.command("score")
@prometheus_options
@click.option("--interval", type=DurationType(),
              help="Each query's window, Flagger's metric interval (default: prometheus.interval, 1m).")
@click.option("--thresholds", "thresholds_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML list of checks (or a loadkit config); default: the config's thresholds.")
@config_option
@output_option
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write JUnit XML (one testcase per check) to this file.")
def score(prometheus_url: str | None, canary_name: str | None, namespace: str | None, interval: float | None,
          thresholds_path: Path | None, config_path: Path | None, output: str, junit_path: Path | None) -> int:
    """Score a canary from Prometheus now: Flagger's queries and your own, no load.

    Built-in metrics (request-success-rate, request-duration, ...) use Flagger's Istio queries;
    custom checks use their `query:`; compare checks compare the canary's series with the
    primary's (NAME-primary) over the same window.

    \b
    Examples:
      loadkit score --prometheus http://127.0.0.1:9090 --canary bruno-site --namespace bruno
      loadkit score --prometheus http://prometheus.istio-system:9090 --canary podinfo --namespace test \\
          --interval 5m --thresholds checks.yaml -o json | jq .verdict

    Exits 0 when every check passes, 1 when one fails (no data is a fail, as in Flagger),
    2 on bad input or a query Prometheus refuses, 3 when Prometheus cannot be reached.
    """
    from loadkit.analysis import for_prometheus_only, score_now
    from loadkit.cli._execute import emit_score, error_outputs, exit_code, prepare_outputs
    from loadkit.cli._server import server_side
    from loadkit.config import load_config, load_thresholds

    prepare_outputs(junit_path, None)
    with error_outputs(junit_path, None, "loadkit.score"):
        config = load_config(config_path)
        checks = load_thresholds(thresholds_path) if thresholds_path is not None else config.thresholds
        server = server_side(config, prometheus_url=prometheus_url, canary_name=canary_name, namespace=namespace,
                             interval_s=interval or config.prometheus.interval)
        result = score_now(for_prometheus_only(checks), server)
    emit_score(result, output=output, junit_path=junit_path)
    return exit_code(result)
