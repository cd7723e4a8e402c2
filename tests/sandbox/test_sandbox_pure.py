"""Table-driven tests of the sandbox's pure parts: faults, routing, cart, labels, metric merging."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from loadkit.cli.sandbox import render_text
from loadkit.sandbox import SandboxConfig, Version
from loadkit.sandbox._faults import NO_FAULT, ErrorInjector, FaultDecision, FaultKind, FaultTable, RouterFault
from loadkit.sandbox._istio import destination_labels, response_flags
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


@pytest.mark.parametrize("rate", [
    pytest.param(-0.1, id="negative"),
    pytest.param(1.01, id="above-one"),
])
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
        pytest.param(None, {}, id="none"),
        pytest.param("", {}, id="empty"),
        pytest.param("3:1|5:2", {3: 1, 5: 2}, id="pipe"),
        pytest.param("3:1,5:2", {3: 1, 5: 2}, id="comma"),
        pytest.param("3:1|3:2", {3: 3}, id="repeat-adds"),
        pytest.param("3:1|999:1|x:1|4:0|5:-1|6", {3: 1}, id="junk-dropped"),
        pytest.param(f"3:{MAX_QUANTITY}|3:5", {3: MAX_QUANTITY}, id="capped"),
    ],
)
def test_decode_cart(cookie: str | None, cart: dict[int, int]) -> None:
    assert decode_cart(cookie) == cart


def test_encode_cart_round_trips_sorted() -> None:
    assert encode_cart({5: 2, 3: 1}) == "3:1|5:2"
    assert decode_cart(encode_cart({5: 2, 3: 1})) == {3: 1, 5: 2}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param({"product_id": 3, "quantity": 2}, (3, 2), id="explicit"),
        pytest.param({"product_id": 3}, (3, 1), id="default-quantity"),
        pytest.param({"product_id": 20, "quantity": MAX_QUANTITY}, (20, MAX_QUANTITY), id="max"),
    ],
)
def test_parse_cart_addition_accepts(payload: object, expected: tuple[int, int]) -> None:
    assert parse_cart_addition(payload) == expected


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        pytest.param([1, 2], 400, "body", id="list"),
        pytest.param(None, 400, "body", id="null"),
        pytest.param({}, 400, "product_id", id="missing-id"),
        pytest.param({"product_id": "3"}, 400, "product_id", id="string-id"),
        pytest.param({"product_id": True}, 400, "product_id", id="bool-id"),
        pytest.param({"product_id": 3, "quantity": 0}, 400, "quantity", id="zero"),
        pytest.param({"product_id": 3, "quantity": MAX_QUANTITY + 1}, 400, "quantity", id="too-many"),
        pytest.param({"product_id": 3, "quantity": 1.5}, 400, "quantity", id="float"),
        pytest.param({"product_id": 999, "quantity": 1}, 404, "product_id", id="unknown"),
    ],
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
    [
        pytest.param(8080, None, 8081, id="next-port"),
        pytest.param(0, None, 0, id="free"),
        pytest.param(8080, 9000, 9000, id="explicit"),
        pytest.param(0, 9000, 9000, id="explicit-with-free"),
    ],
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
        "http://127.0.0.1:8081/faults",
        "http://127.0.0.1:8081/pods/kill",
        "x-canary: insider",
        "/canary",
        "20% canary, 80% primary",
        "error rate 10%",
        "latency +50 ms",
        "routes   no retries; no timeout",
        "Press Ctrl-C to stop.",
    ):
        assert expected in text


# -- router faults -------------------------------------------------------------------------------

_T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _fault(fault_id: str, version: Version, kind: FaultKind, percentage: float, **kwargs: int) -> RouterFault:
    return RouterFault(fault_id, version, kind, percentage, _T0, _T0, **kwargs)


def _decisions(table: FaultTable, version: Version, n: int) -> list[FaultDecision]:
    return [table.decide(version) for _ in range(n)]


@pytest.mark.parametrize("percentage", [100.0, 50.0, 33.3, 10.0, 2.5, 1.0, 0.1], ids=str)
def test_fault_hits_exactly_floor_n_times_percentage(percentage: float) -> None:
    table = FaultTable()
    table.add(_fault("a", Version.CANARY, FaultKind.ABORT, percentage, http_status=503))
    aborted = 0
    for n in range(1, 1001):
        aborted += table.decide(Version.CANARY).abort_status == 503
        assert aborted == math.floor(n * Fraction(str(percentage)) / 100), f"after {n} requests"


def test_faults_apply_to_their_version_only() -> None:
    table = FaultTable()
    table.add(_fault("a", Version.CANARY, FaultKind.ABORT, 100, http_status=503))
    assert set(_decisions(table, Version.PRIMARY, 5)) == {NO_FAULT}
    assert set(_decisions(table, Version.CANARY, 5)) == {FaultDecision(abort_status=503)}


def test_delays_add_up_and_the_oldest_abort_wins() -> None:
    table = FaultTable()
    table.add(_fault("d1", Version.CANARY, FaultKind.DELAY, 100, delay_ms=100))
    table.add(_fault("d2", Version.CANARY, FaultKind.DELAY, 50, delay_ms=20))
    table.add(_fault("a1", Version.CANARY, FaultKind.ABORT, 50, http_status=500))
    table.add(_fault("a2", Version.CANARY, FaultKind.ABORT, 100, http_status=503))
    assert _decisions(table, Version.CANARY, 4) == [
        FaultDecision(100, 503),
        FaultDecision(120, 500),
        FaultDecision(100, 503),
        FaultDecision(120, 500),
    ]
    assert FaultDecision(120, 500).flags == ("DI", "FI")
    assert (FaultDecision(5).flags, NO_FAULT.flags) == (("DI",), ())


def test_fault_table_removes_by_id_and_by_version() -> None:
    table = FaultTable()
    for fault_id, version in [("c1", Version.CANARY), ("p1", Version.PRIMARY), ("c2", Version.CANARY)]:
        table.add(_fault(fault_id, version, FaultKind.DELAY, 100, delay_ms=1))
    with pytest.raises(ValueError, match="already exists"):
        table.add(_fault("c1", Version.CANARY, FaultKind.DELAY, 100, delay_ms=1))
    assert table.remove("nope") is None
    assert [f.id for f in table.clear(Version.CANARY)] == ["c1", "c2"]
    assert [f.id for f in table] == ["p1"]
    assert table.remove("p1") is not None and len(table) == 0


def test_fault_describes_itself_for_the_log() -> None:
    assert _fault("a", Version.CANARY, FaultKind.ABORT, 10, http_status=503).describe() == (
        "abort 503 on 10% of canary requests"
    )
    assert _fault("d", Version.PRIMARY, FaultKind.DELAY, 100, delay_ms=250).describe() == (
        "delay 250 ms on 100% of primary requests"
    )


@pytest.mark.parametrize(
    ("flags", "label"),
    [
        pytest.param([], "-", id="none"),
        pytest.param(["-"], "-", id="dash"),
        pytest.param(["UF"], "UF", id="one"),
        pytest.param(["FI", "-"], "FI", id="fi"),
        pytest.param(["FI", "DI"], "DI,FI", id="envoy-order"),
        pytest.param(["DI", "DC"], "DI,DC", id="delay-then-hangup"),
        pytest.param(["DI", "UF"], "UF,DI", id="delay-then-connect-fail"),
        pytest.param(["DI", "DI"], "DI", id="dedup"),
    ],
)
def test_response_flags_join_in_envoy_order(flags: list[str], label: str) -> None:
    assert response_flags(flags) == label
