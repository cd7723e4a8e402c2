"""Load shapes as stages of users over time. Pure: the Locust plugin's LoadTestShape calls `tick`.

A stage holds `users` for `duration_s`, reaching them at `spawn_rate` users/s (Locust's meaning
of a stage). Built-in shapes are templates over a peak user count and a total duration:

    constant  100 % of peak for the whole run                          (smoke, steady, soak)
    ramp      0 -> 100 % over the first 80 %, then hold                 (ramp)
    step      10 % -> 20 % -> 50 % of peak, a third each: the canary ladder (step)
    spike     20 %, then 100 % within ~1 s for a fifth, then back to 20 % (spike)
    stress    50 % -> 100 % -> 150 % -> 200 % of peak, a quarter each     (stress)

    >>> tick(build_stages(ShapeKind.STEP, users=50, spawn_rate=10, duration_s=90), 31.0)
    (10, 10.0)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from loadkit.units import MAX_RATE


@dataclass(frozen=True)
class Stage:
    duration_s: float
    users: int
    spawn_rate: float


class ShapeKind(enum.StrEnum):
    CONSTANT = "constant"
    RAMP = "ramp"
    STEP = "step"
    SPIKE = "spike"
    STRESS = "stress"


# (share of the duration, share of peak users); None for spawn means "the profile's spawn rate".
_TEMPLATES: dict[ShapeKind, list[tuple[float, float]]] = {
    ShapeKind.CONSTANT: [(1.0, 1.0)],
    ShapeKind.RAMP: [(0.8, 1.0), (0.2, 1.0)],
    ShapeKind.STEP: [(1 / 3, 0.1), (1 / 3, 0.2), (1 / 3, 0.5)],
    ShapeKind.SPIKE: [(0.4, 0.2), (0.2, 1.0), (0.4, 0.2)],
    ShapeKind.STRESS: [(0.25, 0.5), (0.25, 1.0), (0.25, 1.5), (0.25, 2.0)],
}


def build_stages(kind: ShapeKind, *, users: int, spawn_rate: float, duration_s: float) -> list[Stage]:
    """Expand a built-in shape into stages for a peak of `users` over `duration_s` seconds."""
    stages: list[Stage] = []
    previous = 0
    for share, fraction in _TEMPLATES[kind]:
        length = duration_s * share
        target = max(1, round(users * fraction))
        if kind is ShapeKind.RAMP and not stages:
            rate = max(target / length, 0.01)  # spread the ramp over the whole first stage
        elif kind is ShapeKind.SPIKE and target > previous:
            rate = max(spawn_rate, float(target - previous))  # reach the spike within about a second
        else:
            rate = _reachable_rate(spawn_rate, target - previous, length)
        stages.append(Stage(length, target, rate))
        previous = target
    return stages


def _reachable_rate(rate: float, delta: int, length: float) -> float:
    """Raise the spawn rate when a stage would not reach its users within half its length.

    Locust blocks the shape while it spawns, so a slow ramp would swallow the next stage.
    """
    if delta == 0 or length <= 0:
        return rate
    return max(rate, abs(delta) / (length / 2))


def scale_stages(stages: Sequence[Stage], *, users: int | None = None,
                 duration_s: float | None = None) -> list[Stage]:
    """Rescale custom stages to a new peak and/or total duration, keeping their proportions."""
    peak = peak_users(stages)
    total = total_duration(stages)
    u = (users / peak) if users and peak else 1.0
    d = (duration_s / total) if duration_s else 1.0
    return [Stage(s.duration_s * d, max(1, round(s.users * u)) if s.users else 0, s.spawn_rate * u)
            for s in stages]


MIN_STAGE_S = 1.0  # Locust asks the shape for the load once a second


def stage_problems(stages: Sequence[Stage]) -> list[str]:
    """Why these stages would not run as written (Locust would skip or truncate them), if at all."""
    problems = []
    if peak_users(stages) < 1:
        problems.append("no stage has any users")
    previous = 0
    for number, stage in enumerate(stages, start=1):
        if stage.duration_s < MIN_STAGE_S:
            problems.append(f"stage {number} lasts {stage.duration_s:.3g}s; Locust changes the load once a "
                            f"second, so every stage needs at least {MIN_STAGE_S:g}s")
        delta = abs(stage.users - previous)
        if delta and delta / stage.spawn_rate > stage.duration_s:
            needed = delta / stage.duration_s
            problems.append(f"stage {number} goes from {previous} to {stage.users} users at {stage.spawn_rate:g}/s, "
                            f"which takes {delta / stage.spawn_rate:.3g}s, longer than the stage "
                            f"({stage.duration_s:.3g}s); use a spawn_rate of at least {needed:.3g} or a longer stage")
        previous = stage.users
    return problems


def total_duration(stages: Sequence[Stage]) -> float:
    return math.fsum(s.duration_s for s in stages)


def peak_users(stages: Sequence[Stage]) -> int:
    return max((s.users for s in stages), default=0)


def tick(stages: Sequence[Stage], elapsed_s: float) -> tuple[int, float] | None:
    """What Locust should run `elapsed_s` seconds in: (users, spawn_rate), or None to stop."""
    end = 0.0
    for stage in stages:
        end += stage.duration_s
        if elapsed_s < end:
            return stage.users, float(stage.spawn_rate)
    return None


# -- open model: arrivals per second -------------------------------------------------------------------


@dataclass(frozen=True)
class RateStage:
    """Iterations started per second, ramping linearly from `start` to `end` over `duration_s`.

    k6's ramping-arrival-rate stage: each stage ramps from the previous stage's rate (the first from
    the profile's start rate) to its own target. A constant rate is one stage with start == end.
    """

    duration_s: float
    start: float
    end: float


def rate_stages(start_rate: float, targets: Sequence[tuple[float, float]]) -> list[RateStage]:
    """k6's `startRate` plus `stages: [{duration, target}]` -> resolved segments.

    >>> rate_stages(10, [(30, 100), (60, 100)])
    [RateStage(duration_s=30, start=10, end=100), RateStage(duration_s=60, start=100, end=100)]
    """
    stages, previous = [], start_rate
    for duration_s, target in targets:
        stages.append(RateStage(duration_s, previous, target))
        previous = target
    return stages


def constant_rate(rate: float, duration_s: float) -> list[RateStage]:
    return [RateStage(duration_s, rate, rate)]


def peak_rate(stages: Sequence[RateStage]) -> float:
    return max((max(s.start, s.end) for s in stages), default=0.0)


def scale_rate(stages: Sequence[RateStage], *, rate: float | None = None,
               duration_s: float | None = None) -> list[RateStage]:
    """Rescale rate stages to a new peak rate and/or total duration, keeping their proportions."""
    peak = peak_rate(stages)
    total = math.fsum(s.duration_s for s in stages)
    r = (rate / peak) if rate and peak else 1.0
    d = (duration_s / total) if duration_s and total else 1.0
    return [RateStage(s.duration_s * d, s.start * r, s.end * r) for s in stages]


def planned_iterations(stages: Sequence[RateStage]) -> float:
    """How many iterations the schedule starts (the area under the rate)."""
    return math.fsum(s.duration_s * (s.start + s.end) / 2.0 for s in stages)


def rate_at(stages: Sequence[RateStage], elapsed_s: float) -> float:
    """The scheduled rate `elapsed_s` seconds in (0.0 after the end)."""
    begin = 0.0
    for s in stages:
        if elapsed_s < begin + s.duration_s:
            return s.start + (s.end - s.start) * (elapsed_s - begin) / s.duration_s
        begin += s.duration_s
    return 0.0


def rate_problems(stages: Sequence[RateStage]) -> list[str]:
    """Why these rate stages cannot run as written, if at all."""
    problems = []
    if peak_rate(stages) <= 0:
        problems.append("no stage has a rate above 0")
    if peak_rate(stages) > MAX_RATE:
        problems.append(f"the rate peaks at {peak_rate(stages):.6g} iterations/s, more than loadkit schedules in "
                        f"one run ({MAX_RATE:.0f}/s, all its processes together)")
    for number, s in enumerate(stages, start=1):
        if s.duration_s <= 0:
            problems.append(f"rate stage {number} lasts {s.duration_s:.3g}s; give it a positive duration")
        if s.start < 0 or s.end < 0:
            problems.append(f"rate stage {number} has a negative rate; rates are iterations per second, >= 0")
    return problems


def arrival_times(stages: Sequence[RateStage], first: int = 0, every: int = 1) -> Iterator[float]:
    """Intended start times (seconds from the start) of arrivals first, first + every, ...

    Arrival k starts when the cumulative count of the schedule, N(t) = integral of the rate, reaches k.
    Within a stage N(t) = r0*t + a*t^2/2 (a = (r1 - r0)/D), so t = 2n / (r0 + sqrt(r0^2 + 2*a*n)):
    the form without cancellation, exact for a = 0 (t = n/r0) and for r0 = 0. With `every` = N
    processes each taking `first` = 0..N-1, the processes together start exactly the schedule.

    >>> list(arrival_times(constant_rate(4, 1)))
    [0.0, 0.25, 0.5, 0.75]
    >>> list(arrival_times(constant_rate(4, 1), first=1, every=2))
    [0.25, 0.75]
    """
    k, begin, done = first, 0.0, 0.0
    for s in stages:
        count = s.duration_s * (s.start + s.end) / 2.0
        a = (s.end - s.start) / s.duration_s if s.duration_s > 0 else 0.0
        while k < done + count:
            n = k - done
            root = math.sqrt(max(0.0, s.start * s.start + 2.0 * a * n))
            offset = 2.0 * n / (s.start + root) if s.start + root > 0 else 0.0
            yield begin + min(offset, s.duration_s)
            k += every
        begin += s.duration_s
        done += count


def scheduled_arrivals(stages: Sequence[RateStage], until_s: float | None = None) -> int:
    """How many arrivals the schedule starts before `until_s` (default: the whole schedule).

    >>> scheduled_arrivals(constant_rate(4, 1)), scheduled_arrivals(constant_rate(4, 1), 0.3)
    (4, 2)
    """
    area, begin = 0.0, 0.0
    for s in stages:
        length = s.duration_s if until_s is None else min(s.duration_s, max(0.0, until_s - begin))
        if s.duration_s > 0:
            area += length * s.start + (s.end - s.start) * length * length / (2.0 * s.duration_s)
        begin += s.duration_s
    return math.ceil(area - 1e-9)
