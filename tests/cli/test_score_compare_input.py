"""`loadkit score` and `loadkit compare` refuse bad input with exit 2 and a fix, before any load or query.

The CLI runs in-process (through loadkit.cli.main, the real entry point's function, without a Python
start-up per case); tests/prometheus runs the same commands as subprocesses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from loadkit.cli import cli
from loadkit.models.specs import CompareMetricName
from tests.conftest import NOWHERE  # nothing listens: any attempt to reach it would be exit 3

Runner = Callable[..., subprocess.CompletedProcess[str]]


WORKLOAD = ("--canary", "bruno-site", "--namespace", "bruno")


@pytest.mark.parametrize(("args", "says"), [
    ([], "say where the samples come from"),
    (["--target", f"{NOWHERE}/canary"], "--baseline URL is missing"),
    (["--target", f"{NOWHERE}/canary", "--baseline", NOWHERE, "--prometheus", NOWHERE], "use one way"),
    (["--target", f"{NOWHERE}/canary", "--baseline", NOWHERE, "--step", "5s"], "use one way"),
    (["--prometheus", NOWHERE, "--canary", "bruno-site"], "--namespace is missing"),
    (["--prometheus", NOWHERE, *WORKLOAD, "--interval", "10s", "--step", "20s"], "is not shorter than the window"),
    (["--prometheus", NOWHERE, *WORKLOAD, "--interval", "0s"], "must be longer than 0"),
    (["--prometheus", "prometheus:9090", *WORKLOAD], "is not a URL"),
    (["--prometheus", NOWHERE, *WORKLOAD, "--confidence", "1"], "--confidence"),
    (["--prometheus", NOWHERE, *WORKLOAD, "--max-degradation", "-1"], "--max-degradation"),
])
def test_compare_bad_input(loadkit_in_process: Runner, args: list[str], says: str) -> None:
    out = loadkit_in_process("compare", *args)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("checks", "says"), [
    ("- name: x\n  query: 'sum(up)'\n  thresholdRange: {min: 1}\n  bogus: 1\n", "checks.yaml:4: thresholds.0.bogus"),
    ("- name: x\n  query: 'sum({{ foo }})'\n  thresholdRange: {min: 1}\n",
     "check 'x': unknown template variable {{ foo }}"),
    ("- name: x\n  query: 'sum({{ variables.bar }})'\n  thresholdRange: {min: 1}\n", "templateVariables has no"),
    ("- name: x\n  compare: {max_degradation_pct: -1}\n", "thresholds.0.compare.max_degradation_pct"),
    ("- name: x\n  compare: {interval: 10s, step: 10s}\n", "must be shorter than interval"),
    ("- name: x\n  compare: {marginal_score: 99}\n", "marginal_score (99) is above pass_score (95)"),
    ("- name: x\n  thresholdRange: {min: 1}\n  compare: {}\n", "give either thresholdRange"),
    ("- {name: x, thresholdRange: {min: 1}}\n", "unknown metric 'x'"),
    ("- {name: e, metric: error-rate, thresholdRange: {max: 1}}\n- {name: e, metric: rps, thresholdRange: {min: 2}}\n",
     "two checks are named 'e'"),
    ("- {name: x, thresholdRange: {min: 1}\n", "checks.yaml"),
])
def test_score_bad_thresholds_file(loadkit_in_process: Runner, tmp_path: Path, checks: str, says: str) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text(checks)
    out = loadkit_in_process("score", "--prometheus", NOWHERE, *WORKLOAD, "--thresholds", str(path))
    assert out.returncode == 2, out.stderr  # refused before Prometheus is contacted (that would be exit 3)
    assert says in out.stderr and "Traceback" not in out.stderr and "fix:" in out.stderr


def test_score_without_prometheus_or_workload(loadkit_in_process: Runner) -> None:
    for args, says in (([*WORKLOAD], "--prometheus"), (["--prometheus", NOWHERE], "--canary NAME --namespace NS")):
        out = loadkit_in_process("score", *args)
        assert out.returncode == 2 and says in out.stderr, out.stderr


def test_score_against_an_unreachable_prometheus_is_exit_3(loadkit_in_process: Runner) -> None:
    out = loadkit_in_process("score", "--prometheus", NOWHERE, *WORKLOAD)
    assert out.returncode == 3 and f"cannot reach Prometheus at {NOWHERE}" in out.stderr


def test_critical_offers_exactly_the_compared_metrics() -> None:
    # the option spells the enum's values (the CLI module stays free of pydantic for `--help`)
    compare = cli.commands["compare"]
    option = next(p for p in compare.params if p.name == "critical")
    assert isinstance(option.type, click.Choice)
    assert list(option.type.choices) == [m.value for m in CompareMetricName]
