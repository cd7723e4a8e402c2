"""Query templates and Prometheus check definitions (pure: no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from loadkit.analysis import for_prometheus_only
from loadkit.config import load_config, load_thresholds
from loadkit.errors import ConfigError, UsageError
from loadkit.models.specs import Metric, Source, Threshold
from loadkit.prometheus import BUILTIN_QUERIES, QueryVars, promql_duration, render
from loadkit.prometheus.observe import step_increments
from loadkit.prometheus.source import Series

# fluxcd/flagger pkg/metrics/observers/istio.go, with namespace=bruno, target=bruno-site, interval=1m.
FLAGGER_SUCCESS_RATE = """
    sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bruno",
      destination_workload=~"bruno-site",response_code!~"5.*"}[1m]))
    / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bruno",
      destination_workload=~"bruno-site"}[1m])) * 100
"""
FLAGGER_DURATION = """
    histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",
      destination_workload_namespace="bruno",destination_workload=~"bruno-site"}[1m])) by (le))
"""
VARS = QueryVars("bruno", "bruno-site", 60)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(("metric", "flagger"), [(Metric.REQUEST_SUCCESS_RATE, FLAGGER_SUCCESS_RATE),
                                                 (Metric.REQUEST_DURATION, FLAGGER_DURATION)])
def test_builtin_queries_are_flaggers(metric: Metric, flagger: str) -> None:
    assert squash(render(BUILTIN_QUERIES[metric], VARS, check="x")) == squash(flagger)


def test_template_variables() -> None:
    query = 'sum(rate(x{ns="{{namespace}}",w="{{ target }}",d="{{ variables.direction }}"}[{{ interval }}]))'
    rendered = render(query, QueryVars("bruno", "bruno-site", 90, {"direction": "in"}), check="x")
    assert rendered == 'sum(rate(x{ns="bruno",w="bruno-site",d="in"}[90s]))'


@pytest.mark.parametrize(("query", "says"), [
    ("{{ colour }}", "unknown template variable {{ colour }}"),
    ("{{ variables.missing }}", "templateVariables has no 'missing'"),
    ("{{ target | upper }}", "cannot read the template placeholder"),
])
def test_bad_placeholders_name_the_check(query: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        render(query, VARS, check="conversion-rate")
    assert "'conversion-rate'" in info.value.message and info.value.hint


@pytest.mark.parametrize(("seconds", "text"), [(60, "1m"), (90, "90s"), (0.5, "500ms"), (3600, "60m")])
def test_promql_durations(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


@pytest.mark.parametrize(("check", "says"), [
    ({"name": "x", "query": "up", "compare": {}}, "drop query/metric/source/interval"),
    ({"name": "x", "compare": {}, "thresholdRange": {"min": 1}}, "either thresholdRange"),
    ({"name": "x", "query": "up"}, "either thresholdRange"),
    ({"name": "x", "query": "up", "thresholdRange": {"min": 1}, "source": "client"}, "drop 'source: client'"),
    ({"name": "x", "query": "up", "metric": "rps", "thresholdRange": {"min": 1}}, "drop 'metric:'"),
    ({"name": "availability", "source": "prometheus", "thresholdRange": {"min": 1}}, "no built-in Prometheus query"),
    ({"name": "rps", "interval": "1m", "thresholdRange": {"min": 1}}, "interval applies to Prometheus checks"),
    ({"name": "rps", "templateVariables": {"a": "b"}, "thresholdRange": {"min": 1}}, "need a custom 'query:'"),
    ({"name": "p", "compare": {"marginal_score": 99}}, "marginal_score (99) is above pass_score (95)"),
    ({"name": "p", "compare": {"confidence": 1.5}}, "confidence"),
    ({"name": "p", "compare": {"critical": ["cpu"]}}, "critical"),
])
def test_check_definitions_are_validated(check: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        Threshold.model_validate(check)


def test_thresholds_file_a_list_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("- name: request-success-rate\n  thresholdRange: {min: 99}\n"
                    "- name: conversion-rate\n  query: up\n  thresholdRange: {mni: 2.5}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:5: thresholds.1.thresholdRange.mni: unknown key")):
        load_thresholds(path)
    path.write_text("- name: conversion-rate\n  query: up\n  thresholdRange: {min: 2.5}\n")
    assert [t.name for t in load_thresholds(path)] == ["conversion-rate"]


def test_check_names_are_distinct(workdir: Path) -> None:
    Path("loadkit.yaml").write_text("thresholds:\n- name: rps\n  thresholdRange: {min: 1}\n"
                                    "- name: rps\n  thresholdRange: {min: 2}\n")
    with pytest.raises(ConfigError, match="two checks are named 'rps'"):
        load_config(None)


def test_config_prometheus_section(workdir: Path) -> None:
    Path("loadkit.yaml").write_text("prometheus: {url: prometheus:9090}\n")
    with pytest.raises(ConfigError, match="is not a URL"):
        load_config(None)
    Path("loadkit.yaml").write_text("prometheus: {url: 'http://p:9090', interval: 5m, canary: a, namespace: b}\n")
    assert load_config(None).prometheus.interval == 300


def test_score_reads_builtins_from_prometheus_and_refuses_client_only_checks() -> None:
    checks = [Threshold.model_validate(c) for c in (
        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
        {"name": "perf", "compare": {}},
        {"name": "conversion-rate", "query": "up", "thresholdRange": {"min": 2.5}},
    )]
    converted = for_prometheus_only(checks)
    assert [t.resolved_source for t in converted] == [Source.PROMETHEUS] * 3
    for client_only in ({"name": "latency-max", "thresholdRange": {"max": 1}},
                        {"name": "rps", "source": "client", "thresholdRange": {"min": 1}},
                        {"name": "perf", "compare": {"source": "client"}}):
        with pytest.raises(UsageError, match="runs no traffic"):
            for_prometheus_only([Threshold.model_validate(client_only)])


GRID = [100.0, 101.0, 102.0, 103.0, 104.0]


def test_step_increments_difference_each_series_on_its_own() -> None:
    pod_a = Series({"pod": "a"}, [(100.0, 50), (101.0, 60), (102.0, 70), (103.0, 80), (104.0, 90)])
    pod_b_restarts = Series({"pod": "b"}, [(100.0, 500), (101.0, 510), (102.0, 5), (103.0, 15), (104.0, 25)])
    # summed first, pod b's reset would hide 10 + 5 requests of step 2 behind a drop of 495
    assert step_increments([pod_a, pod_b_restarts], GRID) == [20, 15, 20, 20]


def test_a_series_born_in_the_window_counts_from_zero() -> None:
    # a canary's first 503s: the series appears with its first count already in it
    errors = Series({"response_code": "503"}, [(102.0, 4), (103.0, 6), (104.0, 6)])
    before = Series({"response_code": "200"}, [(100.0, 1000), (101.0, 1100), (102.0, 1200), (103.0, 1300),
                                                (104.0, 1400)])
    assert step_increments([errors], GRID) == [0, 4, 2, 0]
    assert sum(step_increments([errors, before], GRID)) == 406
    assert step_increments([], GRID) == [0, 0, 0, 0]
