"""deploy/grafana: the dashboards' ConfigMap, and every panel's PromQL against a real Prometheus.

Prometheus (Debian's) scrapes a real sandbox (Istio-shaped metrics) and a real `loadkit serve`
during a real load run. Each panel's query, with the dashboard variables set to the sandbox's
values, must parse and return series. Flagger's own metrics (flagger_canary_*) need a Flagger
controller, which does not run here: those queries must parse and come back as an empty vector
(docs/grafana.md says so). The variables' label_values() selectors must find the sandbox's labels.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT
from tests.webhook.conftest import Serve, payload, poll

GRAFANA = ROOT / "deploy" / "grafana"
NAMESPACE, CANARY = "bruno", "bruno-site"  # the sandbox's namespace and canary workload
VALUES = {"$__rate_interval": "10s", "$namespace": NAMESPACE, "$canary": CANARY}
TOKEN = "grafana-test-token"
FLAGGER = re.compile(r"\bflagger_\w+")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [(d["title"], p) for d in dashboards().values() for p in d["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(dashboard / panel / refId, expr with the variables substituted)."""
    found = []
    for board, panel in panels():
        for target in panel["targets"]:
            found.append((f"{board} / {panel['title']} / {target['refId']}", substitute(target["expr"])))
    return found


def substitute(expr: str) -> str:
    for name, value in VALUES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a dashboard variable is left: {expr}"
    return expr


def query(prometheus: str, expr: str) -> dict[str, Any]:
    answer = httpcalls.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body


def test_the_configmap_carries_both_dashboards_for_the_sidecar() -> None:
    kustomization = yaml.safe_load((GRAFANA / "kustomization.yaml").read_text())
    [generator] = kustomization["configMapGenerator"]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    assert {Path(f).name for f in generator["files"]} == set(dashboards())
    titles = {d["title"] for d in dashboards().values()}
    assert titles == {"loadkit - Deployment Overview", "loadkit - Performance Metrics"}


def test_every_panel_is_complete() -> None:
    for board in dashboards().values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["title"]
        assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "canary"}
    for board, panel in panels():
        where = f"{board} / {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["description"] and panel["targets"], where
        if panel["type"] == "timeseries":
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"


@pytest.fixture(scope="module")
def site() -> Iterator[SandboxProcess]:
    with SandboxProcess(pods=1) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("grafana-serve")
    (tmp / "token").write_text(TOKEN)
    serve = Serve(tmp, "--token-file", str(tmp / "token")).start()
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def prometheus(site: SandboxProcess, served: Serve, start_prometheus: Callable[[list[str]], str]) -> str:
    return start_prometheus([site.admin_url.removeprefix("http://"), served.url.removeprefix("http://")])


def _primary_traffic(site: SandboxProcess, stop: threading.Event) -> None:
    """Requests to the primary (weight 0: all of the root path goes there), as users would send."""
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            client.get(f"{site.traffic_url}/")
            stop.wait(0.05)


def test_every_panel_returns_series_during_a_real_run(site: SandboxProcess, served: Serve, prometheus: str) -> None:
    own = [(where, expr) for where, expr in queries() if not FLAGGER.search(expr)]
    assert len(own) >= 15  # loadkit's and Istio's panels, each target
    seen: set[str] = set()
    stop = threading.Event()
    traffic = threading.Thread(target=_primary_traffic, args=(site, stop), daemon=True)
    traffic.start()
    try:
        assert served.admin("POST", f"/gates/{NAMESPACE}/{CANARY}/halt", TOKEN,
                            json={"hook": "confirm-rollout", "reason": "dashboard test"}).status_code == 200
        canary = payload(f"{site.traffic_url}/canary", name=CANARY, namespace=NAMESPACE, duration="12s")
        started = served.hook("rollout", canary, headers={"Accept": "application/json"})
        assert started.status_code == 202, started.text
        run, analysis = started.json()["run"], started.json()["analysis"]

        def all_seen() -> bool:
            for where, expr in own:
                if where not in seen and query(prometheus, expr)["data"]["result"]:
                    seen.add(where)
            finished = served.get(f"/runs/{run}").json()["status"] != "running"
            if finished and served.get(f"/analyses/{analysis}").json()["analysis"]["status"] == "open":
                served.hook("post-rollout", {**canary, "phase": "Succeeded"})  # closes it: loadkit_analyses_total
            return len(seen) == len(own)

        try:
            poll(all_seen, timeout=90, interval=1)
        except AssertionError:
            pytest.fail(f"panels without series: {sorted({w for w, _ in own} - seen)}")
    finally:
        stop.set()
        traffic.join(10)


def test_flagger_panels_parse_and_are_empty_without_flagger(prometheus: str) -> None:
    flagger = [(where, expr) for where, expr in queries() if FLAGGER.search(expr)]
    assert len(flagger) >= 4  # status, weight, duration p50 and p95
    for where, expr in flagger:
        body = query(prometheus, expr)
        assert body["data"]["resultType"] == "vector" and body["data"]["result"] == [], where


def test_a_broken_query_would_fail(prometheus: str) -> None:
    """The check above can fail: Prometheus refuses a query that does not parse."""
    answer = httpcalls.get(f"{prometheus}/api/v1/query", params={"query": "sum(rate(istio_requests_total[1m]"})
    assert answer.status_code == 400 and answer.json()["errorType"] == "bad_data"


def test_the_variables_find_the_sandbox(site: SandboxProcess, prometheus: str) -> None:
    for path in ("/", "/canary/"):  # on its own: both workloads have had requests
        for _ in range(5):
            httpcalls.get(f"{site.traffic_url}{path}", timeout=5)
    workloads = {CANARY, f"{CANARY}-primary"}
    poll(lambda: workloads <= {s["metric"]["destination_workload"] for s in
                               query(prometheus, 'istio_requests_total{reporter="destination"}')["data"]["result"]},
         timeout=30)
    for board in dashboards().values():
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match, variable["name"]
            series = query(prometheus, substitute(match.group(1)))["data"]["result"]
            values = {s["metric"][match.group(2)] for s in series}
            assert {"namespace": NAMESPACE, "canary": CANARY}[variable["name"]] in values, (variable["name"], values)
    for board in dashboards().values():
        for annotation in board["annotations"]["list"]:
            query(prometheus, substitute(annotation["expr"]))  # parses
