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
from loadkit.units import parse_host_port


def plan_run(profile: Profile, *, target: str, locustfile: str | None = None, users: int | None = None,
             spawn_rate: float | None = None, duration_s: float | None = None,
             headers: Mapping[str, str] | None = None, processes: int = 1,
             base_dir: Path | None = None, workers: int | None = None,
             master_bind: str | None = None, workers_wait_s: float = 60.0) -> LoadPlan:
    """Resolve a profile plus overrides into a concrete plan; raises ConfigError/UsageError.

    `workers`: Locust workers over TCP, local ones, or with `master_bind` ("HOST:PORT") remote ones
    (`loadkit worker --master ...`) that the master waits `workers_wait_s` for.
    """
    bind = check_workers(workers, master_bind, processes)
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
        workers=workers or 0,
        master_bind=bind,
        workers_wait_s=workers_wait_s,
    )


def check_workers(workers: int | None, master_bind: str | None, processes: int) -> tuple[str, int] | None:
    """The distributed options, checked: the master's bind address (None: local workers)."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: a distributed run needs at least 1 worker",
                         hint="give --workers N with N >= 1, or leave --workers out to load from this process")
    if workers and processes > 1:
        raise UsageError("--workers and --processes cannot be combined",
                         hint="--processes N forks workers on this machine; --workers N runs them over TCP "
                              "(here, or on other machines with --master-bind): choose one")
    if master_bind is None:
        return None
    if not workers:
        raise UsageError("--master-bind needs --workers N (how many remote workers to wait for)",
                         hint="e.g. --workers 4 --master-bind 0.0.0.0:5557, then run `loadkit worker --master "
                              "MASTER:5557` on each worker machine")
    try:
        return parse_host_port(master_bind)
    except ValueError as exc:
        raise UsageError(f"--master-bind {exc}", hint="give the address the master listens on for its workers, "
                         "e.g. --master-bind 0.0.0.0:5557") from None
