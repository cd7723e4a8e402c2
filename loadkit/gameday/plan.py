"""A game-day plan: what a team writes. Loaded once, every mistake refused before anything runs.

    schema_version: 1
    name: sandbox
    target: {url: http://127.0.0.1:8080/canary, role: canary}
    load: {profile: steady, users: 5}
    scenarios:
      - {name: pod-kill, experiment: ../local-pod-kill.yaml, expect: degrades, weight: 5, category: redundancy}
    stop_conditions:
      max_duration: 10m
      load: [{name: request-success-rate, thresholdRange: {min: 90}, window: 10s}]

Experiment paths are relative to the plan's file. A primary target needs `allow_primary: true` and
a `blast_radius` note (who is affected if it goes wrong).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, ValidationError, field_validator, model_validator

from loadkit.errors import ConfigError
from loadkit.models.base import StrictModel
from loadkit.models.specs import Duration, Metric, Threshold, ThresholdRange
from loadkit.units import MAX_RATE, fmt
from loadkit.yaml_errors import describe, parse_yaml

PLAN_SCHEMA_VERSION = 1
FIX_HINT = "see docs/gameday.md for a plan's keys, or start from experiments/gamedays/sandbox.yaml"


class Expect(enum.StrEnum):
    """What the team expects a scenario to do: `survives` (every threshold holds through the fault),
    `degrades` (thresholds may break while the fault is on, but the system recovers), `detected`
    (the fault must be seen: a threshold over the fault window breaks, then the system recovers)."""

    SURVIVES = "survives"
    DEGRADES = "degrades"
    DETECTED = "detected"


class Category(enum.StrEnum):
    REDUNDANCY = "redundancy"
    NETWORK = "network"
    RESOURCES = "resources"
    DEPENDENCIES = "dependencies"


class Role(enum.StrEnum):
    CANARY = "canary"
    PRIMARY = "primary"


class TargetSpec(StrictModel):
    """Where the load goes and what the faults touch. `canary`/`namespace` name the workload for
    Prometheus checks and are passed to experiments that declare them."""

    url: str | None = None
    role: Role = Role.CANARY
    canary: str | None = None
    namespace: str | None = None
    allow_primary: bool = False
    blast_radius: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _primary(self) -> TargetSpec:
        if self.role is Role.PRIMARY and not self.allow_primary:
            raise ValueError("the primary serves users: set allow_primary: true and a blast_radius note "
                             "(who is affected if it breaks), or target the canary (role: canary)")
        if self.allow_primary and self.role is not Role.PRIMARY:
            raise ValueError("allow_primary is only for role: primary; remove it for a canary")
        if self.allow_primary and not self.blast_radius:
            raise ValueError("allow_primary needs a blast_radius note: who is affected if the primary breaks")
        return self


class LoadSpec(StrictModel):
    """The baseline load, held for the whole game day (a profile's journey at its peak users, or with
    `rate` at that many iterations per second: an open model, latency from each intended start)."""

    profile: str = "steady"
    users: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_model(self) -> LoadSpec:
        if self.users is not None and self.rate is not None:
            raise ValueError("give either users (closed model) or rate (iterations per second), not both")
        return self


def _named(name: str) -> str:
    if not name.strip():
        raise ValueError("a name must have more than whitespace")
    return name


class ScenarioSpec(StrictModel):
    name: str = Field(min_length=1)
    experiment: Path
    expect: Expect
    # strict: `weight: true`, "3" or 5.0 are slips, not weights
    weight: int = Field(ge=1, le=10, strict=True, description="1-10; 0 would make a scenario count for nothing")
    category: Category
    variables: dict[str, Any] = Field(default_factory=dict)
    cooldown: Duration = Field(default=5.0, ge=0)
    recovery_window: Duration = Field(default=3.0, gt=0)
    impact_window: Duration = Field(default=3.0, gt=0)

    _name = field_validator("name")(_named)


class LoadStop(StrictModel):
    """Halt when a load threshold breaks over a rolling window of the live load, e.g.
    `{name: request-success-rate, thresholdRange: {min: 90}, window: 10s}`."""

    name: str = Field(min_length=1)
    metric: Metric | None = None
    thresholdRange: ThresholdRange
    window: Duration = Field(default=10.0, gt=0)
    min_samples: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _client_metric(self) -> LoadStop:
        self.threshold()
        return self

    @property
    def condition(self) -> str:
        """How the game day names it: `request-duration (max 400, over 3s)`."""
        bounds = " and ".join(f"{word} {fmt(v)}" for word, v in (("min", self.thresholdRange.min),
                                                                 ("max", self.thresholdRange.max)) if v is not None)
        return f"{self.name} ({bounds}, over {fmt(self.window)}s)"

    def threshold(self) -> Threshold:
        threshold = Threshold.model_validate({"name": self.name, "metric": self.metric,
                                              "thresholdRange": self.thresholdRange.model_dump(exclude_none=True),
                                              "min_samples": self.min_samples})
        if threshold.resolved_metric in (Metric.AVAILABILITY, Metric.RECOVERY_TIME):
            raise ValueError(f"{threshold.resolved_metric.value} is measured after a fault, not live; "
                             "use request-success-rate for availability")
        return threshold


class PrometheusStop(StrictModel):
    """Halt when a PromQL query returns anything (e.g. a firing critical alert)."""

    query: str = Field(min_length=1)
    url: str | None = None  # default: --prometheus, then the config's server.prometheus
    interval: Duration = Field(default=2.0, gt=0)

    @field_validator("query")
    @classmethod
    def _syntax(cls, query: str) -> str:
        if problem := promql_problem(query):
            raise ValueError(f"not a PromQL query: {problem}")
        return query


class HttpStop(StrictModel):
    """Halt when a health URL answers anything but `status` (or not at all) `failures` times in a row."""

    url: str = Field(pattern=r"^https?://")
    status: int = Field(default=200, ge=100, le=599)
    failures: int = Field(default=3, ge=1)
    interval: Duration = Field(default=1.0, gt=0)
    timeout: Duration = Field(default=2.0, gt=0)


class StopConditions(StrictModel):
    max_duration: Duration | None = Field(default=None, gt=0, description="wall-clock limit of the whole game day")
    load: list[LoadStop] = Field(default_factory=list)
    prometheus: list[PrometheusStop] = Field(default_factory=list)
    http: list[HttpStop] = Field(default_factory=list)


class PlanSpec(StrictModel):
    schema_version: int
    name: str = Field(min_length=1)
    description: str = ""
    target: TargetSpec = Field(default_factory=TargetSpec)
    load: LoadSpec = Field(default_factory=LoadSpec)
    variables: dict[str, Any] = Field(default_factory=dict)
    scenarios: list[ScenarioSpec] = Field(min_length=1)
    stop_conditions: StopConditions = Field(default_factory=StopConditions)

    _name = field_validator("name")(_named)

    @field_validator("schema_version")
    @classmethod
    def _version(cls, version: int) -> int:
        if version != PLAN_SCHEMA_VERSION:
            raise ValueError(f"this loadkit reads plans of schema_version {PLAN_SCHEMA_VERSION}, not {version}")
        return version

    @field_validator("scenarios")
    @classmethod
    def _distinct(cls, scenarios: list[ScenarioSpec]) -> list[ScenarioSpec]:
        names = [s.name for s in scenarios]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"scenario names must be distinct: {', '.join(twice)} given more than once")
        return scenarios


class Plan:
    """A validated plan and where it came from (experiment paths resolved against its directory)."""

    def __init__(self, spec: PlanSpec, path: Path) -> None:
        self.spec = spec
        self.path = path

    def experiment(self, scenario: ScenarioSpec) -> Path:
        return scenario.experiment if scenario.experiment.is_absolute() else self.path.parent / scenario.experiment


def load_plan(path: Path) -> Plan:
    """Read and validate PLAN.yaml; every mistake is a ConfigError (exit 2) naming the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the plan {path}: {exc.strerror or exc}", hint="check the path") from None
    node, data = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a plan is a mapping (schema_version:, name:, scenarios: ...)", hint=FIX_HINT)
    try:
        spec = PlanSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, node, path, PlanSpec), hint=_hint(exc)) from None
    plan = Plan(spec, path)
    for i, stop in enumerate(spec.stop_conditions.http):
        if problem := url_problem(stop.url):
            raise ConfigError(f"{path}: stop_conditions.http.{i}.url: {stop.url!r} {problem}",
                              hint="give http(s)://host[:port]/path")
    for i, scenario in enumerate(spec.scenarios):
        found = plan.experiment(scenario)
        if not found.is_file():
            raise ConfigError(f"{path}: scenarios.{i}.experiment: {scenario.experiment} not found (looked for {found})",
                              hint="experiment paths are relative to the plan's directory")
    return plan


def url_problem(url: str) -> str | None:
    """Why httpx cannot GET `url` (the pattern ^https?:// lets "http://[::1" through), or None."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"is not a URL: {exc}"
    return None if parsed.host else "has no host"


def _hint(exc: ValidationError) -> str:
    """The fix for the first error, when a field has one that is not in its message already."""
    loc = tuple(exc.errors()[0]["loc"])
    if loc and loc[-1] == "weight":
        return "give every scenario a weight from 1 (minor) to 10 (critical)"
    if "target" in loc:
        return "set role: canary, or role: primary with allow_primary: true and a blast_radius note"
    if "prometheus" in loc:
        return "check the query's brackets, braces and quotes (try it in Prometheus' UI)"
    return FIX_HINT


_PAIRS = {")": "(", "]": "[", "}": "{"}


def promql_problem(query: str) -> str | None:
    """A syntax sanity check for when Prometheus cannot be asked: balanced brackets and quotes, an
    operand at both ends. None when nothing is wrong with it that this can see."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in query:
        if quote:
            escaped, quote = (False, quote) if escaped else (ch == "\\", None if ch == quote else quote)
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in _PAIRS and (not stack or stack.pop() != _PAIRS[ch]):
            return f"unbalanced {ch!r}"
    if quote:
        return f"unterminated string (opened with {quote})"
    if stack:
        return f"unclosed {stack[-1]!r}"
    stripped = query.strip()
    if not stripped:
        return "it is empty"
    if stripped[-1] in "+-*/%^=<>!,(" or stripped.endswith((" and", " or", " unless")):
        return f"it ends with an operator ({stripped.split()[-1]!r})"
    return None
