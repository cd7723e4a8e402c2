"""Review of issue 12: SIGTERM while the "finished" notification is sent (run_gameday has restored the
CLI's handlers by then) ends loadkit with "stopped by SIGTERM": no result on stdout, no report directory, no
history row. A CronJob pod deleted at that moment loses the game day."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT, loadkit_cmd
from tests.gameday.conftest import env_for, faults, scenario, write_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox():  # type: ignore[no-untyped-def]
    with SandboxProcess() as running:
        yield running


@pytest.fixture
def slow_finish() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"finished": threading.Event()}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if body.get("kind") == "gameday.finished":
                state["finished"].set()
                time.sleep(3)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_sigterm_during_the_finished_notification_keeps_the_result(sandbox: SandboxProcess,
                                                                   slow_finish: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "finish", "load": {"users": 3},
        "scenarios": [scenario("latency", "local-latency.yaml", variables={"fault_seconds": 1}, cooldown="1s")],
    })
    db = tmp_path / "h.db"
    proc = subprocess.Popen(loadkit_cmd("gameday", "run", str(plan), "--target", f"{sandbox.traffic_url}/canary",
                                        "-o", "json", "--notify", slow_finish["url"], "--db", str(db),
                                        "--report-dir", str(tmp_path / "out")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(sandbox))
    try:
        assert slow_finish["finished"].wait(90)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert faults(sandbox) == []
    # Observed: exit 130 "error: stopped by SIGTERM": the game day had run to its end, but stdout is
    # empty, there is no out/result.json and no history row: the whole result is lost.
    assert stdout.strip().startswith("{"), (proc.returncode, stderr[-300:])
    assert (tmp_path / "out" / "result.json").exists()
