"""The sandbox over real HTTP: routing, the sample site, the cart across pods, metrics and status.

One fault-free sandbox (2 pods per version) is shared by the module; metric assertions compare
before/after deltas so test order does not matter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from loadkit.sandbox._istio import DURATION_BUCKETS_MS, LABELS

pytestmark = pytest.mark.slow

PRIMARY, CANARY = "bruno-site-primary", "bruno-site"


@pytest.fixture(scope="module")
def sandbox(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=2)


@pytest.fixture()
def client(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.traffic_url, timeout=10) as client:
        yield client


# -- the ready line ----------------------------------------------------------------------------


def test_ready_line_describes_both_workloads(sandbox: SandboxProcess) -> None:
    info = sandbox.info
    assert info["schema_version"] == 1
    assert sandbox.traffic_url.startswith("http://127.0.0.1:")
    assert sandbox.metrics_url == f"{sandbox.admin_url}/metrics"
    assert (info["namespace"], info["canary_weight"]) == ("bruno", 0)
    assert {k: w["name"] for k, w in info["workloads"].items()} == {"primary": PRIMARY, "canary": CANARY}
    pods = info["workloads"]["canary"]["pods"]
    assert [p["name"] for p in pods] == ["bruno-site-0", "bruno-site-1"]
    assert all(set(p) == {"name", "port", "pid"} for p in pods)


# -- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "served_by", "marker"),
    [
        pytest.param("/canary", {}, CANARY, "<h1>Bruno's coffee</h1>", id="prefix"),
        pytest.param("/canary/", {}, CANARY, "<h1>Bruno's coffee</h1>", id="prefix-slash"),
        pytest.param("/canary/about", {}, CANARY, "<h1>About</h1>", id="prefix-page"),
        pytest.param("/canary/blog/7?ref=test", {}, CANARY, "<h1>Post 7</h1>", id="prefix-query"),
        pytest.param("/about", {"x-canary": "insider"}, CANARY, "<h1>About</h1>", id="header"),
        pytest.param("/about", {"X-CANARY": "insider"}, CANARY, "<h1>About</h1>", id="header-case"),
        pytest.param("/about", {"x-canary": "outsider"}, PRIMARY, "<h1>About</h1>", id="header-other"),
        pytest.param("/", {}, PRIMARY, "<h1>Bruno's coffee</h1>", id="default"),
        pytest.param("/blog/7", {}, PRIMARY, "<h1>Post 7</h1>", id="default-page"),
    ],
)
def test_routing(
    client: httpx.Client, path: str, headers: dict[str, str], served_by: str, marker: str
) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert response.headers["X-Served-By"] == served_by
    assert response.headers["X-Pod"].startswith(f"{served_by}-")
    assert marker in response.text


def test_round_robin_over_pods(client: httpx.Client) -> None:
    pods = [client.get("/about").headers["X-Pod"] for _ in range(4)]
    assert set(pods) == {"bruno-site-primary-0", "bruno-site-primary-1"}
    assert pods[0] != pods[1] and pods[0] == pods[2] and pods[1] == pods[3]


@pytest.mark.parametrize(
    ("path", "served_by"),
    [
        ("/nope", PRIMARY),
        ("/blog/101", PRIMARY),
        ("/blog/x", PRIMARY),
        ("/static/nope.css", PRIMARY),
        ("/canaryx", PRIMARY),
        ("/canary/nope", CANARY),
        ("/canary/api/products/999", CANARY),
    ],
)
def test_not_found_still_says_who_served_it(client: httpx.Client, path: str, served_by: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["X-Served-By"] == served_by


# -- the site ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/site.css", "text/css"),
        ("/static/app.js", "text/javascript"),
        ("/static/logo.svg", "image/svg+xml"),
        ("/", "text/html"),
        ("/blog", "text/html"),
        ("/api/products", "application/json"),
    ],
)
def test_content_types(client: httpx.Client, path: str, content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == content_type


def test_products_api(client: httpx.Client) -> None:
    products = client.get("/api/products").json()
    assert len(products) == 20
    assert all(set(p) == {"id", "name", "price"} for p in products)
    assert client.get("/api/products/3").json() == products[2]
    assert client.get("/api/products/999").json()["field"] == "id"


def test_home_and_blog_link_to_pages_and_assets(client: httpx.Client) -> None:
    home = client.get("/").text
    for link in (
        'href="/about"',
        'href="/blog"',
        'href="/blog/1"',
        'href="/static/site.css"',
        'src="/static/app.js"',
        'src="/static/logo.svg"',
    ):
        assert link in home
    assert client.get("/blog").text.count('href="/blog/') >= 100


def test_cart_and_checkout_across_pods(client: httpx.Client) -> None:
    first = client.post("/api/cart", json={"product_id": 3, "quantity": 2})
    second = client.post("/api/cart", json={"product_id": 5})
    cart = client.get("/api/cart")
    assert {first.headers["X-Pod"], second.headers["X-Pod"], cart.headers["X-Pod"]} == {
        "bruno-site-primary-0",
        "bruno-site-primary-1",
    }
    body = cart.json()
    assert [(i["product_id"], i["quantity"]) for i in body["items"]] == [(3, 2), (5, 1)]
    assert body["total"] == pytest.approx(2 * 14.00 + 32.00)
    checkout = client.post("/api/checkout")
    assert checkout.status_code == 201
    assert checkout.json()["total"] == pytest.approx(60.00) and checkout.json()["order_id"]
    assert client.get("/api/cart").json() == {"items": [], "count": 0, "total": 0.0}
    empty = client.post("/api/checkout")
    assert (empty.status_code, empty.json()) == (400, {"error": "cart is empty"})


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param(b"not json", 400, "body", id="bad-json"),
        pytest.param(b'{"product_id": 999}', 404, "product_id", id="unknown-product"),
        pytest.param(b'{"product_id": 3, "quantity": 0}', 400, "quantity", id="zero-quantity"),
        pytest.param(b'{"quantity": 1}', 400, "product_id", id="missing-product"),
    ],
)
def test_cart_rejects_bad_input(client: httpx.Client, body: bytes, status: int, field: str) -> None:
    response = client.post("/api/cart", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["field"] == field
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{", "body"), (b"[5]", "body"), (b'{"stars": 0}', "stars"), (b'{"stars": 6}', "stars"),
     (b'{"stars": true}', "stars"), (b'{"stars": 4.5}', "stars"), (b"", "body")],
)
def test_rating_rejects_bad_input(client: httpx.Client, body: bytes, field: str) -> None:
    response = client.post("/api/rating", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["field"]) == (400, field)


# -- metrics -----------------------------------------------------------------------------------


def test_istio_requests_total_counts_every_request(
    sandbox: SandboxProcess, client: httpx.Client, scrape: Any, total: Any, poll: Any
) -> None:
    requests = [
        ("/about", {}, 7),
        ("/nope", {}, 3),
        ("/canary/about", {}, 5),
        ("/", {"x-canary": "insider"}, 2),
        ("/canary/nope", {}, 2),
    ]
    expected = {(PRIMARY, "200"): 7, (PRIMARY, "404"): 3, (CANARY, "200"): 5 + 2, (CANARY, "404"): 2}
    before = scrape(sandbox.metrics_url)
    for path, headers, times in requests:
        for _ in range(times):
            client.get(path, headers=headers)

    def deltas() -> dict[tuple[str, str], float]:
        after = scrape(sandbox.metrics_url)
        return {
            (w, code): total(after, "istio_requests_total", destination_workload=w, response_code=code)
            - total(before, "istio_requests_total", destination_workload=w, response_code=code)
            for w, code in expected
        }

    poll(lambda: deltas() == expected, timeout=5)
    assert deltas() == expected


def test_istio_labels_and_histogram_buckets(
    sandbox: SandboxProcess, client: httpx.Client, scrape: Any
) -> None:
    client.get("/canary/")
    samples = scrape(sandbox.metrics_url)
    requests = [dict(pairs) for (name, pairs) in samples if name == "istio_requests_total"]
    assert requests and all(set(LABELS) <= set(labels) for labels in requests)
    canary = next(r for r in requests if r["destination_workload"] == CANARY and r["response_code"] == "200")
    expected = {
        "reporter": "destination",
        "source_workload": "unknown",
        "destination_workload_namespace": "bruno",
        "destination_service": "bruno-site-canary.bruno.svc.cluster.local",
        "destination_service_name": "bruno-site-canary",
        "destination_service_namespace": "bruno",
        "destination_app": "bruno-site",
        "destination_version": "canary",
        "request_protocol": "http",
        "response_flags": "-",
    }
    assert {k: canary[k] for k in expected} == expected
    les = {
        float(dict(pairs)["le"])
        for (name, pairs) in samples
        if name == "istio_request_duration_milliseconds_bucket"
        and dict(pairs)["destination_workload"] == CANARY
    }
    assert les == {float(b) for b in DURATION_BUCKETS_MS} | {float("inf")}


def test_app_metrics_and_funnel_move(
    sandbox: SandboxProcess, client: httpx.Client, scrape: Any, total: Any, poll: Any
) -> None:
    names = ("shop_visits_total", "shop_cart_additions_total", "shop_checkouts_total", "shop_ratings_total",
             "shop_rating_stars_total")
    before = scrape(sandbox.metrics_url)
    client.get("/canary/")
    client.get("/canary/api/products")
    client.get("/canary/blog/42")
    client.post("/canary/api/cart", json={"product_id": 1})
    client.post("/canary/api/checkout")
    assert client.post("/canary/api/rating", json={"stars": 4}).status_code == 201
    assert client.post("/canary/api/rating", json={"stars": 2}).status_code == 201

    # App metrics are recorded before the pod answers, so no polling is needed here.
    after = scrape(sandbox.metrics_url)
    moved = {n: total(after, n, workload=CANARY) - total(before, n, workload=CANARY) for n in names}
    assert moved == {"shop_visits_total": 2, "shop_cart_additions_total": 1, "shop_checkouts_total": 1,
                     "shop_ratings_total": 2, "shop_rating_stars_total": 6}
    blog = {"workload": CANARY, "path": "/blog/{n}", "status": "200"}
    assert total(after, "http_requests_total", **blog) - total(before, "http_requests_total", **blog) == 1
    assert total(after, "http_request_duration_seconds_count", workload=CANARY, version="canary") > 0
    assert not any(dict(pairs).get("path") == "/blog/42" for (_, pairs) in after)


def test_exposition_is_valid_with_one_header_per_family(sandbox: SandboxProcess) -> None:
    response = httpcalls.get(sandbox.metrics_url, timeout=10)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.text))
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    types = [line.split()[2] for line in response.text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    up = {s.labels["pod"]: s.value for f in families if f.name == "loadkit_sandbox_pod_up" for s in f.samples}
    assert up == dict.fromkeys(
        ["bruno-site-primary-0", "bruno-site-primary-1", "bruno-site-0", "bruno-site-1"], 1.0
    )


# -- admin API ---------------------------------------------------------------------------------


def test_status_and_health(sandbox: SandboxProcess) -> None:
    assert httpcalls.get(f"{sandbox.admin_url}/healthz").text == "ok"
    status = httpcalls.get(f"{sandbox.admin_url}/sandbox").json()
    assert (status["namespace"], status["canary_weight"]) == ("bruno", 0)
    for version, workload in status["workloads"].items():
        ready = sandbox.info["workloads"][version]
        assert (workload["name"], workload["error_rate"], workload["latency_ms"]) == (ready["name"], 0.0, 0)
        assert [(p["name"], p["port"], p["pid"]) for p in workload["pods"]] == [
            (p["name"], p["port"], p["pid"]) for p in ready["pods"]
        ]
        assert all(p["alive"] is True and p["restarts"] == 0 for p in workload["pods"])
