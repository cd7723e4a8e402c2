"""`loadkit demo`: the whole loop on the local sandbox, no cluster needed."""

from __future__ import annotations

import click

from loadkit.cli._options import DurationType, output_option

BROKEN_ERROR_RATE = 0.05
BROKEN_LATENCY_MS = 600


@click.command("demo")
@click.option("--broken-canary", is_flag=True,
              help=f"Give the canary {BROKEN_ERROR_RATE:.0%} 503s and +{BROKEN_LATENCY_MS} ms: a failing verdict.")
@click.option("--profile", "-p", default="smoke", show_default=True, help="Traffic profile to run.")
@click.option("--duration", "-t", type=DurationType(), default="15s", show_default=True, help="Run time.")
@output_option
def demo(broken_canary: bool, profile: str, duration: float, output: str) -> int:
    """Start the sandbox, load its canary route, print the scorecard, stop the sandbox.

    \b
    Examples:
      loadkit demo                     # a healthy canary: PASS, exit 0
      loadkit demo --broken-canary     # 5 % errors and +600 ms: FAIL, exit 1
    """
    from loadkit.cli._console import stderr_console
    from loadkit.cli._execute import execute_run
    from loadkit.sandbox import SandboxProcess

    err = stderr_console()
    faults = {"canary_error_rate": BROKEN_ERROR_RATE, "canary_latency_ms": BROKEN_LATENCY_MS} if broken_canary else {}
    err.print("starting the bruno-site sandbox (primary + canary, 2 pods each)...", highlight=False)
    with SandboxProcess(**faults) as sandbox:  # type: ignore[arg-type]
        err.print(f"sandbox up: traffic {sandbox.traffic_url}, metrics {sandbox.metrics_url}", highlight=False)
        return execute_run(
            target=f"{sandbox.traffic_url}/canary", profile=profile, locustfile=None, users=None,
            spawn_rate=None, duration=duration, headers={}, processes=1, config_path=None, output=output,
            junit_path=None, report_dir=None, min_samples=None, quiet=False,
        )
