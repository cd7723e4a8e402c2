"""Bad plans are refused with the field and the fix, exit 2, before anything runs; good ones validate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from loadkit.cli import cli
from loadkit.gameday.plan import promql_problem
from tests.gameday.conftest import EXPERIMENTS, env_for, gameday, scenario, write_plan

GOOD: dict[str, Any] = {
    "schema_version": 1, "name": "t", "target": {"url": "http://127.0.0.1:9/canary"},
    "scenarios": [scenario("latency", "local-latency.yaml")],
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown-key", _with(scenarios=[{**scenario("latency", "local-latency.yaml"), "wieght": 3}]),
     ["scenarios.0.wieght", "did you mean 'weight'"]),
    ("unknown-top-key", {**GOOD, "stop_condition": {}}, ["stop_condition", "did you mean 'stop_conditions'"]),
    ("missing-experiment", _with(scenarios=[scenario("gone", "no-such-experiment.yaml")]),
     ["scenarios.0.experiment", "no-such-experiment.yaml not found", "relative to the plan"]),
    ("bad-query", _with(stop_conditions={"prometheus": [{"query": 'ALERTS{alertstate="firing"'}]}),
     ["stop_conditions.prometheus.0.query", "unclosed '{'", "fix: check the query"]),
    ("weight-0", _with(scenarios=[scenario("latency", "local-latency.yaml", weight=0)]),
     ["scenarios.0.weight", "greater than or equal to 1", "weight from 1 (minor) to 10"]),
    ("weight-11", _with(scenarios=[scenario("latency", "local-latency.yaml", weight=11)]),
     ["scenarios.0.weight", "less than or equal to 10"]),
    ("primary-without-allow", _with(target={"url": "http://127.0.0.1:9/", "role": "primary"}),
     ["target", "set allow_primary: true and a blast_radius note", "fix: set role: canary"]),
    ("allow-without-blast-radius",
     _with(target={"url": "http://127.0.0.1:9/", "role": "primary", "allow_primary": True}),
     ["target", "allow_primary needs a blast_radius note"]),
    ("bad-expect", _with(scenarios=[scenario("latency", "local-latency.yaml", expect="works")]),
     ["scenarios.0.expect", "'survives', 'degrades' or 'detected'"]),
    ("bad-category", _with(scenarios=[scenario("latency", "local-latency.yaml", category="disk")]),
     ["scenarios.0.category", "'redundancy'"]),
    ("schema-version", _with(schema_version=2), ["schema_version", "schema_version 1, not 2"]),
    ("load-stop-after-fault-metric",
     _with(stop_conditions={"load": [{"name": "recovery-time", "thresholdRange": {"max": 5}}]}),
     ["stop_conditions.load.0", "measured after a fault"]),
    ("twice", _with(scenarios=[scenario("a", "local-latency.yaml"), scenario("a", "local-abort.yaml")]),
     ["scenarios", "distinct: a given more than once"]),
    ("load-users-and-rate", _with(load={"profile": "steady", "users": 5, "rate": 10}),
     ["load", "either users (closed model) or rate (iterations per second)"]),
    ("unguarded-experiment-var", _with(scenarios=[scenario("latency", "local-latency.yaml",
                                                           variables={"loadkit_allow_primary": True})]),
     ["scenarios.0 (latency)", "safety settings cannot be set as variables"]),
]


@pytest.mark.parametrize(("plan", "expected"), [(p, e) for _, p, e in BAD], ids=[i for i, _, _ in BAD])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_plan_is_refused_before_anything_runs(tmp_path: Path, command: str, plan: dict[str, Any],
                                                  expected: list[str]) -> None:
    """In process (the refusal comes before any load: nothing here starts Locust)."""
    path = write_plan(tmp_path, plan)
    args = ["gameday", command, str(path), *(["--report-dir", str(tmp_path / "out")] if command == "run" else [])]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2, out.output
    assert out.stdout == ""
    for text in expected:
        assert text in out.stderr, out.stderr
    assert "baseline load" not in out.stderr  # nothing ran
    if command == "run":
        assert "exit 2" in (tmp_path / "out" / "error.txt").read_text()


def test_bad_plan_run_as_a_user_runs_it(tmp_path: Path) -> None:
    path = write_plan(tmp_path, _with(scenarios=[scenario("latency", "local-latency.yaml", weight=0)]))
    code, result, stderr = gameday("run", str(path), "-o", "json", env=env_for(None))
    assert (code, result) == (2, None), stderr
    assert "scenarios.0.weight" in stderr and "fix: give every scenario a weight from 1" in stderr


def test_prometheus_refuses_a_query_the_syntax_check_lets_through(
        tmp_path: Path, start_prometheus: Callable[[list[str]], str]) -> None:
    prometheus = start_prometheus([])
    query = "rate(http_requests_total[5x])"
    assert promql_problem(query) is None  # only Prometheus can tell
    path = write_plan(tmp_path, _with(stop_conditions={"prometheus": [{"query": query, "url": prometheus}]}))
    out = CliRunner().invoke(cli, ["gameday", "validate", str(path)])
    assert out.exit_code == 2, out.output
    assert "stop_conditions.prometheus.0.query: Prometheus refused" in out.stderr
    assert "fix: fix the PromQL" in out.stderr
    good = write_plan(tmp_path, _with(stop_conditions={"prometheus": [{"query": 'ALERTS{alertstate="firing"}',
                                                                       "url": prometheus}]}), "good.yaml")
    out = CliRunner().invoke(cli, ["gameday", "validate", str(good)])
    assert out.exit_code == 0, out.output
    assert "syntax only" not in out.stdout  # Prometheus itself read it


@pytest.mark.parametrize(("query", "problem"), [
    ('ALERTS{alertstate="firing",severity="critical"}', None),
    ("sum(rate(x[1m])) by (pod) > 0", None),
    ('up{job="a\\"b"}', None),
    ("sum(rate(x[1m])", "unclosed '('"),
    ("x]", "unbalanced ']'"),
    ('up{job="a}', "unterminated string"),
    ("up >", "ends with an operator"),
], ids=["alerts", "by", "escaped-quote", "unclosed", "unbalanced", "unterminated", "trailing-operator"])
def test_promql_syntax_sanity(query: str, problem: str | None) -> None:
    found = promql_problem(query)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize("plan", sorted((EXPERIMENTS / "gamedays").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_plans_validate(plan: Path) -> None:
    out = CliRunner().invoke(cli, ["gameday", "validate", str(plan)])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(f"ok  {plan}")


def test_primary_with_allow_and_blast_radius_validates(tmp_path: Path) -> None:
    path = write_plan(tmp_path, _with(target={"url": "http://127.0.0.1:9/", "role": "primary", "allow_primary": True,
                                              "blast_radius": "the sandbox only; nobody else uses it"}))
    out = CliRunner().invoke(cli, ["gameday", "validate", str(path)])
    assert out.exit_code == 0, out.output
