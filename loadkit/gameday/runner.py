"""`loadkit gameday run`: one process, one baseline load, the plan's scenarios in order.

Order: validate the plan and every scenario's experiment (allow-list, guards, Prometheus queries)
before anything runs; start the baseline load and let it settle; start the stop-condition
monitor; run each scenario as one `chaos run` under that load (`run_chaos(session=...)`); a
failed scenario does not stop the game day. A stop condition halts at once: the current scenario
is rolled back (the chaos run's own early-stop path), the rest are skipped, the game day is
`halted`. A signal (SIGTERM, SIGINT ...) does the same and the game day is `interrupted`; one that
lands between scenarios, or while the next is prepared, reaches that run through the `HaltSwitch`
before it injects anything. Then the load stops and the whole is scored (`loadkit.scoring`
resilience score), published (printed, written, stored), and only then notified (bounded; a signal
abandons the notifications, never the result).
"""

from __future__ import annotations

import difflib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from loadkit.analysis import timeline_point
from loadkit.chaos import live
from loadkit.chaos.driver import ChaosOptions, prepare, run_chaos
from loadkit.chaos.live import LoadSession
from loadkit.chaos.signals import USER_SIGNALS, HaltSwitch
from loadkit.config import Config, load_config
from loadkit.errors import ConfigError, LoadkitError, UsageError
from loadkit.gameday.judge import gameday_verdict, judge, not_run
from loadkit.gameday.models import GameDayResult, GameDayVerdict, ScenarioResult, ScenarioStatus
from loadkit.gameday.notify import Event, Notifier, Start
from loadkit.gameday.plan import Plan, Role, ScenarioSpec, load_plan, promql_problem
from loadkit.gameday.stops import PrometheusRefused, PrometheusUnreadable, StopMonitor, query
from loadkit.models.results import TimelinePoint
from loadkit.scoring import Scored, category_scores, resilience_score


@dataclass(frozen=True)
class GameDayOptions:
    plan_path: Path
    target: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    config_path: Path | None = None
    prometheus_url: str | None = None


@dataclass
class Checked:
    """A plan that passed every check, and what the run needs from it."""

    plan: Plan
    config: Config
    target: str
    prometheus_url: str | None
    notes: list[str] = field(default_factory=list)


def check_plan(options: GameDayOptions, *, need_target: bool = True) -> Checked:
    """Everything refusable is refused here (ConfigError / SafetyError, exit 2), before any load."""
    plan = load_plan(options.plan_path)
    config = load_config(options.config_path)
    target = options.target or plan.spec.target.url or ""
    if not target and need_target:
        raise UsageError("no target to load", hint="set target.url in the plan, or pass --target URL")
    prometheus = options.prometheus_url or config.prometheus.url
    notes = _check_queries(plan, prometheus)
    for i, scenario in enumerate(plan.spec.scenarios):
        try:
            prepared = prepare(scenario_options(plan, scenario, options, target))
        except LoadkitError as exc:
            raise type(exc)(f"{plan.path}: scenarios.{i} ({scenario.name}): {exc.message}", hint=exc.hint) from None
        notes += [f"{scenario.name}: {note}" for note in prepared.notes]
    _check_variables(plan, options)
    return Checked(plan, config, target, prometheus, notes)


def _check_variables(plan: Plan, options: GameDayOptions) -> None:
    """A variable no experiment declares would be dropped: a typo that silently runs the default.
    Plan-wide ones (and --var) must be declared by some scenario's experiment, a scenario's own by
    its experiment (`chaos run --var` only notes it: there the command line is the whole input)."""
    spec = plan.spec
    declared = {s.name: _declared(plan.experiment(s)) for s in spec.scenarios}
    everywhere = set().union(*declared.values()) | {"canary", "namespace"}
    for where, names in (("variables", spec.variables), ("--var", options.variables)):
        for name in names:
            if name not in everywhere:
                raise ConfigError(f"{plan.path}: {where}.{name}: no scenario's experiment declares {name!r}"
                                  f"{_maybe(name, everywhere)}",
                                  hint="plan-wide variables go to the experiments whose configuration declares them")
    for i, scenario in enumerate(spec.scenarios):
        for name in scenario.variables:
            if name not in declared[scenario.name]:
                raise ConfigError(f"{plan.path}: scenarios.{i}.variables.{name}: {plan.experiment(scenario)} does not "
                                  f"declare {name!r}{_maybe(name, declared[scenario.name])}",
                                  hint="a scenario's variables must be keys of its experiment's configuration")


def _maybe(name: str, valid: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (declared: {', '.join(sorted(valid)) or 'none'})"


def _check_queries(plan: Plan, default_url: str | None) -> list[str]:
    """Each stop condition's query, by Prometheus itself when it answers (it parses PromQL)."""
    notes = []
    for i, stop in enumerate(plan.spec.stop_conditions.prometheus):
        url = stop.url or default_url
        where = f"{plan.path}: stop_conditions.prometheus.{i}.query"
        try:
            query(url or "", stop.query)
        except PrometheusRefused as exc:
            raise ConfigError(f"{where}: Prometheus refused {stop.query!r}: {exc}",
                              hint="fix the PromQL (try it in Prometheus' UI)") from None
        except PrometheusUnreadable as exc:
            if promql_problem(stop.query) is None:
                notes.append(f"stop condition {stop.query!r} checked for syntax only (Prometheus: {exc})")
    return notes


def scenario_options(plan: Plan, scenario: ScenarioSpec, options: GameDayOptions, target: str) -> ChaosOptions:
    path = plan.experiment(scenario)
    declared = _declared(path)
    spec = plan.spec
    named = {"canary": spec.target.canary, "namespace": spec.target.namespace}
    shared = {**{k: v for k, v in named.items() if v is not None}, **spec.variables, **options.variables}
    variables = {**{k: v for k, v in shared.items() if k in declared}, **scenario.variables}
    return ChaosOptions(experiment_path=path, target=target, profile=spec.load.profile, users=spec.load.users,
                        rate=spec.load.rate, variables=variables, dry_run=options.dry_run,
                        allow_primary=spec.target.role is Role.PRIMARY and spec.target.allow_primary,
                        allow_namespaces=(f"^{spec.target.namespace}$",) if spec.target.namespace else (),
                        cooldown_s=scenario.cooldown, recovery_window_s=scenario.recovery_window,
                        impact_window_s=scenario.impact_window)


def _declared(path: Path) -> set[str]:
    """The configuration keys an experiment declares (plan-wide variables go only to those)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, yaml.YAMLError):
        return set()  # prepare() says what is wrong with the file
    configuration = data.get("configuration") if isinstance(data, dict) else None
    return set(configuration) if isinstance(configuration, dict) else set()


class _Signals:
    """Outside a chaos run (which has its own policy): a signal is recorded, passed to the HaltSwitch
    (the next run then injects nothing), and ends a wait at once."""

    def __init__(self, halt: HaltSwitch) -> None:
        self.received: list[str] = []
        self.waiting = False
        self._halt = halt
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        for sig in USER_SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        self._halt.interrupt(name)
        if self.waiting:
            raise KeyboardInterrupt


@dataclass
class _Day:
    checked: Checked
    options: GameDayOptions
    notifier: Notifier
    say: Callable[[str], None]
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: list[ScenarioResult] = field(default_factory=list)
    current: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    notifying: bool = True  # False once a signal abandoned a notification: the rest are not sent


def run_gameday(checked: Checked, options: GameDayOptions, notifier: Notifier, say: Callable[[str], None],
                publish: Callable[[GameDayResult], None] = lambda _result: None) -> GameDayResult:
    """The game day, judged. Once judged, `publish` (print, write, store) runs whatever signal
    arrives; only then the notifications (halted, finished), each bounded, a signal abandoning them.
    The load is stopped (and the rollbacks done) before the "halted" notification."""
    day = _Day(checked, options, notifier, say, warnings=list(checked.notes))
    spec, config = checked.plan.spec, checked.config
    session = LoadSession(live.hold_plan(config, spec.load.profile, checked.target, spec.load.users,
                                         spec.load.rate),
                          config.thresholds, config.min_samples)
    halt = HaltSwitch()
    signals = _Signals(halt)
    monitor = StopMonitor(spec.stop_conditions, session, halt, started=time.time(),
                          prometheus_url=checked.prometheus_url, scenario=lambda: day.current)
    signals.install()
    try:
        _notify(day, signals, lambda: notifier.started(Start(spec.name, checked.target,
                                                             tuple(s.name for s in spec.scenarios),
                                                             day.started.isoformat())))
        try:
            if not signals.received and _start_load(day, session, signals):  # a signal first: nothing starts
                monitor.start()
                _scenarios(day, session, halt, signals)
        finally:
            monitor.stop()
            if session.started_at:  # else its thread never started (a signal first, a failed pre-flight)
                session.stop()
        result = _result(day, session, halt, signals, monitor)
        publish(result)
        if result.verdict is GameDayVerdict.HALTED:
            _notify(day, signals, lambda: notifier.send(Event.HALTED, result))
        _notify(day, signals, lambda: notifier.send(Event.FINISHED, result))
    finally:
        signals.restore()
    return result


def _notify(day: _Day, signals: _Signals, send: Callable[[], None]) -> None:
    """Best-effort: each notification is bounded (Notifier.deadline_s); a signal abandons it and the rest."""
    if not day.notifying:
        return
    signals.waiting = True
    try:
        send()
    except KeyboardInterrupt:
        day.notifying = False
        day.say("loadkit gameday: signal received: notifications abandoned (the result is kept)")
    finally:
        signals.waiting = False


def _start_load(day: _Day, session: LoadSession, signals: _Signals) -> bool:
    day.say(f"loadkit gameday: baseline load {session.plan.profile} -> {session.plan.target}")
    signals.waiting = True
    try:
        session.start()
        return True
    except KeyboardInterrupt:
        return False
    except LoadkitError as exc:
        day.error = f"the baseline load did not start: {exc.message.splitlines()[0]}"
        return False
    finally:
        signals.waiting = False


def _scenarios(day: _Day, session: LoadSession, halt: HaltSwitch, signals: _Signals) -> None:
    plan = day.checked.plan
    for index, scenario in enumerate(plan.spec.scenarios):
        if halt.reason or signals.received or halt.signals or day.error:
            return
        if not session.running:
            day.error = f"the baseline load stopped before {scenario.name}: {session.error or 'Locust exited'}"
            return
        day.current = scenario.name
        day.say(f"loadkit gameday: scenario {index + 1}/{len(plan.spec.scenarios)} {scenario.name} "
                f"({scenario.category.value}, expect {scenario.expect.value}, weight {scenario.weight})")
        started = datetime.now(UTC)
        options = scenario_options(plan, scenario, day.options, day.checked.target)
        try:
            chaos = run_chaos(options, day.checked.config, session=session, halt=halt)
        except LoadkitError as exc:
            day.results.append(not_run(scenario, str(options.experiment_path), ScenarioStatus.ERROR,
                                       exc.message.splitlines()[0], started))
            continue
        except KeyboardInterrupt:  # a signal as the run installed its handlers, before its experiment began
            day.results.append(not_run(scenario, str(options.experiment_path), ScenarioStatus.INTERRUPTED,
                                       "interrupted before the experiment began: nothing injected", started))
            return
        finally:
            day.current = None
        day.results.append(judge(scenario, chaos, halted=halt.reason))
        day.say(f"loadkit gameday: {scenario.name}: {day.results[-1].status.value} "
                f"(score {day.results[-1].score:g})")


def _result(day: _Day, session: LoadSession, halt: HaltSwitch, signals: _Signals,
            monitor: StopMonitor) -> GameDayResult:
    spec = day.checked.plan.spec
    done = {r.name: r for r in day.results}
    received = [*halt.signals, *signals.received]
    interrupted = bool(received) or any(r.status is ScenarioStatus.INTERRUPTED for r in day.results)
    skipped = _skipped_because(halt.reason, interrupted, day.error)
    scenarios = [done.get(s.name) or not_run(s, str(day.checked.plan.experiment(s)), ScenarioStatus.SKIPPED,
                                             skipped, None) for s in spec.scenarios]
    scored = [Scored(s.score, s.weight, s.category.value) for s in scenarios]
    verdict, reason = gameday_verdict(scenarios, halted=halt.reason, interrupted=interrupted, error=day.error,
                                      dry_run=day.options.dry_run)
    if verdict is GameDayVerdict.INTERRUPTED and received:
        reason = f"{', '.join(dict.fromkeys(received))} received: {reason}"
    warnings = [*day.warnings, *([f"the load: {session.error}"] if session.error else [])]
    return GameDayResult(plan=spec.name, plan_path=str(day.checked.plan.path), verdict=verdict,
                         score=0.0 if day.options.dry_run else resilience_score(scored),
                         categories={} if day.options.dry_run else category_scores(scored), reason=reason,
                         target=day.checked.target, profile=spec.load.profile, dry_run=day.options.dry_run,
                         started_at=day.started, ended_at=datetime.now(UTC), scenarios=scenarios,
                         stops=list(monitor.firings), load_stops=list(spec.stop_conditions.load),
                         timeline=_timeline(day, session), warnings=warnings)


def _timeline(day: _Day, session: LoadSession) -> list[TimelinePoint]:
    """The load of the whole game day, baseline included, on the game day's clock."""
    origin = day.started.timestamp()
    return [timeline_point(w.snapshot, t=round(w.at - origin, 3)) for w in session.windows()]


def _skipped_because(halted: str | None, interrupted: bool, error: str | None) -> str:
    if interrupted:
        return "skipped: the game day was interrupted first"
    if halted:
        return "skipped: the game day was halted first"
    return f"skipped: {error}" if error else "skipped"
