"""Named traffic profiles: a shape (stages of users over time), a default duration and a journey.

Built-ins ship with loadkit; a config file (`loadkit.yaml`) can add more or override them.
`--users`, `--spawn-rate` and `--duration` rescale any profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from loadkit.errors import ConfigError
from loadkit.load.shapes import ShapeKind, Stage, build_stages, scale_stages, total_duration
from loadkit.models.results import ProfileInfo, StageInfo


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
        return "stages" if self.stages else (self.shape or ShapeKind.CONSTANT).value

    def default_duration(self) -> float:
        return total_duration(self.stages) if self.stages else self.duration_s

    def info(self) -> ProfileInfo:
        return ProfileInfo(
            name=self.name, description=self.description, shape=self.shape_name, users=self.users,
            spawn_rate=self.spawn_rate, duration_s=self.default_duration(), locustfile=self.locustfile,
            headers=dict(self.headers), source=self.source,
            stages=[StageInfo(duration_s=s.duration_s, users=s.users, spawn_rate=s.spawn_rate)
                    for s in self.resolve_stages()],
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
