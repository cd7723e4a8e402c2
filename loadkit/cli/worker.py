"""`loadkit worker`: a Locust worker for a loadkit master (a worker pod's command)."""

from __future__ import annotations

import click


@click.command("worker")
@click.option("--master", "master", required=True, metavar="HOST:PORT",
              help="The master's address as this machine reaches it, e.g. loadkit-master.loadkit:5557.")
@click.option("--once", is_flag=True,
              help="Exit after one run (a Job's pod); by default wait for the next master after each run.")
def worker(master: str, once: bool) -> int:
    """Put this machine's load behind a loadkit master: `loadkit run --workers N --master-bind HOST:PORT`,
    or `loadkit serve` with `server.workers`.

    \b
    Examples:
      loadkit worker --master loadkit-master.loadkit:5557
      loadkit worker --master 10.0.0.5:5557 --once

    The plan and the locustfile come from the master; a master of another loadkit version refuses the
    worker (exit 2). Locust's worker protocol has no authentication or TLS: let only workers reach the
    master's port. Exits 0 after a run with --once, 2 on bad input or a refusal, 3 when no master answers.
    """
    from loadkit.errors import UsageError
    from loadkit.load.worker import serve_worker
    from loadkit.units import parse_host_port

    try:
        host, port = parse_host_port(master)
    except ValueError as exc:
        raise UsageError(f"--master {exc}", hint="give the master's address and worker port, "
                         "e.g. --master loadkit-master.loadkit:5557") from None
    return serve_worker(host, port, once=once)
