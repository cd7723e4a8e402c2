"""Load and validate `loadkit.yaml`: profiles, thresholds, min_samples.

Every mistake is reported with file, line, field path and a fix, e.g.

    loadkit.yaml:7: profiles.burst.user: unknown key
      fix: valid keys here: description, duration, headers, locustfile, ... (did you mean 'users'?)

Example file:

    schema_version: 1
    min_samples: 200
    thresholds:
      - name: request-success-rate
        thresholdRange: {min: 99.5}
    profiles:
      checkout-burst:
        locustfile: api            # a built-in journey (website, api) or a path
        shape: spike               # or stages: [{duration: 30s, users: 10, spawn_rate: 5}, ...]
        users: 40
        duration: 2m
        headers: {x-canary: insider}
      checkout-rate:               # open model: iterations per second (k6's ramping-arrival-rate)
        start_rate: 10             # or rate: 100 with duration: for a constant rate
        stages: [{duration: 30s, rate: 100}, {duration: 1m, rate: 100}]
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from loadkit.errors import ConfigError
from loadkit.load.journeys import locate_locustfile
from loadkit.load.profiles import BUILTIN_PROFILES, Profile
from loadkit.load.shapes import MAX_RATE, ShapeKind, Stage, constant_rate, rate_problems, rate_stages, stage_problems
from loadkit.models.base import StrictModel
from loadkit.models.specs import DEFAULT_MIN_SAMPLES, Duration, Threshold, default_chaos_thresholds, default_thresholds
from loadkit.prometheus.queries import QueryVars, render
from loadkit.units import parse_header, parse_host_port
from loadkit.yaml_errors import describe, line_of, parse_yaml

DEFAULT_CONFIG = Path("loadkit.yaml")
FIX_HINT = "fix the field(s) above; docs/configuration.md lists every key with an example"
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")



class StageSpec(StrictModel):
    """A stage of users (closed model) or, with `rate`, of iterations per second (open model): the rate
    ramps linearly from the previous stage's (the first from the profile's `start_rate`) to this one."""

    duration: Duration
    users: int | None = Field(default=None, ge=0)
    spawn_rate: float | None = Field(default=None, gt=0)
    rate: float | None = Field(default=None, ge=0, le=MAX_RATE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_model(self) -> StageSpec:
        if self.users is not None and self.rate is not None:
            raise ValueError("a stage takes either users (closed model) or rate (iterations per second), not both")
        if self.users is None and self.rate is None:
            raise ValueError("a stage needs users (closed model) or rate (iterations per second)")
        if self.rate is not None and self.spawn_rate is not None:
            raise ValueError("a rate stage has no users to spawn: drop spawn_rate")
        return self


class ProfileSpec(StrictModel):
    description: str = ""
    locustfile: str | None = None
    shape: ShapeKind | None = None
    stages: list[StageSpec] | None = Field(default=None, min_length=1)
    users: int | None = Field(default=None, ge=1)
    spawn_rate: float | None = Field(default=None, gt=0)
    duration: Duration | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE, allow_inf_nan=False)
    start_rate: float | None = Field(default=None, ge=0, le=MAX_RATE, allow_inf_nan=False)
    max_in_flight: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_shape(self) -> ProfileSpec:
        if self.shape is not None and self.stages is not None:
            raise ValueError("give either 'shape' or 'stages', not both")
        rated = [s.rate is not None for s in self.stages or ()]
        if any(rated) and not all(rated):
            raise ValueError("stages mix users and rate: give every stage users (closed model) or every stage "
                             "rate (open model)")
        open_model = self.rate is not None or any(rated)
        if self.rate is not None and self.stages is not None:
            raise ValueError("give either 'rate' (a constant rate over 'duration') or rate 'stages', not both")
        if self.max_in_flight is not None and not open_model:
            raise ValueError("max_in_flight bounds an arrival-rate profile's iterations: give rate or rate stages")
        if self.start_rate is not None and not any(rated):
            raise ValueError("start_rate is where rate stages ramp from: give stages with rate, or drop it")
        if open_model and (self.users is not None or self.spawn_rate is not None or self.shape is not None):
            extra = ", ".join(k for k in ("users", "spawn_rate", "shape") if getattr(self, k) is not None)
            raise ValueError(f"an arrival-rate profile (rate) has no users: drop {extra}")
        return self

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            parse_header(f"{name}: {value}")
        return headers


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
TEMPLATE_FIELDS = ("name", "namespace", "service", "workload")


class RollbackOn(enum.StrEnum):
    """When the webhook's rollback hook answers 200 ("roll back now")."""

    MANUAL = "manual"  # only after `loadkit gate rollback NAMESPACE/NAME`
    DECISIVE_BREACH = "decisive-breach"  # also when a rollout run breached a threshold with statistical certainty


class RollbackSpec(StrictModel):
    """`server.rollback`: the rollback hook's policy (hook metadata `rollback_on` can enable it per hook).

    (Not `on:`: YAML reads a bare `on` key as the boolean true.)
    """

    policy: RollbackOn = RollbackOn.MANUAL
    confidence: float = Field(default=0.99, gt=0.5, lt=1)  # a breach counts only when this certain
    window: Duration = Field(default=60.0, gt=0)  # a breach over the whole run, or over this trailing window


class HookKind(enum.StrEnum):
    """Flagger's webhook types (the Canary's `analysis.webhooks[].type`)."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    ROLLBACK = "rollback"
    POST_ROLLOUT = "post-rollout"
    EVENT = "event"


LOAD_HOOKS = (HookKind.PRE_ROLLOUT, HookKind.ROLLOUT)  # the hooks that run load


class CanaryNames(StrictModel):
    """Names that differ from the Canary's: Flagger's `service.name` and `targetRef.name`."""

    service: str | None = Field(default=None, pattern=DNS_LABEL)
    workload: str | None = Field(default=None, pattern=DNS_LABEL)


class WorkersSpec(StrictModel):
    """`loadkit serve`'s Locust worker pods (deploy/workers/): runs of at least `min_users` users load
    from `expect` workers (`loadkit worker --master ...`) through a master bound at `bind`.

        server:
          workers: {expect: 4, bind: 0.0.0.0:5557, min_users: 200}

    Smaller runs stay in the server's own Locust process. The pool serves one run at a time (one
    master port); a second big run waits for it, up to `wait`.
    """

    expect: int = Field(ge=1, strict=True)
    bind: str = "0.0.0.0:5557"  # every interface of the loadkit pod (its pod IP); a NetworkPolicy admits the workers
    min_users: int = Field(default=200, ge=1, strict=True)
    wait: Duration = Field(default=60.0, gt=0)  # for the workers to connect (and for the pool to be free)

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_host_port(self.bind)


def _check_workers(server: ServerSpec) -> ServerSpec:
    workers = server.workers
    if workers is not None and workers.min_users > server.max_users:
        raise ValueError(f"server.workers.min_users ({workers.min_users}) is above server.max_users "
                         f"({server.max_users}): no run would ever load from the workers; lower min_users")
    return server


class ServerSpec(StrictModel):
    """Settings of `loadkit serve` that belong in the config file (see docs/webhook.md).

    Templates may use {name} and {namespace} (the Canary's), {service} (Flagger's service.name,
    default the Canary's name) and {workload} (Flagger's targetRef.name, default the Canary's name).
    """

    target_template: str = "http://{service}-canary.{namespace}.svc:80"
    baseline_template: str = "http://{service}-primary.{namespace}.svc:80"  # compare: {baseline: primary}
    allow_targets: list[str] = Field(default_factory=list)  # regexes over the whole URL, besides the defaults
    allow_namespaces: list[str] = Field(default_factory=list)  # regexes; default: any but the system namespaces
    canaries: dict[str, CanaryNames] = Field(default_factory=dict)  # "namespace/name": {service, workload}
    default_profiles: dict[HookKind, str] = Field(
        default_factory=lambda: {HookKind.PRE_ROLLOUT: "smoke", HookKind.ROLLOUT: "steady"})
    max_duration: Duration = 3600.0
    max_users: int = Field(default=1000, ge=1)
    max_rate: float = Field(default=2000.0, gt=0, le=MAX_RATE)  # an arrival-rate plan's peak iterations per second
    # A continuous run (duration: analysis) stops when no hook of its analysis came for this long:
    # Flagger stopped calling (the Canary was deleted or suspended). Keep it above the interval.
    idle_timeout: Duration = Field(default=600.0, gt=0)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    workers: WorkersSpec | None = None  # worker pods for big runs; None: every run loads from the server

    @model_validator(mode="after")
    def _workers_reachable(self) -> ServerSpec:
        return _check_workers(self)

    @field_validator("target_template", "baseline_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(**{f: "x" for f in TEMPLATE_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            fields = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise ValueError(f"use only {fields} in the template ({exc})") from None
        return value

    @field_validator("allow_targets", "allow_namespaces")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return patterns

    @field_validator("default_profiles", mode="before")
    @classmethod
    def _load_hooks(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        valid = [h.value for h in LOAD_HOOKS]
        for key in value:
            if key not in valid:
                close = difflib.get_close_matches(str(key).replace("_", "-"), valid, n=1)
                maybe = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown hook {key!r} (only {' and '.join(valid)} run load){maybe}")
        return value

    @field_validator("canaries")
    @classmethod
    def _canary_keys(cls, canaries: dict[str, CanaryNames]) -> dict[str, CanaryNames]:
        for key in canaries:
            namespace, _, name = key.partition("/")
            if not (re.match(DNS_LABEL, namespace) and re.match(DNS_LABEL, name)):
                raise ValueError(f"bad key {key!r}: write NAMESPACE/NAME as Flagger's Canary, e.g. bruno/bruno-site")
        return canaries


class PrometheusSpec(StrictModel):
    """Where server-side checks read from (see docs/prometheus.md); CLI options override these."""

    url: str | None = None
    canary: str | None = None  # Flagger's target: the canary workload, e.g. bruno-site
    namespace: str | None = None
    interval: Duration = Field(default=60.0, gt=0)  # loadkit score's window, Flagger's default 1m
    settle: Duration = Field(default=30.0, ge=0)  # after a run, wait this long at most for the last scrape

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not a URL: give Prometheus' base URL, e.g. http://prometheus:9090")
        return value


class ConfigFile(StrictModel):
    schema_version: Literal[1] = 1
    min_samples: int = Field(default=DEFAULT_MIN_SAMPLES, ge=1)
    thresholds: list[Threshold] | None = Field(default=None, min_length=1)
    chaos_thresholds: list[Threshold] | None = Field(default=None)
    threshold_sets: dict[str, list[Threshold]] = Field(default_factory=dict)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    server: ServerSpec = Field(default_factory=ServerSpec)
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)

    @field_validator("thresholds", "chaos_thresholds")
    @classmethod
    def _distinct(cls, checks: list[Threshold] | None) -> list[Threshold] | None:
        _distinct_names(checks or [])
        return checks

    @field_validator("profiles", "threshold_sets")
    @classmethod
    def _names(cls, named: dict[str, Any]) -> dict[str, Any]:
        for name, value in named.items():
            if not _PROFILE_NAME.match(name):
                raise ValueError(f"bad name {name!r}: use lower-case letters, digits, '-' and '_'")
            if isinstance(value, list) and not value:
                raise ValueError(f"threshold set {name!r} is empty: give at least one threshold")
            if isinstance(value, list):
                _distinct_names(value)
        return named


def _distinct_names(checks: list[Threshold]) -> None:
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ValueError(f"two checks are named {check.name!r}: give each its own name (and 'metric:' to "
                             "check one metric twice)")
        seen.add(check.name)
        if check.query is not None:  # a template error is a config error now, not a failed run later
            try:
                render(check.query, QueryVars("namespace", "target", 60.0, check.templateVariables), check=check.name)
            except ConfigError as exc:
                raise ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None


@dataclass(frozen=True)
class Config:
    """The validated configuration: built-in profiles merged with the file's."""

    path: Path | None = None
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(BUILTIN_PROFILES))
    thresholds: list[Threshold] = field(default_factory=default_thresholds)
    threshold_sets: dict[str, list[Threshold]] = field(default_factory=dict)
    min_samples: int = DEFAULT_MIN_SAMPLES
    server: ServerSpec = field(default_factory=ServerSpec)
    chaos_thresholds: list[Threshold] = field(default_factory=default_chaos_thresholds)
    prometheus: PrometheusSpec = field(default_factory=PrometheusSpec)

    def threshold_set(self, name: str | None) -> list[Threshold]:
        """A named set, or the default `thresholds` for None/"default"; ConfigError lists the names."""
        if name in (None, "", DEFAULT_SET):
            return self.thresholds
        try:
            return self.threshold_sets[name]
        except KeyError:
            known = ", ".join([DEFAULT_SET, *sorted(self.threshold_sets)])
            raise ConfigError(f"unknown threshold set {name!r}", hint=f"use one of: {known}") from None


DEFAULT_SET = "default"


def load_config(path: Path | None) -> Config:
    """Load `path`, or ./loadkit.yaml when it exists, or the built-in defaults."""
    if path is None:
        if not DEFAULT_CONFIG.is_file():
            return Config()
        path = DEFAULT_CONFIG
    node, data = _parse(_read(path, "--config"), path)
    return _validated(node, data, path)


def load_thresholds(path: Path) -> list[Threshold]:
    """`--thresholds FILE`: a YAML list of checks, or a loadkit config (its `thresholds:`)."""
    node, data = _parse(_read(path, "--thresholds"), path, allow_list=True)
    if isinstance(data, list):  # validated as a config's `thresholds:`, errors keep their lines
        if node is not None:
            key = yaml.ScalarNode("tag:yaml.org,2002:str", "thresholds", node.start_mark, node.end_mark)
            node = yaml.MappingNode("tag:yaml.org,2002:map", [(key, node)], node.start_mark, node.end_mark)
        data = {"thresholds": data}
    return _validated(node, data, path).thresholds


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        what = "config file" if option == "--config" else "thresholds file"
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}", hint=f"check the {option} path") \
            from exc


def _validated(node: yaml.Node | None, data: Any, path: Path) -> Config:
    try:
        spec = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, node, path, ConfigFile, _explain), hint=FIX_HINT) from None
    config = _build(spec, path)
    _check_profiles(config, spec, node, path)
    return config


def _parse(text: str, path: Path, allow_list: bool = False) -> tuple[yaml.Node | None, Any]:
    node, data = parse_yaml(text, path)
    if not isinstance(data, dict) and not (allow_list and isinstance(data, list)):
        raise ConfigError(f"{path}:1: the config must be a mapping (keys like profiles:, thresholds:)",
                          hint="see docs/configuration.md for an example")
    return node, data


def _build(spec: ConfigFile, path: Path) -> Config:
    profiles = dict(BUILTIN_PROFILES)
    for name, p in spec.profiles.items():
        profiles[name] = _to_profile(name, p, profiles.get(name), path)
    return Config(path=path, profiles=profiles, thresholds=spec.thresholds or default_thresholds(),
                  threshold_sets=dict(spec.threshold_sets), min_samples=spec.min_samples, server=spec.server,
                  chaos_thresholds=default_chaos_thresholds() if spec.chaos_thresholds is None
                  else list(spec.chaos_thresholds), prometheus=spec.prometheus)


def _check_profiles(config: Config, spec: ConfigFile, node: yaml.Node | None, path: Path) -> None:
    """What pydantic cannot see: stages Locust would skip, locustfiles that do not exist, unknown names."""
    problems = []
    for kind, name in spec.server.default_profiles.items():
        if name not in config.profiles:
            line = line_of(node, ("server", "default_profiles", kind.value))
            problems.append(f"{path}:{line}: server.default_profiles.{kind.value}: unknown profile {name!r}")
    for name in spec.profiles:
        profile = config.profiles[name]
        for problem in rate_problems(profile.rate_stages) if profile.rate_stages else ():
            problems.append(f"{path}:{line_of(node, ('profiles', name, 'stages'))}: profiles.{name}.stages: {problem}")
        for problem in stage_problems(profile.stages) if profile.stages else ():
            problems.append(f"{path}:{line_of(node, ('profiles', name, 'stages'))}: profiles.{name}.stages: {problem}")
        try:
            locate_locustfile(profile.locustfile, path.parent)
        except ConfigError as exc:
            line = line_of(node, ("profiles", name, "locustfile"))
            problems.append(f"{path}:{line}: profiles.{name}.locustfile: {exc.message}")
    if problems:
        message = problems[0] if len(problems) == 1 else "invalid config:\n  " + "\n  ".join(problems)
        raise ConfigError(message, hint="fix the profile(s) above; docs/configuration.md explains stages")


def _to_profile(name: str, p: ProfileSpec, base: Profile | None, path: Path) -> Profile:
    """A file profile; one named like a built-in overrides only the fields it sets."""
    rated = [(s.duration, s.rate) for s in p.stages or () if s.rate is not None]
    if p.rate is not None:
        rate = tuple(constant_rate(p.rate, p.duration or (base.duration_s if base else 60.0)))
    else:
        rate = tuple(rate_stages(p.start_rate or 0.0, rated))
    stages = tuple(
        Stage(s.duration, s.users, s.spawn_rate or p.spawn_rate or max(float(s.users), 1.0))
        for s in p.stages or () if s.users is not None
    )
    shape = None if stages or rate else (p.shape or (base.shape if base else ShapeKind.CONSTANT))
    locustfile = p.locustfile or (base.locustfile if base else "website")
    if p.locustfile and not Path(p.locustfile).is_absolute() and p.locustfile.endswith(".py"):
        locustfile = str(path.parent / p.locustfile)
    return Profile(
        name=name,
        description=p.description or (base.description if base else ""),
        locustfile=locustfile,
        users=p.users or (max(s.users for s in stages) if stages else (base.users if base else 10)),
        spawn_rate=p.spawn_rate or (base.spawn_rate if base else 10.0),
        duration_s=p.duration or (sum(s.duration_s for s in stages) if stages else
                                  (base.duration_s if base else 60.0)),
        shape=shape,
        stages=stages,
        headers={**(base.headers if base else {}), **p.headers},
        source=str(path),
        rate_stages=rate,
        max_in_flight=p.max_in_flight or (base.max_in_flight if base else 0),
    )


def _explain(err: Any, loc: tuple[Any, ...]) -> str | None:
    if err["type"] == "literal_error" and loc == ("schema_version",):
        return "unsupported schema_version; this loadkit reads schema_version: 1"
    return None
