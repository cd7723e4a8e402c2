"""The Prometheus client against a real local HTTP server: errors come from the answer's status and
Prometheus' JSON (`status`, `errorType`, `error`), never from an exception's text."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from loadkit.errors import ConfigError, LoadkitError, TargetError
from loadkit.prometheus.source import PrometheusSource
from tests.http_servers import serve_http

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "99.5"]}]}}


def answering(status: int, body: Any, content_type: str = "application/json") -> Callable[[str], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda _path: (status, {"Content-Type": content_type}, raw)


@pytest.mark.parametrize(
    ("status", "body", "error", "says"),
    [
        pytest.param(400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unclosed left"},
                     ConfigError, "Prometheus refused its query: 1:5: parse error: unclosed left", id="bad-promql"),
        pytest.param(422, {"status": "error", "errorType": "execution", "error": "too many samples"},
                     ConfigError, "Prometheus refused its query: too many samples", id="execution"),
        pytest.param(500, {"status": "error", "errorType": "internal", "error": "disk full"},
                     TargetError, "answered HTTP 500: disk full", id="internal"),
        pytest.param(503, {"status": "error", "errorType": "unavailable", "error": "starting up"},
                     TargetError, "answered HTTP 503: starting up", id="unavailable-after-retries"),
        pytest.param(200, b"<html>Grafana</html>", TargetError, "not as Prometheus' HTTP API does",
                     id="not-prometheus"),
        pytest.param(404, b"404 page not found", TargetError, "answered HTTP 404: 404 page not found", id="wrong-path"),
    ],
)
def test_errors_are_read_from_the_answer(status: int, body: Any, error: type[LoadkitError], says: str) -> None:
    with serve_http("127.0.0.1", answering(status, body)) as server:
        source = PrometheusSource(f"http://127.0.0.1:{server.port}")
        with pytest.raises(error) as raised:
            source.value("sum(up)", check="my-check")
        source.close()
    assert says in raised.value.message
    if error is ConfigError:
        assert "'my-check'" in raised.value.message and "query: sum(up)" in raised.value.message
    assert server.requests == (3 if status == 503 else 1)  # 502-504 are retried twice, nothing else


def test_a_value_and_a_matrix() -> None:
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"pod": "a"}, "values": [[10, "1"], [20, "3"]]}]}}
    with serve_http("127.0.0.1", lambda path: (200, {}, json.dumps(
            matrix if path.startswith("/api/v1/query_range") else VECTOR).encode())) as server:
        source = PrometheusSource(f"http://127.0.0.1:{server.port}/")
        assert source.value("sum(up)", check="c").value == 99.5
        series = source.matrix("up", check="c", start=datetime.fromtimestamp(10, UTC),
                               end=datetime.fromtimestamp(20, UTC), step_s=10)
        source.close()
    assert [(s.labels, s.points) for s in series] == [({"pod": "a"}, [(10.0, 1.0), (20.0, 3.0)])]


def test_nobody_listening_is_a_target_error() -> None:
    with serve_http("127.0.0.1", answering(200, VECTOR)) as server:
        port = server.port
    source = PrometheusSource(f"http://127.0.0.1:{port}")
    with pytest.raises(TargetError, match=f"cannot reach Prometheus at http://127.0.0.1:{port}.*Connection refused"):
        source.value("sum(up)", check="c")
