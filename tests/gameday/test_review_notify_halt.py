"""Review of issue 12: when a stop condition fires, loadkit "stops at once". The halted notification
must not keep the baseline load on the system that just broke a limit (and a slow receiver must not
hold the game day open: httpx's 5 s timeout is per read, so a receiver that trickles never times out)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.gameday.conftest import env_for, faults, gameday, scenario, write_plan

pytestmark = pytest.mark.slow

TRICKLE_S = 8


@pytest.fixture(scope="module")
def sandbox():  # type: ignore[no-untyped-def]
    with SandboxProcess() as running:
        yield running


def canary_requests(sandbox: SandboxProcess) -> float:
    text = httpcalls.get(f"{sandbox.admin_url}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in re.finditer(
        r'^istio_requests_total\{[^}]*destination_version="canary"[^}]*\} ([0-9.e+]+)$', text, re.M))


@pytest.fixture
def slow_receiver(sandbox: SandboxProcess) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            self.send_response(200)
            self.send_header("Content-Length", str(TRICKLE_S))
            self.end_headers()
            if body.get("kind") != "gameday.halted" or "before" in seen:
                self.wfile.write(b"x" * TRICKLE_S)
                return
            seen["before"] = canary_requests(sandbox)
            for _ in range(TRICKLE_S):  # one byte a second: never 5 s without a byte
                time.sleep(1)
                self.wfile.write(b"x")
                self.wfile.flush()
            seen["after"] = canary_requests(sandbox)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_load_stops_when_the_game_day_halts(sandbox: SandboxProcess, slow_receiver: dict[str, Any],
                                                 tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "schema_version": 1, "name": "halt-notify", "load": {"users": 5},
        "scenarios": [scenario("latency", "local-latency.yaml", variables={"fault_seconds": 20})],
        "stop_conditions": {"max_duration": "2s"},
    })
    code, result, stderr = gameday("run", str(plan), "--target", f"{sandbox.traffic_url}/canary", "-o", "json",
                                   "--no-history", "--notify", slow_receiver["url"], env=env_for(sandbox))
    assert faults(sandbox) == []
    assert code == 1, (code, stderr[-300:])
    assert result is not None and result["verdict"] == "halted", stderr
    assert "before" in slow_receiver and "after" in slow_receiver, stderr
    sent = slow_receiver["after"] - slow_receiver["before"]
    # Observed: the halted notification is sent before session.stop(): Locust keeps loading the canary
    # for as long as the receiver takes (here ~8 s of trickle, no timeout fired).
    assert sent == 0, f"{sent:.0f} requests reached the canary while the halted notification was sent"


def test_a_trickling_receiver_is_abandoned_at_the_notification_deadline() -> None:
    """No sandbox: the Notifier alone, against a receiver that answers one byte a second."""
    from loadkit.gameday.notify import Destination, Notifier, Start

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "30")
            self.end_headers()
            for _ in range(30):
                time.sleep(0.2)
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    said: list[str] = []
    try:
        notifier = Notifier([Destination(f"http://127.0.0.1:{server.server_address[1]}/hook", slack=False)],
                            said.append, deadline_s=1.0)
        started = time.monotonic()
        notifier.started(Start("p", "http://t", ("a",), "now"))
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert took < 2, f"the notification took {took:.1f}s, over its 1 s deadline"
    assert any("WARNING" in line and "abandoned" in line for line in said), said
