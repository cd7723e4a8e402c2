"""Fixtures for the sandbox tests: real sandboxes on 127.0.0.1 with free ports, shared per module.

Helpers are fixtures returning functions (not importable modules) so they cannot collide with
another test package's helper module of the same name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadkit import httpcalls

T = TypeVar("T")

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="session")
def hermetic_env() -> dict[str, str]:
    """The environment without LOADKIT_* (click reads them as option defaults) or KUBECONFIG."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOADKIT_") and k != "KUBECONFIG"}


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    """`poll(fn, timeout=10)`: call fn until it returns something truthy, or fail at the deadline."""

    def wait_for(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = fn()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout} s; last value: {result!r}")
            time.sleep(interval)

    return wait_for


@pytest.fixture(scope="session")
def scrape() -> Callable[[str], Samples]:
    """`scrape(metrics_url)`: every sample of the exposition, parsed by prometheus_client."""

    def fetch(url: str) -> Samples:
        response = httpcalls.get(url, timeout=10)
        response.raise_for_status()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    return fetch


@pytest.fixture(scope="session")
def total() -> Callable[..., float]:
    """`total(samples, name, **labels)`: the sum of `name` samples whose labels include `labels`."""

    def add(samples: Samples, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))

    return add
