"""Config files: profiles and thresholds load; every mistake names file, line, field and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadkit.config import load_config
from loadkit.errors import ConfigError
from loadkit.load.shapes import ShapeKind
from loadkit.models.specs import Metric

GOOD = """\
schema_version: 1
min_samples: 50
thresholds:
  - name: request-success-rate
    thresholdRange: {min: 99.5}
  - name: p95-under-300
    metric: latency-p95
    thresholdRange: {max: 300}
    weight: 2
profiles:
  checkout-burst:
    description: checkout spike
    locustfile: api
    shape: spike
    users: 40
    duration: 2m
    headers: {x-canary: insider}
  staged:
    locustfile: ./mine.py
    stages:
      - {duration: 10s, users: 5}
      - {duration: 20s, users: 15, spawn_rate: 5}
  steady:
    users: 99
"""


def write(tmp_path: Path, text: str, name: str = "loadkit.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("from locust import FastHttpUser\n")
    config = load_config(write(tmp_path, GOOD))
    assert config.min_samples == 50
    assert [t.resolved_metric for t in config.thresholds] == [Metric.REQUEST_SUCCESS_RATE, Metric.LATENCY_P95]
    burst = config.profiles["checkout-burst"]
    assert (burst.shape, burst.users, burst.duration_s, burst.locustfile) == (ShapeKind.SPIKE, 40, 120, "api")
    assert dict(burst.headers) == {"x-canary": "insider"}
    staged = config.profiles["staged"]
    assert [(s.duration_s, s.users, s.spawn_rate) for s in staged.stages] == [(10, 5, 5.0), (20, 15, 5)]
    assert staged.locustfile == str(tmp_path / "mine.py")
    assert staged.default_duration() == 30


def test_a_profile_named_like_a_builtin_overrides_only_what_it_sets(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("from locust import FastHttpUser\n")
    steady = load_config(write(tmp_path, GOOD)).profiles["steady"]
    assert (steady.users, steady.duration_s, steady.shape) == (99, 60, ShapeKind.CONSTANT)


def test_default_config_is_picked_up_from_cwd(workdir: Path) -> None:
    (workdir / "mine.py").write_text("from locust import FastHttpUser\n")
    write(workdir, GOOD)
    assert "checkout-burst" in load_config(None).profiles


def test_no_config_gives_builtins_and_plan_thresholds(workdir: Path) -> None:
    config = load_config(None)
    assert config.path is None
    assert [t.name for t in config.thresholds] == ["request-success-rate", "request-duration", "error-rate"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "profiles:\n  x:\n    user: 5\n",
            ["loadkit.yaml:3: profiles.x.user: unknown key", "did you mean 'users'"],
            id="typo-key"
        ),
        pytest.param(
            "profiles:\n  x:\n    users: -1\n",
            ["loadkit.yaml:3: profiles.x.users", "greater than or equal to 1"],
            id="negative-users"
        ),
        pytest.param("profiles:\n  x:\n    duration: soon\n", ["loadkit.yaml:3: profiles.x.duration", "e.g. 30s, 5m"],
                     id="bad-duration"),
        pytest.param("profiles:\n  x:\n    shape: wobble\n", ["loadkit.yaml:3: profiles.x.shape", "'constant'"],
                     id="bad-shape"),
        pytest.param(
            "profiles:\n  x:\n    shape: ramp\n    stages: [{duration: 1s, users: 1}]\n",
            ["profiles.x", "either 'shape' or 'stages'"],
            id="shape-and-stages"
        ),
        pytest.param("profiles:\n  x:\n    headers: {'bad name': v}\n", ["profiles.x.headers", "bad header"],
                     id="bad-header"),
        pytest.param("profiles:\n  Bad Name: {}\n", ["profiles", "bad name 'Bad Name'"], id="bad-profile-name"),
        pytest.param(
            "thresholds:\n  - name: request-duration\n    thresholdRange: {maximum: 5}\n",
            ["loadkit.yaml:3: thresholds.0.thresholdRange.maximum: unknown key", "valid here: max, min"],
            id="threshold-typo"
        ),
        pytest.param(
            "thresholds:\n  - name: latency\n    thresholdRange: {max: 5}\n",
            ["loadkit.yaml:2", "unknown metric"],
            id="unknown-metric"
        ),
        pytest.param("thresholds: []\n", ["thresholds", "at least 1"], id="empty-thresholds"),
        pytest.param("schema_version: 2\n", ["schema_version", "this loadkit reads schema_version: 1"],
                     id="schema-version"),
        pytest.param("profiles:\n  x: [\n", ["loadkit.yaml:3:1: invalid YAML"], id="broken-yaml"),
        pytest.param("- just\n- a list\n", ["must be a mapping"], id="not-a-mapping"),
        pytest.param("min_samples: 0\n", ["loadkit.yaml:1: min_samples", "greater than or equal to 1"],
                     id="zero-min-samples"),
        pytest.param(
            "thresholds:\n  - name: request-duration\n    thresholdRange: {max: 1}\nthresholds:\n  - name: rps\n"
            "    thresholdRange: {min: 1}\n",
            ["loadkit.yaml:4:1", "duplicate key 'thresholds' (first given on line 1)"],
            id="duplicate-key"
        ),
        pytest.param(
            "profiles:\n  x:\n    locustfile: nothere.py\n",
            ["loadkit.yaml:3: profiles.x.locustfile", "not found"],
            id="missing-locustfile"
        ),
        pytest.param(
            "profiles:\n  x:\n    stages:\n      - {duration: 10s, users: 100, spawn_rate: 1}\n",
            ["loadkit.yaml:3: profiles.x.stages", "takes 100s, longer than the stage"],
            id="unreachable-stage"
        ),
        pytest.param("profiles:\n  x:\n    stages:\n      - {duration: 10s, users: 0}\n", ["no stage has any users"],
                     id="no-users"),
        pytest.param("profiles:\n  x:\n    stages:\n      - {duration: 500ms, users: 1}\n", ["needs at least 1s"],
                     id="too-short-stage"),
    ],
)
def test_config_errors_name_file_line_field_and_fix(workdir: Path, text: str, expected: list[str]) -> None:
    write(workdir, text)
    with pytest.raises(ConfigError) as info:
        load_config(Path("loadkit.yaml"))
    message = str(info.value)
    for part in expected:
        assert part in message
    assert "fix:" in message


def test_missing_config_file(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file nope\.yaml"):
        load_config(Path("nope.yaml"))
