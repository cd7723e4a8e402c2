"""One sandbox pod: `python -m loadkit.sandbox.pod --version canary --index 0 [--error-rate 0.1]`.

Listens on 127.0.0.1 (any free port), prints one JSON line `{"port": N}` on stdout once it accepts
connections, then serves until SIGTERM or SIGINT — or until its stdin reaches EOF. The supervisor
holds the write end of that stdin pipe, so when the supervisor dies, even by SIGKILL, the kernel
closes the pipe and every pod follows it instead of lingering as an orphan.

Faults are deterministic, not random: with `--error-rate F` the pod answers exactly floor(i * F)
of its first i app requests with 503, evenly spread (see `_faults.ErrorInjector`), and every app
request waits `--latency-ms` first; `/healthz` and `/_pod/...` are never delayed or failed.

Deliberately argparse, not click: pods start in parallel and each saved import is startup time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading

from loadkit.sandbox._spec import DEFAULT_NAMESPACE, PodIdentity, Version


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadkit.sandbox.pod", description=__doc__.split("\n")[0])
    parser.add_argument("--version", type=Version, choices=list(Version), required=True)
    parser.add_argument("--index", type=int, required=True, help="pod ordinal, part of the pod name")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 503")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay added before each answer")
    parser.add_argument("--db-port", type=int, help="the database (PostgreSQL) the stock pages read")
    parser.add_argument("--external-port", type=int, help="the external shipping service the shipping pages call")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-stdin-watch",
        dest="stdin_watch",
        action="store_false",
        help="keep running when stdin reaches EOF (for running a pod by hand with stdin closed)",
    )
    return parser.parse_args(argv)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` once stdin reaches EOF; a thread because stdin may be a pipe, a file or a TTY."""

    def read_until_eof() -> None:
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except (OSError, ValueError):
            pass
        with contextlib.suppress(RuntimeError):  # the loop closed: the pod is stopping anyway
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_until_eof, name="stdin-eof-watch", daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    # Imported here so `--help` and argument errors stay instant.
    from aiohttp import web
    from prometheus_client import disable_created_metrics

    from loadkit.sandbox._site import create_site_app

    disable_created_metrics()  # `_created` series only add noise to the merged exposition
    identity = PodIdentity(args.namespace, args.version, args.index)
    app = create_site_app(identity, error_rate=args.error_rate, latency_ms=args.latency_ms,
                          db_port=args.db_port, external_port=args.external_port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"port": port}), flush=True)
        if args.stdin_watch:
            _watch_stdin(loop, stop)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
