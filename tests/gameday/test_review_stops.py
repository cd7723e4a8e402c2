"""Review of issue 12: the stop-condition monitor must survive a checker that raises."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest

from loadkit.chaos.signals import HaltSwitch
from loadkit.gameday.plan import StopConditions
from loadkit.gameday.stops import StopMonitor


@pytest.fixture
def odd_prometheus() -> Iterator[str]:
    """Answers 200 with JSON that is not an object (a proxy's error page, a misrouted API)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _monitor(conditions: dict[str, Any]) -> tuple[StopMonitor, HaltSwitch]:
    halt = HaltSwitch()
    session = mock.Mock()
    monitor = StopMonitor(StopConditions.model_validate(conditions), session, halt, started=time.time(),
                          prometheus_url=None, scenario=lambda: "s")
    return monitor, halt


def _wait(halt: HaltSwitch, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while halt.reason is None and time.monotonic() < deadline:
        time.sleep(0.05)


def test_prometheus_answering_non_object_json_does_not_kill_the_wall_clock(odd_prometheus: str) -> None:
    monitor, halt = _monitor({"max_duration": "1s",
                              "prometheus": [{"query": "up", "url": odd_prometheus, "interval": "0.1s"}]})
    monitor.start()
    try:
        _wait(halt, 4)
    finally:
        monitor.stop()
    # Observed: AttributeError ('list' object has no attribute 'get') in the monitor thread; the thread
    # dies silently, the wall-clock limit (and every other stop condition) never fires.
    assert halt.reason is not None, "no stop condition fired: the monitor thread died"


def test_health_url_httpx_cannot_parse_does_not_kill_the_monitor() -> None:
    # `url` passes the plan's ^https?:// pattern, but httpx raises InvalidURL (not an HTTPError)
    monitor, halt = _monitor({"max_duration": "1s", "http": [{"url": "http://[::1", "interval": "0.1s"}]})
    monitor.start()
    try:
        _wait(halt, 4)
    finally:
        monitor.stop()
    assert halt.reason is not None, "no stop condition fired: the monitor thread died"


@pytest.fixture
def refusing_prometheus() -> Iterator[str]:
    """Answers every query 400 bad_data (e.g. it came up mid-game-day after `run` checked the query
    for syntax only because it could not be reached)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status":"error","errorType":"bad_data","error":"parse error"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_refusing_at_run_time_does_not_kill_the_monitor(refusing_prometheus: str) -> None:
    monitor, halt = _monitor({"max_duration": "1s",
                              "prometheus": [{"query": "up", "url": refusing_prometheus, "interval": "0.1s"}]})
    monitor.start()
    try:
        _wait(halt, 4)
    finally:
        monitor.stop()
    # Observed: PrometheusRefused escapes check() (only PrometheusUnreadable is caught): thread dead.
    assert halt.reason is not None, "no stop condition fired: the monitor thread died"


@pytest.fixture
def hanging_prometheus() -> Iterator[str]:
    """Accepts the query and never answers (an overloaded Prometheus during the very outage)."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(30)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_a_hanging_prometheus_does_not_delay_the_other_stop_conditions(hanging_prometheus: str) -> None:
    monitor, halt = _monitor({"max_duration": "0.5s",
                              "prometheus": [{"query": "up", "url": hanging_prometheus, "interval": "1s"}]})
    started = time.monotonic()
    monitor.start()
    try:
        _wait(halt, 20)
    finally:
        monitor.stop()
    took = time.monotonic() - started
    # Observed: ~5.3 s: every checker runs in the one monitor thread, so each Prometheus read blocks
    # the load, HTTP and wall-clock checks for its 5 s timeout (a load stop is then checked once
    # every ~5 s instead of "a few times a second").
    assert halt.reason is not None and took < 2, f"halted after {took:.1f}s: {halt.reason}"


def test_a_check_that_raises_counts_as_unreadable_and_halts_after_three() -> None:
    from loadkit.gameday.models import StopKind
    from loadkit.gameday.stops import UNREADABLE_AFTER, Checker

    calls: list[int] = []

    def broken() -> str | None:
        calls.append(1)
        raise RuntimeError("a bug in a checker")

    checker = Checker(StopKind.PROMETHEUS, "q", 0.01, broken)
    reasons = [checker.run_once() for _ in range(UNREADABLE_AFTER)]
    assert reasons[:-1] == [None] * (UNREADABLE_AFTER - 1)
    assert reasons[-1] is not None and "RuntimeError" in reasons[-1] and "3 times running" in reasons[-1]


@pytest.fixture
def scalar_prometheus() -> Iterator[dict[str, str]]:
    answer = {"value": "0"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "success", "data": {"resultType": "scalar",
                                                              "result": [1700000000, answer["value"]]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield answer
    finally:
        server.shutdown()
        server.server_close()


def test_a_scalar_fires_only_when_it_is_not_zero(scalar_prometheus: dict[str, str]) -> None:
    from loadkit.gameday.stops import query

    for value, fires in (("0", False), ("NaN", False), ("1", True), ("0.5", True)):
        scalar_prometheus["value"] = value
        assert bool(query(scalar_prometheus["url"], "scalar(up)")) is fires, value
