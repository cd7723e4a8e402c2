"""A real sandbox scraped every second by a real Prometheus (Debian's), shared per module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from loadkit.config import load_config
from loadkit.sandbox import SandboxProcess
from tests.conftest import ROOT

CANARY_LATENCY_MS = 400

# A shop visit as a funnel: nine catalogue visits, then a checkout, then a rating given the way
# locustfiles/api.py gives it (by how fast the checkout was). Conversion = 1/9 of successful checkouts.
FUNNEL = f"""
import random
import sys

sys.path.insert(0, {str(ROOT / "locustfiles")!r})
from api import stars  # the shipped journey's rating rule

from locust import FastHttpUser, constant, task


class Shopper(FastHttpUser):
    wait_time = constant(0.05)

    @task
    def visit_and_buy(self):
        for _ in range(9):
            self.client.get("/api/products")
        self.client.post("/api/cart", json={{"product_id": random.randint(1, 20), "quantity": 1}})
        with self.client.post("/api/checkout", json={{}}, catch_response=True) as response:
            ok = response.status_code == 201
            elapsed_ms = response.request_meta["response_time"]
        self.client.post("/api/rating", json={{"stars": stars(ok, elapsed_ms)}})
"""

# The plan's business metrics as shipped in deploy/base/loadkit.yaml (threshold set `business`):
# conversion-rate >= 2.5 and user-satisfaction >= 4.0, MetricTemplate-style queries over the
# sandbox's funnel counters. The tests below run exactly those queries.
SHIPPED = [t for t in load_config(ROOT / "deploy" / "base" / "loadkit.yaml").threshold_sets["business"] if t.query]

CHECKS = """
thresholds:
  - name: request-success-rate            # loadkit's own requests
    thresholdRange: {min: 99}
  - name: server-success-rate             # Flagger's Istio query
    metric: request-success-rate
    source: prometheus
    thresholdRange: {min: 99}
  - name: server-p99
    metric: request-duration
    source: prometheus
    thresholdRange: {max: 1000}
  - name: conversion-rate-goal            # the same ratio, from templateVariables, with a higher bar
    query: |
      sum(rate({{ variables.done }}{namespace="{{ namespace }}",workload="{{ target }}"}[{{ interval }}]))
      / sum(rate({{ variables.start }}{namespace="{{ namespace }}",workload="{{ target }}"}[{{ interval }}])) * 100
    templateVariables: {start: shop_visits_total, done: shop_checkouts_total}
    thresholdRange: {min: 20}
"""


@pytest.fixture(scope="module")
def shop(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """Primary healthy; canary with 3 % 503s and 400 ms per request."""
    return start_sandbox(pods=1, canary_error_rate=0.03, canary_latency_ms=CANARY_LATENCY_MS)


@pytest.fixture(scope="module")
def quiet(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """A canary nobody sends traffic to (namespace `quiet`)."""
    return start_sandbox(pods=1, namespace="quiet")


@pytest.fixture(scope="module")
def prometheus(shop: SandboxProcess, quiet: SandboxProcess, start_prometheus: Callable[[list[str]], str]) -> str:
    return start_prometheus([s.admin_url.removeprefix("http://") for s in (shop, quiet)])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prometheus-checks")
    (root / "funnel.py").write_text(FUNNEL)
    config = yaml.safe_load(CHECKS)
    config["thresholds"] += [t.model_dump(mode="json", exclude_defaults=True) for t in SHIPPED]
    (root / "loadkit.yaml").write_text(yaml.safe_dump(config, sort_keys=False, width=200))
    return {"funnel": root / "funnel.py", "config": root / "loadkit.yaml", "dir": root}
