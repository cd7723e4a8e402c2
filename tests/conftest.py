"""Shared fixtures. Tests are hermetic: no KUBECONFIG, no LOADKIT_*/LOCUST_* from the caller."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# pytest-xdist gives its workers COLUMNS=80 and LINES=24: loadkit's children would then wrap their
# output at 80 columns, which a pipe or a CI log never does. Tests see what a pipe sees.
for _key in ("COLUMNS", "LINES"):
    os.environ.pop(_key, None)


# The history database defaults to $XDG_STATE_HOME/loadkit/loadkit.db: never the caller's ~. This
# covers module-scoped fixtures and subprocesses too; each test also gets a state directory of its own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="loadkit-tests-state-")
atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in list(os.environ):
        if key.startswith(("LOADKIT_", "LOCUST_")) or key == "KUBECONFIG":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


def loadkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadkit", *args]


def run_loadkit(*args: str, timeout: float = 120, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LOADKIT_", "LOCUST_")) and k != "KUBECONFIG"}
    clean.update(env or {})
    return subprocess.run(loadkit_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=clean, check=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def _prometheus_ready(url: str, targets: int) -> bool:
    """Up, and every target scraped once: a test's traffic starts inside Prometheus' view."""
    try:
        if httpx.get(f"{url}/-/ready", timeout=2).status_code != 200:
            return False
        up = httpx.get(f"{url}/api/v1/query", params={"query": "up == 1"}, timeout=2).json()
        return len(up["data"]["result"]) == targets
    except httpx.TransportError:
        return False


def scraped(prometheus: str, query: str, at_least: float = 0.0, timeout: float = 15) -> None:
    """Wait until Prometheus has scraped `query` to a value >= at_least (a busy machine scrapes late)."""
    deadline = time.monotonic() + timeout
    while True:
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= at_least:
            return
        assert time.monotonic() < deadline, f"Prometheus never had {query} >= {at_least}: {result}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def start_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[list[str]], str]]:
    """`start_prometheus(["127.0.0.1:PORT", ...])` -> URL of a real Prometheus scraping them every 1 s.

    Debian's `prometheus`; `make test` installs it, so a missing binary fails instead of skipping.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make test`, which installs Debian's prometheus")
    with contextlib.ExitStack() as stack:

        def start(targets: list[str]) -> str:
            workdir = tmp_path_factory.mktemp("prometheus")
            listed = ", ".join(f"'{t}'" for t in targets)
            (workdir / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                f"scrape_configs: [{{job_name: sandbox, static_configs: [{{targets: [{listed}]}}]}}]\n"
            )
            url = f"http://127.0.0.1:{_free_port()}"
            process = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

            def stop() -> None:
                process.terminate()
                process.wait(10)

            stack.callback(stop)
            deadline = time.monotonic() + 30
            while not _prometheus_ready(url, len(targets)):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Prometheus did not start (exit {process.poll()})")
                time.sleep(0.1)
            return url

        yield start
