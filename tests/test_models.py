"""The result models: closed sets are enums that keep their JSON strings, every check says its kind,
and results stored before `kind` existed still load."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from loadkit.models.results import Check, Classification, CompareVerdict, RunResult
from loadkit.models.specs import CheckKind, CompareMetricName, CompareSpec, Source, Threshold, ThresholdRange
from loadkit.report.text import render_checks
from loadkit.scoring import Observation, Side, evaluate, judge


def check(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "observed": 1.0, "min": None, "max": None, "passed": True, "reason": "r", **fields}


@pytest.mark.parametrize(
    ("stored", "kind"),
    [
        pytest.param(check(metric="error-rate"), CheckKind.METRIC, id="built-in-metric"),
        pytest.param(check(metric="conversion-rate", source="prometheus"), CheckKind.CUSTOM, id="custom-query"),
        pytest.param(check(metric="compare", passed=False), CheckKind.COMPARE, id="compare-without-data"),
        pytest.param(check(metric="steady-state"), CheckKind.GATE, id="chaos-steady-state"),
        pytest.param(check(metric="rollbacks"), CheckKind.GATE, id="chaos-rollbacks"),
        pytest.param(check(metric="compare", kind="custom"), CheckKind.CUSTOM, id="kind-given-wins"),
    ],
)
def test_a_check_stored_before_kind_gets_it_from_its_old_fields(stored: dict[str, Any], kind: CheckKind) -> None:
    assert Check.model_validate(stored).kind is kind


def test_a_run_result_stored_before_kind_still_loads() -> None:
    stored = {"schema_version": 1, "verdict": "pass", "score": 100.0, "target": "http://x", "profile": "smoke",
              "locustfile": "website", "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:30Z",
              "stats": {"requests": 300}, "checks": [check(metric="request-success-rate", status="passed")]}
    result = RunResult.model_validate_json(json.dumps(stored))
    assert result.checks[0].kind is CheckKind.METRIC
    assert json.loads(result.model_dump_json())["checks"][0]["kind"] == "metric"


def test_enums_keep_their_json_strings() -> None:
    latency = [10.0 + i % 7 for i in range(100)]
    comparison = judge(Side(latency, 100, 0), Side([x * 2 for x in latency], 100, 0), CompareSpec(),
                       baseline_name="primary", canary_name="canary")
    data = json.loads(comparison.model_dump_json())
    assert data["verdict"] == "fail" and comparison.verdict is CompareVerdict.FAIL
    assert [(m["name"], m["classification"]) for m in data["metrics"]] == [("latency", "high"),
                                                                           ("error-rate", "pass")]
    assert comparison.metrics[0].classification is Classification.HIGH
    assert data["settings"]["critical"] == ["error-rate"] and comparison.settings.critical == [
        CompareMetricName.ERROR_RATE]


def test_a_custom_check_named_compare_is_shown_as_what_it_is() -> None:
    named_compare = Threshold(name="compare", query="sum(rate(orders_total[1m]))",
                              thresholdRange=ThresholdRange(min=1))
    real = Threshold(name="vs-primary", compare=CompareSpec())
    card = evaluate([named_compare, real], {}, 100, {
        "compare": Observation(5.0, None, "", Source.PROMETHEUS, query="sum(rate(orders_total[1m]))")})
    custom, compare = card.checks
    assert (custom.kind, custom.metric, custom.passed) == (CheckKind.CUSTOM, "compare", True)
    assert (compare.kind, compare.metric) == (CheckKind.COMPARE, "compare")
    console = Console(record=True, width=200)
    render_checks(card.checks, console)
    rows = {cells[0]: cells for line in console.export_text().splitlines()
            if len(cells := [c.strip() for c in line.split("│")]) > 1}
    assert rows["compare"][1:4] == ["prometheus", "5", ">= 1"]  # before `kind`: "compare", as a comparison
    assert rows["vs-primary"][1] == "compare"
