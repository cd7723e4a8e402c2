"""Start `loadkit serve`: validate everything, bind, announce, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
import uvicorn

from loadkit.config import load_config
from loadkit.errors import EXIT_INTERRUPTED, UsageError
from loadkit.webhook.app import create_app
from loadkit.webhook.logs import configure as configure_logs
from loadkit.webhook.policy import Policy
from loadkit.webhook.runs import RunManager
from loadkit.webhook.settings import ServeSettings, compile_patterns, read_token
from loadkit.webhook.store import Store
from loadkit.webhook.ui_charts import ChartViews

GRACEFUL_S = 30


def build_settings(*, config_path: Path | None, db_path: Path, allow_targets: tuple[str, ...],
                   allow_namespaces: tuple[str, ...], max_concurrent_runs: int, max_body: int,
                   token_file: Path | None, public_url: str | None, retention_s: float,
                   prometheus_url: str | None = None) -> ServeSettings:
    config = load_config(config_path)
    if prometheus_url is not None:
        if not prometheus_url.startswith(("http://", "https://")):
            raise UsageError(f"--prometheus {prometheus_url!r} is not a URL",
                             hint="give Prometheus' base URL, e.g. --prometheus http://prometheus.istio-system:9090")
        config = dataclasses.replace(config, prometheus=config.prometheus.model_copy(update={"url": prometheus_url}))
    return ServeSettings(
        config=config,
        db_path=db_path,
        policy=Policy(allow_targets=compile_patterns([*allow_targets, *config.server.allow_targets], "--allow-target"),
                      allow_namespaces=compile_patterns([*allow_namespaces, *config.server.allow_namespaces],
                                                        "--allow-namespace")),
        max_concurrent_runs=max_concurrent_runs,
        max_body_bytes=max_body,
        token=read_token(token_file, os.environ.get("LOADKIT_TOKEN")),
        public_url=public_url,
        retention_s=retention_s,
    )


class _Signals:
    """Remembers SIGINT/SIGTERM outside uvicorn's own handling: before it starts and after it
    re-raises the signal it handled, so a signal is never lost and Ctrl-C still exits 130."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, sig: int, _frame: FrameType | None) -> None:
        self.received.append(sig)

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)

    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if signal.SIGINT in self.received else 0


class _Server(uvicorn.Server):
    """Announces readiness once listening; on SIGTERM/SIGINT stops the load runs first, so hooks
    waiting on them answer at once."""

    def __init__(self, config: uvicorn.Config, manager: RunManager, signals: _Signals,
                 announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.manager, self.signals, self.announce = manager, signals, announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        self.announce()
        if self.signals.received:  # arrived while starting: honour it now
            self.handle_exit(self.signals.received[-1], None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals.received.append(sig)
        self.manager.begin_shutdown()
        super().handle_exit(sig, frame)


def run_server(settings: ServeSettings, *, host: str, port: int, output: str, views: ChartViews,
               log_format: str = "text") -> int:
    """`views`: what /ui draws its charts and reports with (cli/serve.py wires loadkit/report's)."""
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    if settings.public_url is None:
        settings = ServeSettings(**{**settings.__dict__, "public_url": url})
    configure_logs(log_format)
    try:
        store = Store(settings.db_path, url_for=settings.run_url)
    except Exception as exc:  # sqlite3.Error or OSError: a bad --db path
        sock.close()
        raise UsageError(f"cannot open --db {settings.db_path}: {exc}", hint="choose a writable file") from None
    manager = RunManager(store, settings.config.min_samples, settings.max_concurrent_runs, url_for=settings.run_url,
                         prometheus=settings.config.prometheus, rollback=settings.config.server.rollback,
                         idle_timeout_s=settings.config.server.idle_timeout)
    app = create_app(settings, store, manager, views=views)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="auto", http="auto",
                            timeout_graceful_shutdown=GRACEFUL_S)  # auto: uvloop and httptools (see pyproject)
    signals = _Signals()
    signals.install()
    try:
        _Server(config, manager, signals, lambda: _announce(settings, url, output)).run(sockets=[sock])
    finally:
        store.close()
    return signals.exit_code()  # SIGTERM is a normal stop (0); Ctrl-C is 130


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="pick another --port (0 picks a free one) or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _announce(settings: ServeSettings, url: str, output: str) -> None:
    profiles = sorted(settings.config.profiles)
    sets = ["default", *sorted(settings.config.threshold_sets)]
    if output == "json":
        click.echo(json.dumps({"schema_version": 1, "url": url, "db": str(settings.db_path), "profiles": profiles,
                               "threshold_sets": sets, "max_concurrent_runs": settings.max_concurrent_runs}))
    else:
        click.echo(f"loadkit serve listening on {url}  (db {settings.db_path}; profiles: {', '.join(profiles)}; "
                   f"threshold sets: {', '.join(sets)})")
    sys.stdout.flush()
