"""A profile plus the caller's overrides -> a concrete LoadPlan, checked before any traffic."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from loadkit.errors import UsageError
from loadkit.load._workers import check_bind
from loadkit.load.journeys import check_locustfile_syntax, locate_locustfile
from loadkit.load.preflight import validate_target
from loadkit.load.profiles import Profile
from loadkit.load.runner import LoadPlan
from loadkit.load.shapes import MAX_RATE, RateStage, Stage, rate_problems, stage_problems
from loadkit.units import parse_host_port


def plan_run(profile: Profile, *, target: str, locustfile: str | None = None, users: int | None = None,
             spawn_rate: float | None = None, duration_s: float | None = None,
             headers: Mapping[str, str] | None = None, processes: int = 1,
             base_dir: Path | None = None, workers: int | None = None,
             master_bind: str | None = None, workers_wait_s: float | None = None, rate: float | None = None,
             max_in_flight: int | None = None) -> LoadPlan:
    """Resolve a profile plus overrides into a concrete plan; raises ConfigError/UsageError.

    `workers`: Locust workers over TCP, local ones, or with `master_bind` ("HOST:PORT") remote ones
    (`loadkit worker --master ...`) that the master waits `workers_wait_s` for.
    `rate` (iterations per second) makes an open-model plan: a constant rate over the profile's
    duration, or the profile's own rate stages rescaled to that peak. `max_in_flight` bounds the
    iterations running at once per process (default: the profile's, else two seconds of the rate).
    """
    bind = check_workers(workers, master_bind, processes, workers_wait_s)
    wait_s = 60.0 if workers_wait_s is None else workers_wait_s
    target = validate_target(target)
    rate_stages = _rate_stages(profile, users=users, spawn_rate=spawn_rate, duration_s=duration_s, rate=rate)
    if max_in_flight is not None and not rate_stages:
        raise UsageError("--max-in-flight bounds the iterations of an arrival-rate run, and this run has users",
                         hint="add --rate R (iterations per second), or drop --max-in-flight")
    if rate_stages:
        stages = [Stage(math.fsum(s.duration_s for s in rate_stages), 0, 1.0)]  # Locust's lifecycle: no users
    else:
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
        workers_wait_s=wait_s,
        rate_stages=rate_stages,
        max_in_flight=(max_in_flight or profile.max_in_flight) if rate_stages else 0,
    )


def check_workers(workers: int | None, master_bind: str | None, processes: int,
                  workers_wait_s: float | None = None) -> tuple[str, int] | None:
    """The distributed options, checked: the master's bind address (None: local workers)."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: a distributed run needs at least 1 worker",
                         hint="give --workers N with N >= 1, or leave --workers out to load from this process")
    if workers_wait_s is not None and not workers:
        raise UsageError("--workers-wait is how long to wait for --workers N, and this run has no workers",
                         hint="add --workers N, or drop --workers-wait")
    if workers and master_bind is None and workers > (cap := max_local_workers()):
        raise UsageError(f"--workers {workers}: more local worker processes than this machine can run "
                         f"(at most {cap}: 4 per CPU)",
                         hint=f"give --workers {cap} or fewer, or run them on other machines with --master-bind")
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
        bind = parse_host_port(master_bind)
    except ValueError as exc:
        raise UsageError(f"--master-bind {exc}", hint="give the address the master listens on for its workers, "
                         "e.g. --master-bind 0.0.0.0:5557") from None
    check_bind(bind)
    return bind


def max_local_workers() -> int:
    return 4 * (os.cpu_count() or 1)


def _rate_stages(profile: Profile, *, users: int | None, spawn_rate: float | None, duration_s: float | None,
                 rate: float | None) -> list[RateStage]:
    """The open-model stages asked for ([] for a users run), refusing what mixes the two models."""
    if rate is None and not profile.open_model:
        return []
    if rate is not None and (not math.isfinite(rate) or rate <= 0 or rate > MAX_RATE):
        raise UsageError(f"--rate {rate:g} is not a rate loadkit runs: iterations per second must be above 0 and at "
                         f"most {MAX_RATE:.0f}", hint="give a positive number, e.g. --rate 100")
    why = f"profile {profile.name!r} is an arrival-rate profile" if rate is None else "--rate is an arrival rate"
    if users is not None:
        raise UsageError(f"{why} (iterations per second), so --users does not apply",
                         hint="give either --rate (open model) or --users (closed model), not both")
    if spawn_rate is not None:
        raise UsageError(f"{why} (iterations per second): there are no users to spawn, so --spawn-rate does not "
                         "apply", hint="drop --spawn-rate")
    stages = profile.resolve_rate(rate=rate, duration_s=duration_s)
    if problems := rate_problems(stages):
        raise UsageError(f"profile {profile.name!r} cannot run as asked:\n  - " + "\n  - ".join(problems),
                         hint="fix the profile's rate stages, or give --rate and --duration")
    return stages
