"""`loadkit serve`: the Flagger webhook service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from loadkit.cli._options import DurationType, config_option, output_option

if TYPE_CHECKING:
    from loadkit.webhook.ui_charts import ChartViews


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@config_option
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("loadkit.db"),
              show_default=True, help="SQLite file for runs, results, events and freezes.")
@click.option("--allow-target", "allow_targets", multiple=True, metavar="REGEX",
              help="More targets (full URL) runs may load, repeatable; by default only the payload's own "
                   "<service>-canary, <service>-primary and <service> Services in its namespace.")
@click.option("--allow-namespace", "allow_namespaces", multiple=True, metavar="REGEX",
              help="Canary namespaces that may call, repeatable; default: any but the system namespaces "
                   "(kube-system, istio-system, flux-system, ...) and $POD_NAMESPACE.")
@click.option("--max-concurrent-runs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs at once; past it hooks answer 429 with Retry-After.")
@click.option("--max-body", "max_body", type=click.IntRange(min=256), default=64 * 1024, show_default=True,
              help="Largest request body in bytes; larger ones get 413.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Bearer token for the admin API (gates, rollbacks, freezes, stopping runs); or set LOADKIT_TOKEN.")
@click.option("--public-url", metavar="URL", help="Base URL put in answers' run and /ui links, e.g. http://loadkit.loadkit:8080.")
@click.option("--retention", type=DurationType(), default="30d", show_default=True,
              help="Forget finished runs and events older than this (checked hourly).")
@click.option("--prometheus", "prometheus_url", metavar="URL",
              help="Prometheus for threshold sets with Prometheus checks (default: prometheus.url in the config).")
@output_option(help_text="How to announce readiness on stdout: a line of text, or one JSON line.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="stderr logs: one line per hook answer, run start/end and analysis change; json for log shippers.")
def serve(host: str, port: int, config_path: Path | None, db_path: Path, allow_targets: tuple[str, ...],
          allow_namespaces: tuple[str, ...], max_concurrent_runs: int, max_body: int, token_file: Path | None,
          public_url: str | None, retention: float, prometheus_url: str | None, output: str, log_format: str) -> int:
    """Serve Flagger webhooks that gate canary analysis on scored load runs.

    \b
    Hooks: POST /flagger/<kind> for confirm-rollout, pre-rollout, rollout, confirm-traffic-increase,
    confirm-promotion, rollback, post-rollout and event. Also /healthz, /readyz, /metrics, /runs,
    /runs/{id}, /analyses, /gates/{namespace}/{name}, /events, /admin/freeze and /openapi.json.

    \b
    Examples:
      loadkit serve --config loadkit.yaml --db /var/lib/loadkit/loadkit.db --host 0.0.0.0
      loadkit serve --allow-target '^http://127\\.0\\.0\\.1:\\d+(/.*)?$'     # against the local sandbox

    SIGTERM stops gracefully: running load is stopped and marked interrupted, the store is flushed.
    """
    from loadkit.webhook.server import build_settings, run_server

    settings = build_settings(config_path=config_path, db_path=db_path, allow_targets=allow_targets,
                              allow_namespaces=allow_namespaces, max_concurrent_runs=max_concurrent_runs,
                              max_body=max_body, token_file=token_file, public_url=public_url,
                              retention_s=retention, prometheus_url=prometheus_url)
    workers = settings.config.server.workers
    if workers is not None and workers.address[1] == port:
        from loadkit.errors import UsageError

        raise UsageError(f"server.workers.bind {workers.bind} uses port {port}, the port loadkit serve listens on",
                         hint="give server.workers.bind another port, e.g. 0.0.0.0:5557")
    return run_server(settings, host=host, port=port, output=output, views=report_views(), log_format=log_format)


def report_views() -> ChartViews:
    """The HTML report's charts and report, for /ui (webhook/ never imports report/: it is wired here)."""
    from loadkit.report import ASSETS, asset, chart_specs, render_report
    from loadkit.report.charts import live_specs, trend_specs
    from loadkit.webhook import ui_charts

    return ui_charts.ChartViews(live_specs=live_specs, result_specs=chart_specs, trend_specs=trend_specs,
                      report_html=render_report, asset=asset, assets=ASSETS)
