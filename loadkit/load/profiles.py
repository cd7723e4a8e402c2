"""Named traffic profiles: a shape (stages of users over time), a default duration and a journey.

Built-ins ship with loadkit; a config file (`loadkit.yaml`) can add more or override them.
`--users`, `--spawn-rate` and `--duration` rescale any profile. A profile with `rate_stages` is an
open-model one (iterations per second, k6's ramping-arrival-rate); `--rate` rescales its peak, or
turns any users profile into a constant rate over its duration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from loadkit.errors import ConfigError
from loadkit.load.shapes import (
    RateStage,
    ShapeKind,
    Stage,
    build_stages,
    constant_rate,
    peak_rate,
    scale_rate,
    scale_stages,
    total_duration,
)
from loadkit.models.results import ProfileInfo, RateStageInfo, StageInfo


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    locustfile: str
    users: int
    spawn_rate: float
    duration_s: float
    shape: ShapeKind | None = ShapeKind.CONSTANT
    stages: tuple[Stage, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    source: str = "built-in"
    rate_stages: tuple[RateStage, ...] = ()
    max_in_flight: int = 0  # open model: iterations running at once per process (0: the default)

    @property
    def open_model(self) -> bool:
        return bool(self.rate_stages)

    def resolve_rate(self, *, rate: float | None = None, duration_s: float | None = None) -> list[RateStage]:
        """The arrival-rate stages to run ([] for a users run): the profile's, rescaled, or `rate` held
        constant over the run."""
        if self.rate_stages:
            return scale_rate(self.rate_stages, rate=rate, duration_s=duration_s)
        if rate is not None:
            return constant_rate(rate, duration_s or self.default_duration())
        return []

    def resolve_stages(self, *, users: int | None = None, spawn_rate: float | None = None,
                       duration_s: float | None = None) -> list[Stage]:
        """The stages to run, with command-line overrides applied."""
        if self.stages:
            stages = scale_stages(self.stages, users=users, duration_s=duration_s)
            if spawn_rate:
                stages = [replace(s, spawn_rate=spawn_rate) for s in stages]
            return stages
        return build_stages(
            self.shape or ShapeKind.CONSTANT,
            users=users or self.users,
            spawn_rate=spawn_rate or self.spawn_rate,
            duration_s=duration_s or self.duration_s,
        )

    @property
    def shape_name(self) -> str:
        if self.rate_stages:
            return "rate"
        return "stages" if self.stages else (self.shape or ShapeKind.CONSTANT).value

    def default_duration(self) -> float:
        if self.rate_stages:
            return math.fsum(s.duration_s for s in self.rate_stages)
        return total_duration(self.stages) if self.stages else self.duration_s

    def info(self) -> ProfileInfo:
        return ProfileInfo(
            name=self.name, description=self.description, shape=self.shape_name, users=self.users,
            spawn_rate=self.spawn_rate, duration_s=self.default_duration(), locustfile=self.locustfile,
            headers=dict(self.headers), source=self.source,
            stages=[] if self.rate_stages else [StageInfo(duration_s=s.duration_s, users=s.users,
                                                          spawn_rate=s.spawn_rate) for s in self.resolve_stages()],
            rate=peak_rate(self.rate_stages) if self.rate_stages else None,
            rate_stages=[RateStageInfo(duration_s=s.duration_s, start=s.start, end=s.end) for s in self.rate_stages],
        )


def _builtin(name: str, description: str, shape: ShapeKind, users: int, spawn_rate: float,
             duration_s: float) -> Profile:
    return Profile(name=name, description=description, locustfile="website", users=users,
                   spawn_rate=spawn_rate, duration_s=duration_s, shape=shape)


BUILTIN_PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        _builtin("smoke", "a few users for a short while: does the route work at all?",
                 ShapeKind.CONSTANT, 10, 10, 20),
        _builtin("steady", "constant load for one or two analysis intervals", ShapeKind.CONSTANT, 20, 10, 60),
        _builtin("ramp", "0 to peak users over 80 % of the run, then hold", ShapeKind.RAMP, 50, 5, 120),
        _builtin("step", "the canary ladder: 10 % -> 20 % -> 50 % of peak users", ShapeKind.STEP, 50, 10, 90),
        _builtin("spike", "20 % of peak, a sudden burst to peak, back to 20 %", ShapeKind.SPIKE, 50, 10, 60),
        _builtin("soak", "moderate constant load for a long time (leaks, slow drift)",
                 ShapeKind.CONSTANT, 20, 5, 1800),
        _builtin("stress", "beyond peak: 50 % -> 100 % -> 150 % -> 200 % of peak users",
                 ShapeKind.STRESS, 50, 10, 120),
    )
}


def get_profile(name: str, profiles: Mapping[str, Profile]) -> Profile:
    """Look a profile up by name; an unknown name is a usage error that lists the known ones."""
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown profile {name!r}", hint=f"use one of: {known} (see: loadkit profiles)") from None
