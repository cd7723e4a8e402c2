"""Flagger's hooks gating on Prometheus checks and on a canary-vs-primary comparison.

A real `loadkit serve --prometheus URL`, a real Prometheus scraping the sandbox every second, and a
canary answering 5 % of its requests with 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess
from tests.conftest import scraped
from tests.webhook.conftest import Serve, payload

pytestmark = pytest.mark.slow

CONFIG = """\
min_samples: 50
threshold_sets:
  server-side:                        # Flagger's own query, read by loadkit after its load
    - name: server-success-rate
      metric: request-success-rate
      source: prometheus
      thresholdRange: {{min: 99}}
  versus-primary:                     # the same load against the primary at once, judged
    - name: vs-primary
      compare: {{baseline: primary, max_degradation_pct: 5}}
profiles:
  quick:
    users: 10
    spawn_rate: 10
    duration: 4s
prometheus:
  url: {prometheus}
server:
  baseline_template: "{primary}"      # in a cluster: http://{{name}}-primary.{{namespace}}.svc:80
  default_profiles: {{pre-rollout: quick, rollout: quick}}
"""


@pytest.fixture(scope="module")
def site(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=1, canary_error_rate=0.05)


@pytest.fixture(scope="module")
def serve(site: SandboxProcess, start_prometheus: Callable[[list[str]], str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    prometheus = start_prometheus([site.admin_url.removeprefix("http://")])
    # A canary under analysis has served traffic (503s too) before: its series exist when a run's
    # window opens, so rate() counts the run's requests rather than series being born inside it.
    for _ in range(40):
        httpcalls.get(f"{site.traffic_url}/canary", timeout=5)
    scraped(prometheus, 'sum(istio_requests_total{destination_workload="bruno-site",response_code="503"})')
    server = Serve(tmp_path_factory.mktemp("serve-prometheus"))
    server.config.write_text(CONFIG.format(prometheus=prometheus, primary=site.traffic_url))
    server.start()
    yield server
    server.stop()


def test_pre_rollout_fails_on_flaggers_query_after_the_load(serve: Serve, site: SandboxProcess) -> None:
    answer = serve.hook("pre-rollout", payload(f"{site.traffic_url}/canary", checksum="prom-1",
                                               thresholds="server-side"))
    assert answer.status_code == 412, answer.text
    assert answer.text.startswith("pre-rollout failed") and "server-success-rate" in answer.text
    run = serve.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
    check = run["result"]["checks"][0]
    assert check["source"] == "prometheus" and 'destination_workload=~"bruno-site"' in check["query"]
    assert 93 <= check["observed"] <= 97  # 5 % 503s, as Istio counted them


def test_prometheus_checks_query_the_canarys_workload_name(serve: Serve, site: SandboxProcess) -> None:
    # A Canary named "storefront" whose targetRef is the sandbox's bruno-site (Flagger's targetRef.name)
    renamed = payload(f"{site.traffic_url}/canary", name="storefront", checksum="prom-3", thresholds="server-side",
                      workload="bruno-site")
    answer = serve.hook("pre-rollout", renamed)
    run = serve.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
    check = run["result"]["checks"][0]
    assert 'destination_workload=~"bruno-site"' in check["query"] and check["observed"] is not None, check


def test_pre_rollout_fails_a_canary_with_more_errors_than_the_primary(serve: Serve, site: SandboxProcess) -> None:
    answer = serve.hook("pre-rollout", payload(f"{site.traffic_url}/canary", checksum="cmp-1",
                                               thresholds="versus-primary"))
    assert answer.status_code == 412, answer.text
    assert "vs-primary" in answer.text and "\n" not in answer.text.strip()
    run = serve.get(f"/runs/{answer.headers['X-Loadkit-Run']}").json()
    comparison = run["result"]["checks"][0]["comparison"]
    assert comparison["baseline"] == site.traffic_url and comparison["verdict"] == "fail"
    errors = {m["name"]: m for m in comparison["metrics"]}["error-rate"]
    assert errors["classification"] == "high" and errors["baseline_samples"] >= 50


def test_a_server_without_prometheus_refuses_prometheus_checks_at_once(site: SandboxProcess, tmp_path: Path) -> None:
    server = Serve(tmp_path)
    server.config.write_text(CONFIG.replace("prometheus:\n  url: {prometheus}\n", "")
                             .format(primary=site.traffic_url))
    server.start()
    try:
        answer = server.hook("pre-rollout", payload(f"{site.traffic_url}/canary", checksum="prom-2",
                                                    thresholds="server-side"))
        assert answer.status_code == 400, answer.text
        assert "server-success-rate" in answer.text and "--prometheus URL" in answer.text
    finally:
        server.stop()

