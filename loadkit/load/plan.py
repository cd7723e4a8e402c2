"""A profile plus the caller's overrides -> a concrete LoadPlan, checked before any traffic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from loadkit.errors import UsageError
from loadkit.load.journeys import check_locustfile_syntax, locate_locustfile
from loadkit.load.preflight import validate_target
from loadkit.load.profiles import Profile
from loadkit.load.runner import LoadPlan
from loadkit.load.shapes import stage_problems


def plan_run(profile: Profile, *, target: str, locustfile: str | None = None, users: int | None = None,
             spawn_rate: float | None = None, duration_s: float | None = None,
             headers: Mapping[str, str] | None = None, processes: int = 1,
             base_dir: Path | None = None) -> LoadPlan:
    """Resolve a profile plus overrides into a concrete plan; raises ConfigError/UsageError."""
    target = validate_target(target)
    stages = profile.resolve_stages(users=users, spawn_rate=spawn_rate, duration_s=duration_s)
    if problems := stage_problems(stages):
        raise UsageError(
            f"profile {profile.name!r} cannot run as asked:\n  - " + "\n  - ".join(problems),
            hint="give a longer --duration, a higher --spawn-rate, or fix the profile's stages",
        )
    path = locate_locustfile(locustfile or profile.locustfile, base_dir)
    check_locustfile_syntax(path)
    return LoadPlan(
        target=target,
        locustfile=path,
        stages=stages,
        headers={**profile.headers, **(headers or {})},
        processes=processes,
        profile=profile.name,
    )
