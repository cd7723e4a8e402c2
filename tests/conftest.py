"""Shared fixtures. Tests are hermetic: no KUBECONFIG, no LOADKIT_*/LOCUST_* from the caller."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent

# A local URL where nothing listens, and nothing can start to: a port this process holds bound but never
# listens on (connections to it are refused, no other process can bind it). Not a fixed port such as :9,
# which something else on the machine may be serving.
_NOWHERE_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_NOWHERE_SOCKET.bind(("127.0.0.1", 0))
NOWHERE = f"http://127.0.0.1:{_NOWHERE_SOCKET.getsockname()[1]}"

# pytest-xdist gives its workers COLUMNS=80 and LINES=24: loadkit's children would then wrap their
# output at 80 columns, which a pipe or a CI log never does. Tests see what a pipe sees.
# The user's own loadkit, Locust and Kubernetes settings never reach a test: scrubbed here, at import,
# before any fixture (module- and session-scoped ones too) starts a sandbox or a server.
for _key in list(os.environ):
    if _key in ("COLUMNS", "LINES", "KUBECONFIG") or _key.startswith(("LOADKIT_", "LOCUST_")):
        os.environ.pop(_key, None)


# `make test` runs the suite on pytest-xdist workers, a file to a worker (its module-scoped sandboxes
# and servers are started once). Files that run minutes of real load are cut into this many parts
# of consecutive tests, each part a group of its own, so no one worker carries a long tail.
SPLIT = {
    "tests/load/test_run_sandbox.py": 3,
    "tests/load/test_workers.py": 2,
    "tests/load/test_rate_runs.py": 2,
    "tests/webhook/test_flagger_loop.py": 4,
    "tests/webhook/test_webhook_e2e.py": 3,
    "tests/cli/test_output_truth.py": 2,
    "tests/chaos/test_chaos_sandbox.py": 4,
    "tests/chaos/test_chaos_k8s.py": 3,
    "tests/chaos/test_chaos_leftovers.py": 2,
    "tests/prometheus/test_server_side.py": 2,
    "tests/webhook/test_webhook_bad_input.py": 2,
}


def groups_of(nodeids: Iterable[str]) -> dict[str, str]:
    """Each test's group: its file, or for a file in SPLIT a part of consecutive tests."""
    by_file: dict[str, list[str]] = {}
    for nodeid in nodeids:
        by_file.setdefault(nodeid.split("::", 1)[0], []).append(nodeid)
    group: dict[str, str] = {}
    for path, ids in by_file.items():
        parts = min(SPLIT.get(path, 1), len(ids))
        for index, nodeid in enumerate(ids):
            group[nodeid] = f"{path}#{index * parts // len(ids)}" if parts > 1 else path
    return group


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Send the files with the most slow tests first, so the longest ones start at once rather than last.
    A file's tests stay together and in their order: the scheduler cuts the same parts (`groups_of`) from
    the order it receives."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    weight = {f: sum(1 for t in tests if t.get_closest_marker("slow")) for f, tests in by_file.items()}
    items[:] = [t for f in sorted(by_file, key=lambda f: -weight[f]) for t in by_file[f]]


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (-p no:xdist) the suite runs in one process
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Give each xdist worker whole groups (`groups_of`), in the collection's order.

    xdist's own `--dist loadgroup` reads a test's group from a suffix it writes into the test's node id,
    which pytest 9.2 no longer takes (it sets Node._nodeid; nodeid now comes from Node._id): every test
    was a work unit of its own, so a module's fixtures (sandboxes, servers, a browser) started again on
    each worker that ran one of its tests, several times a module. This keeps a group on one worker.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                self._groups = groups_of(self.collection or [])
            return self._groups.get(nodeid, nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False  # keep the order pytest_collection_modifyitems gave
    return ByGroup(config, log)


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
def loadkit_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`loadkit ARGS` in this process, in a fresh tmp dir: through `loadkit.cli.main`, the function the
    console script and `python -m loadkit` call, so the exit code and stderr are the real ones (click's
    standalone mode turns usage errors into exit 2, `LoadkitGroup` maps loadkit's errors) without a
    Python start-up per case. main()'s SIGTERM handler and pipe-safe stdout are undone afterwards."""
    from loadkit.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        sigterm, stdout = signal.getsignal(signal.SIGTERM), sys.stdout
        try:
            with pytest.raises(SystemExit) as exited:
                main(list(args))
        finally:
            signal.signal(signal.SIGTERM, sigterm)
            sys.stdout = stdout
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["loadkit", *args], exited.value.code, out.out, out.err)

    return run


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
        if httpcalls.get(f"{url}/-/ready", timeout=2).status_code != 200:
            return False
        up = httpcalls.get(f"{url}/api/v1/query", params={"query": "up == 1"}, timeout=2).json()
        return len(up["data"]["result"]) == targets
    except httpx.TransportError:
        return False


def scraped(prometheus: str, query: str, at_least: float = 0.0, timeout: float = 15) -> None:
    """Wait until Prometheus has scraped `query` to a value >= at_least (a busy machine scrapes late)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpcalls.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
        result = answer.json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= at_least:
            return
        assert time.monotonic() < deadline, f"Prometheus never had {query} >= {at_least}: {result}"
        time.sleep(0.25)


# -- the sandbox: one set of fixtures for every test package -----------------------------------------

@pytest.fixture(scope="module")
def start_sandbox() -> Iterator[Callable[..., SandboxProcess]]:
    """Start sandboxes with SandboxProcess keyword arguments (`start_sandbox(canary_error_rate=0.03)`);
    every one is stopped after the module."""
    with contextlib.ExitStack() as stack:

        def start(**kwargs: Any) -> SandboxProcess:
            return stack.enter_context(SandboxProcess(**kwargs))

        yield start


@pytest.fixture(scope="session")
def healthy_sandbox() -> Iterator[SandboxProcess]:
    """One healthy sandbox per test worker, shared across files, for tests that only send it traffic
    and read it: never a fault, a kill or a config change (those take `sandbox`, their module's own)."""
    with SandboxProcess() as running:
        yield running


@pytest.fixture(scope="module")
def sandbox(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """A healthy sandbox of this module's own: its tests may fault it, kill its pods, restart it."""
    return start_sandbox()


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
