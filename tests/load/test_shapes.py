"""Profiles and shapes are pure: stages over time, rescaling, and what Locust is told each tick."""

from __future__ import annotations

import pytest

from loadkit.load.profiles import BUILTIN_PROFILES
from loadkit.load.shapes import ShapeKind, Stage, build_stages, scale_stages, tick, total_duration


@pytest.mark.parametrize(
    ("kind", "users_per_stage"),
    [
        (ShapeKind.CONSTANT, [50]),
        (ShapeKind.RAMP, [50, 50]),
        (ShapeKind.STEP, [5, 10, 25]),
        (ShapeKind.SPIKE, [10, 50, 10]),
        (ShapeKind.STRESS, [25, 50, 75, 100]),
    ],
    ids=lambda v: v.value if isinstance(v, ShapeKind) else None,
)
def test_builtin_shapes(kind: ShapeKind, users_per_stage: list[int]) -> None:
    stages = build_stages(kind, users=50, spawn_rate=10, duration_s=90)
    assert [s.users for s in stages] == users_per_stage
    assert total_duration(stages) == pytest.approx(90)


def test_step_is_the_canary_ladder() -> None:
    stages = build_stages(ShapeKind.STEP, users=100, spawn_rate=10, duration_s=90)
    assert [(s.duration_s, s.users) for s in stages] == [(30, 10), (30, 20), (30, 50)]


def test_ramp_spreads_over_the_first_stage() -> None:
    first = build_stages(ShapeKind.RAMP, users=40, spawn_rate=10, duration_s=100)[0]
    assert first.users / first.spawn_rate == pytest.approx(80)


def test_spike_reaches_peak_within_a_second() -> None:
    spike = build_stages(ShapeKind.SPIKE, users=50, spawn_rate=2, duration_s=60)[1]
    assert spike.spawn_rate >= 40


def test_stage_spawn_rate_lets_the_stage_reach_its_users() -> None:
    stages = build_stages(ShapeKind.STRESS, users=100, spawn_rate=1, duration_s=40)
    for prev, stage in zip([Stage(0, 0, 1), *stages], stages, strict=False):
        assert abs(stage.users - prev.users) / stage.spawn_rate <= stage.duration_s / 2


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0.0, (5, 10.0)), (29.9, (5, 10.0)), (30.0, (10, 10.0)), (89.9, (25, 10.0)), (90.0, None), (500, None)],
)
def test_tick(elapsed: float, expected: tuple[int, float] | None) -> None:
    stages = build_stages(ShapeKind.STEP, users=50, spawn_rate=10, duration_s=90)
    assert tick(stages, elapsed) == expected


def test_scale_custom_stages() -> None:
    stages = [Stage(10, 10, 5), Stage(20, 40, 5)]
    scaled = scale_stages(stages, users=20, duration_s=60)
    assert [(s.duration_s, s.users) for s in scaled] == [(20, 5), (40, 20)]


def test_every_builtin_profile() -> None:
    assert set(BUILTIN_PROFILES) == {"smoke", "steady", "ramp", "step", "spike", "soak", "stress"}
    for profile in BUILTIN_PROFILES.values():
        stages = profile.resolve_stages()
        assert total_duration(stages) == pytest.approx(profile.duration_s)
        assert all(s.users >= 1 and s.spawn_rate > 0 for s in stages)


def test_overrides_rescale_a_profile() -> None:
    stages = BUILTIN_PROFILES["step"].resolve_stages(users=200, duration_s=30, spawn_rate=50)
    assert [s.users for s in stages] == [20, 40, 100]
    assert total_duration(stages) == pytest.approx(30)
