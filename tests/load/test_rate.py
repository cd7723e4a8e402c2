"""Open-model arrival rates without Locust: the schedule, the scheduler's backlog and drops, the exact
windows' iteration counters, the config and the command line's refusals (exit 2 with the fix)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from loadkit.analysis._result import (
    _schedule_kept,
    assess_generator,
    censored_latency_checks,
    latency_upper_bound_ms,
)
from loadkit.config import load_config
from loadkit.errors import ConfigError, UsageError
from loadkit.load._arrivals import Scheduler, default_max_in_flight
from loadkit.load._window import Window, merge_summaries
from loadkit.load.plan import plan_run
from loadkit.load.profiles import BUILTIN_PROFILES
from loadkit.load.shapes import (
    MAX_RATE,
    RateStage,
    arrival_times,
    constant_rate,
    planned_iterations,
    rate_at,
    rate_problems,
    rate_stages,
    scale_rate,
    scheduled_arrivals,
)
from loadkit.models.results import Check, GeneratorHealth
from loadkit.models.specs import Threshold, ThresholdRange
from loadkit.models.wire import Snapshot, Stats

InProcess = Callable[..., CompletedProcess[str]]


# -- the schedule ------------------------------------------------------------------------------------


def test_a_constant_rate_spaces_arrivals_evenly() -> None:
    times = list(arrival_times(constant_rate(100, 10)))
    assert len(times) == 1000 == scheduled_arrivals(constant_rate(100, 10))
    assert times[:3] == pytest.approx([0.0, 0.01, 0.02])
    assert times[-1] == pytest.approx(9.99)


def test_a_ramp_follows_the_integral_of_the_rate() -> None:
    stages = rate_stages(0, [(10, 100), (5, 100), (10, 0)])
    assert [(s.start, s.end) for s in stages] == [(0, 100), (100, 100), (100, 0)]
    times = list(arrival_times(stages))
    assert len(times) == round(planned_iterations(stages)) == 500 + 500 + 500
    assert times == sorted(times)
    # N(t) = 5 t^2 on the ramp up: arrival n at sqrt(n / 5)
    assert times[125] == pytest.approx(math.sqrt(125 / 5))
    # arrivals per second follow the rate: ~50/s around t = 5 (rate 50), ~100/s on the plateau
    assert sum(4.5 <= t < 5.5 for t in times) == pytest.approx(50, abs=1)
    assert sum(11 <= t < 12 for t in times) == 100
    assert rate_at(stages, 5) == pytest.approx(50) and rate_at(stages, 20) == pytest.approx(50)
    assert rate_at(stages, 26) == 0.0


@pytest.mark.parametrize("processes", [2, 3, 7])
def test_processes_together_start_exactly_the_schedule(processes: int) -> None:
    stages = rate_stages(3, [(4, 57), (3, 11)])
    whole = list(arrival_times(stages))
    shares = [list(arrival_times(stages, first=i, every=processes)) for i in range(processes)]
    assert sorted(t for share in shares for t in share) == whole
    assert abs(len(shares[0]) - len(shares[-1])) <= 1


def test_scaling_keeps_the_shape() -> None:
    scaled = scale_rate(rate_stages(10, [(30, 100), (60, 50)]), rate=200, duration_s=45)
    assert scaled == [RateStage(15, 20, 200), RateStage(30, 200, 100)]
    assert scheduled_arrivals(constant_rate(4, 10), until_s=2.5) == 10


# -- the scheduler (fake clock) ---------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _scheduler(rate: float, duration: float, max_in_flight: int, clock: _Clock,
               started: list[float]) -> tuple[Scheduler, Window]:
    window = Window()
    scheduler = Scheduler(arrival_times(constant_rate(rate, duration)), recorder=window,
                          max_in_flight=max_in_flight, max_lateness_s=1.0, clock=clock, sleep=clock.sleep,
                          start=started.append)
    return scheduler, window


def test_every_arrival_starts_on_time_while_slots_are_free() -> None:
    clock, started = _Clock(), []
    scheduler, window = _scheduler(50, 2, 1000, clock, started)
    scheduler.run(t0=0.0)
    assert started == pytest.approx([k / 50 for k in range(100)])
    assert window.iterations == 100 and window.dropped == 0 and scheduler.done


def test_a_full_generator_queues_then_drops_and_censors_the_lateness() -> None:
    """Nothing ever finishes: 10 start, the rest wait; those older than 1 s are dropped at their lateness."""
    clock, started = _Clock(), []
    scheduler, window = _scheduler(100, 3, 10, clock, started)
    scheduler.run(t0=0.0)
    assert len(started) == 10 and scheduler.in_flight == 10
    assert window.iterations == 10 and window.dropped == 300 - 10
    # each dropped arrival is a latency sample of at least the allowed lateness: the p99 cannot look good
    summary = window.summary(3.0)
    assert summary["dropped_iterations"] == 290 and summary["requests"] == 0
    assert window.hist.get_total_count() == 290
    assert window.hist.get_value_at_percentile(1) >= 1_000_000  # µs


def test_a_freed_slot_takes_the_oldest_waiting_arrival_with_its_lag() -> None:
    clock, started = _Clock(), []
    scheduler, window = _scheduler(10, 1, 1, clock, started)
    clock.now = 0.0
    scheduler.arrive(0.0)
    scheduler.arrive(0.1)
    scheduler.arrive(0.2)
    clock.now = 0.45  # the first iteration ends: the slot passes to the arrival intended at 0.1
    assert scheduler.next_waiting() == 0.1
    assert window.lag is not None and window.lag.get_max_value() == pytest.approx(350_000, rel=0.01)
    clock.now = 1.5  # the arrival of 0.2 waited 1.3 s: dropped, and the slot is free
    assert scheduler.next_waiting() is None
    assert scheduler.in_flight == 0 and window.dropped == 1


def test_the_default_bound_holds_a_one_second_stall() -> None:
    assert default_max_in_flight(100) >= 100 + 1
    assert default_max_in_flight(1000, processes=2) > 500
    assert default_max_in_flight(1) == 100


# -- exact windows ----------------------------------------------------------------------------------


def test_iterations_merge_and_cross_the_wire() -> None:
    a, b = Window(), Window()
    for lag in (1.0, 2.0, 50.0):
        a.started_iteration(lag)
    b.started_iteration(3.0)
    b.dropped_iteration(1200.0)
    a.merge(Window.from_wire(b.to_wire()))
    s = a.summary(1.0)
    assert (s["iterations"], s["dropped_iterations"]) == (4, 1)
    assert s["start_lag_p99_ms"] == pytest.approx(50.0, rel=0.01)
    assert s["max_ms"] == pytest.approx(1200, rel=0.01)  # the censored sample is in the latencies
    merged = merge_summaries([(s, a.encoded_histogram())], 1.0)
    assert merged["iterations"] == 4 and merged["dropped_iterations"] == 1


def test_a_users_window_has_no_open_model_fields() -> None:
    w = Window()
    w.record("GET", "/", 5.0, 200, None)
    assert "iterations" not in w.summary(1.0)


# -- plans, config and the command line ---------------------------------------------------------------


def test_rate_makes_a_constant_open_model_plan(tmp_path: Path) -> None:
    plan = plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=25, duration_s=8)
    assert plan.rate_stages == [RateStage(8, 25, 25)] and plan.duration_s == 8
    assert plan.stages[0].users == 0
    with pytest.raises(UsageError, match="--users"):
        plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=25, users=3)
    with pytest.raises(UsageError, match="--max-in-flight"):
        plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", max_in_flight=3)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "loadkit.yaml"
    path.write_text(body)
    return path


def test_config_rate_stages_ramp_from_the_start_rate(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "profiles:\n  burst:\n    start_rate: 10\n    max_in_flight: 50\n"
                                 "    stages:\n      - {duration: 30s, rate: 100}\n      - {duration: 1m, rate: 100}\n"
                                 "  flat:\n    rate: 40\n    duration: 20s\n"))
    burst, flat = config.profiles["burst"], config.profiles["flat"]
    assert burst.rate_stages == (RateStage(30, 10, 100), RateStage(60, 100, 100)) and burst.max_in_flight == 50
    assert flat.rate_stages == (RateStage(20, 40, 40),)
    info = burst.info()
    assert info.shape == "rate" and info.rate == 100 and len(info.rate_stages) == 2
    plan = plan_run(burst, target="http://127.0.0.1:1", rate=200)
    assert plan.peak_rate == 200 and plan.max_in_flight == 50


@pytest.mark.parametrize(("body", "message"), [
    ("    stages:\n      - {rate: 100}\n", "duration"),
    ("    stages:\n      - {duration: 10s, rate: 100, users: 5}\n", "either users"),
    ("    stages:\n      - {duration: 10s, rate: 10}\n      - {duration: 10s, users: 5}\n", "mix users and rate"),
    ("    rate: 10\n    users: 5\n", "drop users"),
    ("    rate: 0\n", "greater than 0"),
    ("    rate: 1e308\n", "less than or equal to 100000"),
    ("    start_rate: 1e9\n    stages:\n      - {duration: 10s, rate: 100}\n", "less than or equal to 100000"),
    ("    stages:\n      - {duration: 10s, rate: 1e9}\n", "less than or equal to 100000"),
    ("    start_rate: 5\n    users: 5\n", "start_rate"),
])
def test_config_refuses_mixed_or_incomplete_rate_profiles(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(_config(tmp_path, "profiles:\n  bad:\n" + body))
    assert "profiles.bad" in raised.value.message


@pytest.mark.parametrize(("args", "message"), [
    (("--rate", "0"), "not above 0"),
    (("--rate", "-5"), "not above 0"),
    (("--rate", "lots"), "not a number"),
    (("--rate", "nan"), "not a finite number"),
    (("--rate", "inf"), "not a finite number"),
    (("--rate", "1e308"), "more than loadkit schedules in one run (100000"),
    (("--rate", "100001"), "more than loadkit schedules"),
    (("--rate", "10", "--users", "5"), "not both"),
    (("--rate", "10", "--spawn-rate", "5"), "--spawn-rate"),
    (("--max-in-flight", "5",), "--max-in-flight"),
])
def test_bad_rate_input_exits_2_with_the_fix(loadkit_in_process: InProcess, args: tuple[str, ...],
                                               message: str) -> None:
    out = loadkit_in_process("run", "--target", "http://127.0.0.1:9", "--no-history", *args)
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "--rate" in out.stderr or "rate" in out.stderr


def test_chaos_and_game_days_hold_the_peak_rate() -> None:
    from loadkit.chaos.live import CHAOS_MAX_S, hold_plan
    from loadkit.config import Config
    from loadkit.gameday.plan import LoadSpec

    plan = hold_plan(Config(), "steady", "http://127.0.0.1:1", rate=30)
    assert plan.rate_stages == [RateStage(CHAOS_MAX_S, 30, 30)] and plan.stages[0].users == 0
    assert not hold_plan(Config(), "steady", "http://127.0.0.1:1", users=3).open_model
    assert LoadSpec(profile="steady", rate=30).rate == 30


def test_a_scheduler_that_falls_behind_drops_what_it_reaches_too_late() -> None:
    """The clock jumps 3 s (a CPU-starved generator): the arrivals of those seconds are not started late
    and counted as on time, they are dropped at their lateness."""
    clock, started = _Clock(), []
    scheduler, window = _scheduler(10, 5, 1000, clock, started)
    real_sleep = clock.sleep

    def stalled_sleep(seconds: float) -> None:
        real_sleep(seconds + (3.0 if 1.0 <= clock.now < 1.1 else 0.0))

    scheduler.sleep = stalled_sleep
    scheduler.run(t0=0.0)
    assert window.dropped == 20 and window.iterations == 30  # arrivals of 1.1 s..3.0 s were > 1 s late
    assert window.lag is not None and window.lag.get_max_value() <= 1_001_000


def test_loadkit_profiles_lists_rate_profiles(loadkit_in_process: InProcess) -> None:
    Path("loadkit.yaml").write_text("profiles:\n  burst:\n    start_rate: 10\n    stages:\n"
                                    "      - {duration: 30s, rate: 100}\n      - {duration: 1m, rate: 100}\n")
    out = loadkit_in_process("profiles")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("burst"))
    assert "rate" in row and "100/s" in row and "1m30s" in row
    assert "20 users" in next(line for line in out.stdout.splitlines() if line.startswith("steady"))


def test_a_continuous_webhook_run_holds_the_last_rate() -> None:
    from loadkit.webhook.hooks import _until

    plan = plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=20, duration_s=30)
    held = _until(plan, 600)
    assert held.rate_stages == [RateStage(30, 20, 20), RateStage(570, 20, 20)] and held.duration_s == 600


# -- censored latencies: drops, cut-offs and lost arrivals never hide a breach ------------------------


def _latency_check(name: str, max_ms: float, window: Window) -> Check:
    from loadkit.scoring import evaluate, observations_from_stats

    stats = Stats.model_validate(window.summary(5.0))
    threshold = Threshold(name=name, thresholdRange=ThresholdRange(max=max_ms))
    return evaluate([threshold], observations_from_stats(stats), 1).checks[0]


def _health(window: Window, unaccounted: int = 0) -> GeneratorHealth:
    return GeneratorHealth(dropped_iterations=window.dropped, cut_off_iterations=window.cut_off,
                           unaccounted_iterations=unaccounted)


def test_drops_recorded_at_the_lateness_cannot_pass_a_threshold_above_it() -> None:
    """A target stalled for 10 s: 190 of 250 arrivals dropped at ~1 s lateness, 10 cut off at 6 s. The
    recorded p95 (~1 s) is a lower bound: a 2 s threshold must not pass on it."""
    w = Window()
    for _ in range(50):
        w.record("GET", "/", 5.0, 200, None)
    for _ in range(190):
        w.dropped_iteration(1001.0)
    for _ in range(10):
        w.cut_off_iteration(6000.0)
    check = _latency_check("latency-p95", 2000, w)
    assert check.passed and check.observed is not None and check.observed < 1100  # what evaluate alone says
    [restated] = censored_latency_checks([check], _health(w), w.encoded_histogram())
    assert not restated.passed and "lower bound" in restated.reason and "2000 ms" in restated.reason


def test_a_few_censored_samples_below_the_tail_keep_an_honest_pass() -> None:
    w = Window()
    for _ in range(10_000):
        w.record("GET", "/", 5.0, 200, None)
    w.dropped_iteration(1001.0)
    w.cut_off_iteration(1500.0)
    check = _latency_check("request-duration", 500, w)
    assert censored_latency_checks([check], _health(w), w.encoded_histogram()) == [check]
    assert latency_upper_bound_ms(w.encoded_histogram(), 99.0, 2, 0) == pytest.approx(5.0, rel=0.01)
    # ...but a max-latency check cannot pass with any sample unknown
    assert not censored_latency_checks([_latency_check("latency-max", 2000, w)], _health(w),
                                       w.encoded_histogram())[0].passed


def test_arrivals_that_never_ran_count_as_unknown_latencies() -> None:
    """A lost process: 461 of 1000 arrivals neither started nor dropped. Its share could have been slow."""
    w = Window()
    for _ in range(539):
        w.record("GET", "/", 5.0, 200, None)
    check = _latency_check("request-duration", 500, w)
    assert not censored_latency_checks([check], _health(w, unaccounted=461), w.encoded_histogram())[0].passed
    # 3 of 10 000 short: the processes' clocks, milliseconds apart at the stop; not a lost process
    few = GeneratorHealth(scheduled_iterations=10_000, unaccounted_iterations=3)
    maximum = _latency_check("latency-max", 2000, w)
    assert censored_latency_checks([maximum], few, w.encoded_histogram()) == [maximum]
    health = _schedule_kept(GeneratorHealth(), Stats(iterations=539, duration_s=20.0), constant_rate(50, 20))
    assert health.unaccounted_iterations == 461 and health.saturated and "neither started nor dropped" in health.reason


def test_stopping_a_scheduler_that_fell_behind_drops_every_arrival_already_due() -> None:
    """started + dropped = the arrivals due by the stop, even those the loop never reached."""
    clock, started = _Clock(), []
    scheduler, window = _scheduler(100, 10, 1000, clock, started)

    def stuck(seconds: float) -> None:  # the loop's sleep at 2 s never returns before the stop
        clock.now += seconds
        if clock.now >= 2.0:
            clock.now = 4.995
            scheduler.stop()

    scheduler.sleep = stuck
    scheduler.run(t0=0.0)
    assert window.iterations + window.dropped == 500  # arrivals at 0.00 .. 4.99 s
    assert window.dropped == 300 and window.hist.get_max_value() >= 2_980_000


def test_every_way_in_bounds_the_rate() -> None:
    """--rate is bounded in the CLI and the config; the plan (webhook, chaos control), the game day's load
    and a profile's rescaled stages are too, so no caller overflows the in-flight default or runs 1e9/s."""
    from pydantic import ValidationError

    from loadkit.chaos.live import hold_plan
    from loadkit.config import Config
    from loadkit.gameday.plan import LoadSpec

    with pytest.raises(UsageError, match="at most 100000"):
        plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=1e308)
    with pytest.raises(UsageError, match="at most 100000"):
        hold_plan(Config(), "steady", "http://127.0.0.1:1", rate=1e9)
    with pytest.raises(ValidationError, match="less than or equal to 100000"):
        LoadSpec(profile="steady", rate=1e9)
    assert rate_problems(constant_rate(200_000, 1)) == [
        "the rate peaks at 200000 iterations/s, more than loadkit schedules in one run (100000/s, all its processes "
        "together)"]
    assert plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=MAX_RATE).peak_rate == MAX_RATE


def _snapshots(users: list[int], cpu: float, cumulative: Stats) -> list[Snapshot]:
    return [Snapshot(elapsed_s=float(t), users=u, rate=50.0, cpu_pct=cpu, lag_ms=1.0, window=Stats(),
                     cumulative=cumulative if t == len(users) - 1 else Stats()) for t, u in enumerate(users)]


def test_drops_with_the_cap_full_and_the_cpu_idle_blame_the_target_not_the_generator() -> None:
    """A target stalled for 5 s at 50/s: 101 in flight (the cap), 51 of 1000 dropped, CPU 7 %. The fix is a
    higher --max-in-flight, not --processes; a CPU-bound generator with the same drops is saturated."""
    total = Stats(iterations=949, dropped_iterations=51, duration_s=20.0, start_lag_p99_ms=900.0)
    stalled = assess_generator(_snapshots([0, 3, 101, 101, 2], 7.0, total), 1, constant_rate(50, 20), 101)
    assert stalled.in_flight_cap_reached and not stalled.saturated
    assert "the in-flight cap was reached while the target was slow" in stalled.reason
    busy = assess_generator(_snapshots([0, 3, 40, 40, 2], 97.0, total), 1, constant_rate(50, 20), 101)
    assert busy.saturated and not busy.in_flight_cap_reached and "dropped" in busy.reason


def test_a_run_of_drops_alone_says_its_latencies_are_lower_bounds() -> None:
    from datetime import UTC, datetime

    from loadkit.analysis import build_result
    from loadkit.load.runner import LoadOutcome

    w = Window()
    for _ in range(95):
        w.dropped_iteration(1001.0)
    total = Stats.model_validate(w.summary(5.0))
    plan = plan_run(BUILTIN_PROFILES["steady"], target="http://127.0.0.1:1", rate=20, duration_s=5)
    now = datetime.now(UTC)
    outcome = LoadOutcome(started_at=now, ended_at=now, snapshots=_snapshots([0, 5, 5], 3.0, total), final=total,
                          endpoints=[], errors=[], histogram=w.encoded_histogram(), interrupted=False, notes=[],
                          log_path=None)
    result = build_result(plan, outcome, [], 1)
    assert any(m.startswith("no request was answered: the latency figures are only the lower bounds of 95")
               for m in result.warnings), result.warnings
