"""`loadkit worker`: a Locust worker for a loadkit master (a worker pod's command)."""

from __future__ import annotations

import click

from loadkit.cli._options import DurationType


@click.command("worker")
@click.option("--master", "master", required=True, metavar="HOST:PORT",
              help="The master's address as this machine reaches it, e.g. loadkit-master.loadkit:5557.")
@click.option("--once", is_flag=True,
              help="Exit after one run (a Job's pod); by default wait for the next master after each run.")
@click.option("--pin", is_flag=True,
              help="Refuse a plan that does not pin the load to the run's target (loadkit serve's plans always "
                   "do): a worker pod's guard against a master that would send its load elsewhere.")
@click.option("--connect-timeout", type=DurationType(), default="60s", show_default=True,
              help="With --once: no master answering (and giving a plan) within this long exits 3.")
@click.option("--locustfile", "-f", "locustfile", type=click.Path(exists=True, dir_okay=False),
              help="Run this locustfile (baked into the worker's image) instead of importing the one the master "
                   "sends: no code from the master runs here.")
def worker(master: str, once: bool, pin: bool = False, connect_timeout: float = 60.0,
           locustfile: str | None = None) -> int:
    """Put this machine's load behind a loadkit master: `loadkit run --workers N --master-bind HOST:PORT`,
    or `loadkit serve` with `server.workers`.

    \b
    Examples:
      loadkit worker --master loadkit-master.loadkit:5557
      loadkit worker --master 10.0.0.5:5557 --once

    The plan and the locustfile come from the master; a master of another loadkit version refuses the
    worker (exit 2). Locust's worker protocol has no authentication or TLS: let only workers reach the
    master's port, and set the same LOADKIT_WORKER_TOKEN (a Secret) on the master and its workers so a
    worker obeys only a master that knows it. The locustfile the master sends is imported (code runs
    here) before that check: see docs/distributed.md. Exits 0 after a run with --once, 2 on bad input or
    a refusal, 3 when no master answers within --connect-timeout (or it ended before a plan), 130 on
    Ctrl-C/SIGTERM.
    """
    from loadkit.errors import UsageError
    from loadkit.load.worker import serve_worker
    from loadkit.units import parse_host_port

    try:
        host, port = parse_host_port(master)
    except ValueError as exc:
        raise UsageError(f"--master {exc}", hint="give the master's address and worker port, "
                         "e.g. --master loadkit-master.loadkit:5557") from None
    if locustfile is not None and "," in locustfile:
        raise UsageError(f"--locustfile {locustfile} contains a comma", hint="Locust splits -f on commas; rename it")
    return serve_worker(host, port, once=once, pin=pin, connect_timeout_s=connect_timeout, locustfile=locustfile)
