"""Table-driven tests of the sandbox's pure parts: faults, routing, cart, labels, metric merging."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from loadkit.cli.sandbox import render_text
from loadkit.sandbox import SandboxConfig, Version
from loadkit.sandbox._faults import ErrorInjector
from loadkit.sandbox._istio import destination_labels
from loadkit.sandbox._merge import merge_families, parse_exposition, render_exposition
from loadkit.sandbox._routing import choose_route, end_to_end_headers
from loadkit.sandbox._shop import (
    MAX_QUANTITY,
    CartInputError,
    decode_cart,
    encode_cart,
    parse_cart_addition,
)
from loadkit.sandbox.models import PodInfo, SandboxInfo, WorkloadInfo

# -- deterministic error injection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "rate", ["0", "0.01", "0.05", "0.1", "0.25", "0.3", "0.5", "0.75", "0.9", "0.99", "1"]
)
def test_injector_fails_exactly_floor_i_times_rate(rate: str) -> None:
    injector = ErrorInjector(float(rate))
    failures = 0
    for i in range(1, 2001):
        failures += injector.should_fail()
        assert failures == math.floor(i * Fraction(rate)), f"after {i} calls"


def test_injector_spreads_failures_evenly() -> None:
    injector = ErrorInjector(0.1)
    failed_at = [i for i in range(1, 101) if injector.should_fail()]
    assert failed_at == list(range(10, 101, 10))


@pytest.mark.parametrize("rate", [-0.1, 1.01], ids=["negative", "above-one"])
def test_injector_rejects_rates_outside_zero_one(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        ErrorInjector(rate)


# -- routing ---------------------------------------------------------------------------------------

ROUTES = [
    # id, raw path, headers, weight, draw -> version, upstream path, rule
    ("prefix-bare", "/canary", {}, 0, 50.0, Version.CANARY, "/", "prefix"),
    ("prefix-slash", "/canary/", {}, 0, 50.0, Version.CANARY, "/", "prefix"),
    ("prefix-page", "/canary/about", {}, 0, 50.0, Version.CANARY, "/about", "prefix"),
    ("prefix-query", "/canary/blog/3?x=1&y=2", {}, 0, 50.0, Version.CANARY, "/blog/3?x=1&y=2", "prefix"),
    ("prefix-bare-query", "/canary?x=1", {}, 0, 50.0, Version.CANARY, "/?x=1", "prefix"),
    ("not-a-prefix", "/canaryfoo", {}, 0, 50.0, Version.PRIMARY, "/canaryfoo", "weight"),
    ("nested-not-prefix", "/blog/canary", {}, 0, 50.0, Version.PRIMARY, "/blog/canary", "weight"),
    ("header", "/about", {"x-canary": "insider"}, 0, 50.0, Version.CANARY, "/about", "header"),
    ("header-name-case", "/", {"X-Canary": "insider"}, 0, 50.0, Version.CANARY, "/", "header"),
    ("header-value-exact", "/", {"x-canary": "Insider"}, 0, 50.0, Version.PRIMARY, "/", "weight"),
    ("header-other-value", "/", {"x-canary": "always"}, 0, 50.0, Version.PRIMARY, "/", "weight"),
    ("weight-0", "/", {}, 0, 0.0, Version.PRIMARY, "/", "weight"),
    ("weight-30-below", "/", {}, 30, 29.99, Version.CANARY, "/", "weight"),
    ("weight-30-at", "/", {}, 30, 30.0, Version.PRIMARY, "/", "weight"),
    ("weight-100", "/?q=1", {}, 100, 99.99, Version.CANARY, "/?q=1", "weight"),
]


@pytest.mark.parametrize(
    ("raw_path", "headers", "weight", "draw", "version", "upstream", "rule"),
    [r[1:] for r in ROUTES],
    ids=[r[0] for r in ROUTES],
)
def test_choose_route(
    raw_path: str,
    headers: dict[str, str],
    weight: int,
    draw: float,
    version: Version,
    upstream: str,
    rule: str,
) -> None:
    route = choose_route(raw_path, CIMultiDict(headers), weight, draw)
    assert (route.version, route.path, route.rule) == (version, upstream, rule)


def test_end_to_end_headers_drops_hop_by_hop_and_keeps_duplicates() -> None:
    headers = [
        ("Host", "example"),
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Upgrade", "h2c"),
        ("X-Secret", "named by Connection"),
        ("Accept", "a"),
        ("Accept", "b"),
        ("Cookie", "cart=3:1"),
    ]
    assert end_to_end_headers(headers) == [
        ("Host", "example"),
        ("Accept", "a"),
        ("Accept", "b"),
        ("Cookie", "cart=3:1"),
    ]


# -- the shop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "cart"),
    [
        (None, {}),
        ("", {}),
        ("3:1|5:2", {3: 1, 5: 2}),
        ("3:1,5:2", {3: 1, 5: 2}),
        ("3:1|3:2", {3: 3}),
        ("3:1|999:1|x:1|4:0|5:-1|6", {3: 1}),
        (f"3:{MAX_QUANTITY}|3:5", {3: MAX_QUANTITY}),
    ],
    ids=["none", "empty", "pipe", "comma", "repeat-adds", "junk-dropped", "capped"],
)
def test_decode_cart(cookie: str | None, cart: dict[int, int]) -> None:
    assert decode_cart(cookie) == cart


def test_encode_cart_round_trips_sorted() -> None:
    assert encode_cart({5: 2, 3: 1}) == "3:1|5:2"
    assert decode_cart(encode_cart({5: 2, 3: 1})) == {3: 1, 5: 2}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"product_id": 3, "quantity": 2}, (3, 2)),
        ({"product_id": 3}, (3, 1)),
        ({"product_id": 20, "quantity": MAX_QUANTITY}, (20, MAX_QUANTITY)),
    ],
    ids=["explicit", "default-quantity", "max"],
)
def test_parse_cart_addition_accepts(payload: object, expected: tuple[int, int]) -> None:
    assert parse_cart_addition(payload) == expected


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ([1, 2], 400, "body"),
        (None, 400, "body"),
        ({}, 400, "product_id"),
        ({"product_id": "3"}, 400, "product_id"),
        ({"product_id": True}, 400, "product_id"),
        ({"product_id": 3, "quantity": 0}, 400, "quantity"),
        ({"product_id": 3, "quantity": MAX_QUANTITY + 1}, 400, "quantity"),
        ({"product_id": 3, "quantity": 1.5}, 400, "quantity"),
        ({"product_id": 999, "quantity": 1}, 404, "product_id"),
    ],
    ids=["list", "null", "missing-id", "string-id", "bool-id", "zero", "too-many", "float", "unknown"],
)
def test_parse_cart_addition_rejects(payload: object, status: int, field: str) -> None:
    with pytest.raises(CartInputError) as caught:
        parse_cart_addition(payload)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert caught.value.to_json()["field"] == field


# -- Istio labels, config, metric merging ------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "workload", "service"),
    [
        (Version.PRIMARY, "bruno-site-primary", "bruno-site-primary"),
        (Version.CANARY, "bruno-site", "bruno-site-canary"),
    ],
)
def test_destination_labels_use_flagger_names(version: Version, workload: str, service: str) -> None:
    labels = destination_labels(version, "shop", 503, "UF")
    assert labels["destination_workload"] == workload
    assert labels["destination_service_name"] == service
    assert labels["destination_service"] == f"{service}.shop.svc.cluster.local"
    assert labels["destination_workload_namespace"] == labels["destination_service_namespace"] == "shop"
    assert (labels["reporter"], labels["response_code"], labels["response_flags"]) == (
        "destination",
        "503",
        "UF",
    )
    assert labels["destination_version"] == version.value


@pytest.mark.parametrize(
    ("port", "admin_port", "resolved"),
    [(8080, None, 8081), (0, None, 0), (8080, 9000, 9000), (0, 9000, 9000)],
    ids=["next-port", "free", "explicit", "explicit-with-free"],
)
def test_admin_port_default(port: int, admin_port: int | None, resolved: int) -> None:
    assert SandboxConfig(port=port, admin_port=admin_port).resolved_admin_port == resolved


def _pod_text(pod: str, value: int) -> str:
    return (
        "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n"
        f'http_requests_total{{pod="{pod}",status="200"}} {value}\n'
        "# HELP up_ish A gauge.\n# TYPE up_ish gauge\n"
        f'up_ish{{pod="{pod}"}} 1\n'
    )


def test_merge_gathers_each_family_under_one_header() -> None:
    merged = merge_families([parse_exposition(_pod_text("a", 1)), parse_exposition(_pod_text("b", 2))])
    text = render_exposition(merged).decode()
    assert text.count("# TYPE http_requests_total counter") == 1
    assert text.count("# TYPE up_ish gauge") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sorted(s.value for s in families["http_requests"].samples) == [1.0, 2.0]


def test_merge_drops_repeated_samples_and_conflicting_types() -> None:
    conflicting = '# TYPE up_ish counter\nup_ish_total{pod="c"} 5\n'
    merged = merge_families(
        [
            parse_exposition(_pod_text("a", 1)),
            parse_exposition(_pod_text("a", 1)),
            parse_exposition(conflicting),
        ]
    )
    by_name = {f.name: f for f in merged}
    assert len(by_name["http_requests"].samples) == 1
    assert by_name["up_ish"].type == "gauge"
    assert [s.labels["pod"] for s in by_name["up_ish"].samples] == ["a"]


# -- the ready line and the human announcement ---------------------------------------------------


def _info() -> SandboxInfo:
    pods = [PodInfo(name="bruno-site-0", port=4000, pid=10)]
    return SandboxInfo(
        traffic_url="http://127.0.0.1:8080",
        admin_url="http://127.0.0.1:8081",
        metrics_url="http://127.0.0.1:8081/metrics",
        namespace="bruno",
        canary_weight=20,
        workloads={
            Version.PRIMARY: WorkloadInfo(name="bruno-site-primary", error_rate=0.0, latency_ms=0, pods=pods),
            Version.CANARY: WorkloadInfo(name="bruno-site", error_rate=0.1, latency_ms=50, pods=pods),
        },
    )


def test_ready_line_leaves_out_live_fields() -> None:
    line = _info().ready_line()
    assert "\n" not in line
    assert line.startswith('{"schema_version":1,"traffic_url":"http://127.0.0.1:8080"')
    assert '"pods":[{"name":"bruno-site-0","port":4000,"pid":10}]' in line


def test_render_text_names_urls_rules_and_versions() -> None:
    text = render_text(_info())
    for expected in (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8081/metrics",
        "x-canary: insider",
        "/canary",
        "20% canary, 80% primary",
        "error rate 10%",
        "latency +50 ms",
        "Press Ctrl-C to stop.",
    ):
        assert expected in text
