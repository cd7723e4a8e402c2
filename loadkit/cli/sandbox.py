"""`loadkit sandbox up`: run the local canary stack. Thin: parse, wire, render.

The stack itself lives in `loadkit.sandbox` and is imported inside the command so that
`loadkit --help` does not pay for aiohttp.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from loadkit.cli._options import DurationType, output_option
from loadkit.errors import UsageError
from loadkit.sandbox._spec import ISTIO_DEFAULT_RETRY_ON, MAX_RETRIES, MAX_ROUTE_TIMEOUT_S, parse_retry_on

if TYPE_CHECKING:
    from loadkit.sandbox.models import SandboxInfo, WorkloadInfo

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespace(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise click.BadParameter(f"{value!r} is not a Kubernetes namespace name (use a-z, 0-9 and '-')")
    return value


def _retry_on(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_retry_on(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _route_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value > MAX_ROUTE_TIMEOUT_S:
        raise click.BadParameter(f"{value:g} s is longer than the {MAX_ROUTE_TIMEOUT_S:g} s (1h) the sandbox allows")
    return value


@click.group("sandbox")
def sandbox() -> None:
    """A local stand-in for Istio + Flagger: the sample app in two versions behind a router.

    \b
    Example:
      loadkit sandbox up --canary-error-rate 0.1 --canary-latency-ms 50
    """


@sandbox.command("up")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address the router and admin API listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Traffic port (the Istio gateway stand-in); 0 picks a free port.",
)
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics, /healthz, /sandbox and the chaos API (/faults, /pods/kill)."
    "  [default: --port + 1; free with --port 0]",
)
@click.option(
    "--pods",
    type=click.IntRange(1, 32),
    default=2,
    show_default=True,
    help="Pods (OS processes) per version.",
)
@click.option(
    "--canary-weight",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="Percent of unmatched traffic sent to the canary, like Flagger's stepWeight.",
)
@click.option(
    "--primary-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of primary requests answered 503; deterministic: floor(n*rate) of n per pod.",
)
@click.option(
    "--canary-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of canary requests answered 503 (deterministic, like --primary-error-rate).",
)
@click.option(
    "--primary-latency-ms",
    type=click.IntRange(0, 300_000),
    default=0,
    show_default=True,
    help="Delay added to every primary request.",
)
@click.option(
    "--canary-latency-ms",
    type=click.IntRange(0, 300_000),
    default=0,
    show_default=True,
    help="Delay added to every canary request.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, MAX_RETRIES),
    default=0,
    show_default=True,
    help="Retries of a failed try, on another pod of the version (Istio's retries.attempts). 0 is off: "
    "Istio's own default is 2, but the sandbox keeps every count exact unless asked.",
)
@click.option(
    "--retry-on",
    callback=_retry_on,
    metavar="CONDITIONS",
    help="What is retried (Istio's retryOn), comma-separated: 5xx, gateway-error, reset, connect-failure, "
    f"retriable-4xx, retriable-status-codes, or status codes such as 503.  [default: {ISTIO_DEFAULT_RETRY_ON}"
    " with 503, as Istio]",
)
@click.option(
    "--per-try-timeout",
    type=DurationType(),
    callback=_route_timeout,
    help="Timeout of each try, e.g. 500ms (Istio's retries.perTryTimeout); 504 UT when it runs out.  "
    "[default: none]",
)
@click.option(
    "--timeout",
    type=DurationType(),
    callback=_route_timeout,
    help="Timeout of the whole request, retries included, e.g. 10s (Istio's route timeout).  [default: none]",
)
@click.option(
    "--namespace",
    default="bruno",
    show_default=True,
    callback=_namespace,
    help="Namespace label on every metric, as in the cluster the PromQL was written for.",
)
@click.option("--deps", "dependencies", is_flag=True,
              help="Also run the app's dependencies: a PostgreSQL (from PATH) its /api/stock pages read, and an "
              "external shipping service its /api/shipping pages call; dependency faults act on them.")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="Stop when the process that started the sandbox is gone (used by `loadkit demo` and tests).")
@output_option(help_text="How to announce readiness on stdout: a few lines, or exactly one JSON line.")
def up(
    host: str,
    port: int,
    admin_port: int | None,
    pods: int,
    canary_weight: int,
    primary_error_rate: float,
    canary_error_rate: float,
    primary_latency_ms: int,
    canary_latency_ms: int,
    retries: int,
    retry_on: str | None,
    per_try_timeout: float | None,
    timeout: float | None,
    namespace: str,
    dependencies: bool,
    exit_with_parent: bool,
    output: str,
) -> int:
    """Start the sample app (primary and canary pods), the router and the admin API; run until Ctrl-C.

    \b
    Routing, like a Flagger-managed VirtualService:
      /canary, /canary/...       -> canary, prefix stripped
      header x-canary: insider   -> canary
      everything else            -> --canary-weight percent canary, the rest primary

    \b
    Chaos, on the admin port (see docs/sandbox.md):
      POST /faults {"version": "canary", "kind": "abort", "http_status": 503, "percentage": 10}
      POST /pods/kill {"version": "canary", "count": 1}
      DELETE /faults

    \b
    Retries and timeouts, like a VirtualService route's (both versions; off by default):
      --retries 2 --retry-on connect-failure,5xx --per-try-timeout 1s --timeout 10s

    \b
    Examples:
      loadkit sandbox up
      loadkit sandbox up --canary-weight 20 --canary-error-rate 0.05 --canary-latency-ms 30
      loadkit sandbox up --retries 2 --retry-on connect-failure,5xx   # pod kills with retries
      loadkit sandbox up --port 0 --output json      # one JSON line with the chosen ports
      loadkit sandbox up --deps                      # with a database and an external service
    """
    import asyncio

    from rich.text import Text

    from loadkit.cli._console import stderr_console
    from loadkit.sandbox._spec import RoutePolicy, SandboxConfig, Version, VersionSpec
    from loadkit.sandbox._supervisor import run_sandbox

    if admin_port is None and port == 65535:
        raise UsageError("--admin-port: its default, --port + 1, would be 65536", hint="pass --admin-port")
    for option, value in (("--retry-on", retry_on), ("--per-try-timeout", per_try_timeout)):
        if value is not None and retries == 0:  # Istio ignores a retry policy with 0 attempts
            raise UsageError(f"{option} has no effect without --retries: a retry policy with 0 attempts is off",
                             hint="add --retries N (N >= 1), e.g. --retries 2")
    route = RoutePolicy.from_istio(retries, retry_on, per_try_timeout, timeout)
    config = SandboxConfig(
        host=host,
        port=port,
        admin_port=admin_port,
        namespace=namespace,
        canary_weight=canary_weight,
        primary=VersionSpec(Version.PRIMARY, pods, primary_error_rate, primary_latency_ms, route),
        canary=VersionSpec(Version.CANARY, pods, canary_error_rate, canary_latency_ms, route),
        dependencies=dependencies,
    )
    console = stderr_console()

    def log(message: str) -> None:
        console.print(Text(f"sandbox: {message}"), soft_wrap=True)

    def on_ready(info: SandboxInfo) -> None:
        click.echo(info.ready_line() if output == "json" else render_text(info))  # echo flushes

    import os

    parent = os.getppid() if exit_with_parent else None
    return asyncio.run(run_sandbox(config, on_ready=on_ready, log=log, parent_pid=parent))


def render_text(info: SandboxInfo) -> str:
    """The human announcement: where to send traffic, where the metrics are, what runs."""
    weight = info.canary_weight
    lines = [
        f"bruno-site sandbox in namespace {info.namespace!r}: a local Istio + Flagger stand-in",
        f"  traffic  {info.traffic_url}",
        "             /canary, /canary/...      -> canary (prefix stripped)",
        "             header x-canary: insider  -> canary",
        f"             everything else           -> {weight}% canary, {100 - weight}% primary",
        f"  metrics  {info.metrics_url}   (status: {info.admin_url}/sandbox)",
        f"  chaos    {info.admin_url}/faults (router delay/abort), {info.admin_url}/pods/kill",
    ]
    for version, workload in info.workloads.items():
        ports = ", ".join(str(pod.port) for pod in workload.pods)
        pods = f"{len(workload.pods)} pod" + ("s" if len(workload.pods) != 1 else "")
        lines.append(
            f"  {version.value:<8} {workload.name:<19} {pods} (ports {ports})"
            f"  error rate {workload.error_rate * 100:g}%  latency +{workload.latency_ms} ms"
        )
    routes = {version.value: describe_route(workload) for version, workload in info.workloads.items()}
    if len(set(routes.values())) == 1:
        lines.append(f"  routes   {next(iter(routes.values()))}")
    else:
        lines += [f"  routes   {version}: {text}" for version, text in routes.items()]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def describe_route(workload: WorkloadInfo) -> str:
    """E.g. "retries 2 on connect-failure,5xx, 1s per try; timeout 10s", or "no retries; no timeout"."""
    retries = workload.retries
    if retries is None or retries.attempts == 0:
        text = "no retries"
    else:
        codes = ", ".join(str(code) for code in retries.retriable_status_codes)
        text = f"retries {retries.attempts} on {retries.retry_on}" + (f" ({codes})" if codes else "")
        if retries.per_try_timeout_s is not None:
            text += f", {retries.per_try_timeout_s:g}s per try"
    return f"{text}; " + (f"timeout {workload.timeout_s:g}s" if workload.timeout_s else "no timeout")
