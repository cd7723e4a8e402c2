"""`loadkit chaos run`: a Chaos Toolkit experiment under real load, always rolled back, scored.

Order: check the experiment's shape, validate it and check it against the allow-list (`scan`),
statically and against the live systems (a dry run too), naming any fault another run left
(nothing runs if they refuse); start the load and let it settle; run the experiment with Chaos
Toolkit up to its rollbacks (rollback strategy `always`), every activity through loadkit's gate
(`gate`), which records when a fault was seen in place; run any rollback Chaos Toolkit could not;
remove whatever fault this run created that is still in place and see killed pods back (`sweep`);
keep the load for a cool-down to see the recovery; only then take the steady state "after" (never
while the fault is on); sweep again; stop the load; score.

Signals and early stops: `signals`. chaoslib must run in the main thread; Locust runs in its own
process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from chaoslib import merge_vars
from chaoslib.activity import execute_activity
from chaoslib.caching import cache_activities, clear_cache
from chaoslib.configuration import load_configuration
from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.hypothesis import run_steady_state_hypothesis
from chaoslib.loader import load_experiment
from chaoslib.run import EventHandlerRegistry, RunEventHandler
from chaoslib.secret import load_secrets
from chaoslib.types import Dry, Strategy

from loadkit.analysis import ServerSide, client_compares, gather, require
from loadkit.chaos import guards as guard
from loadkit.chaos import live
from loadkit.chaos.gate import Gate, Phase
from loadkit.chaos.guards import GUARD_KEYS, Guards
from loadkit.chaos.live import LoadSession
from loadkit.chaos.models import ChaosResult
from loadkit.chaos.preflight import check_before_run
from loadkit.chaos.result import SETTLE_S, ChaosInputs, Timeline, build_chaos_result
from loadkit.chaos.scan import modules, scan
from loadkit.chaos.shape import check_shape
from loadkit.chaos.signals import HaltSwitch, InterruptiblePauses, RunControl, Supervisor
from loadkit.chaos.sweep import Swept, still_in_place, sweep
from loadkit.config import Config
from loadkit.errors import ConfigError, SafetyError, UsageError
from loadkit.load.runner import LoadPlan
from loadkit.models.specs import Threshold
from loadkit.prometheus import Workload

SANDBOX_MODULE = "loadkit.chaos.sandbox"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChaosOptions:
    experiment_path: Path
    target: str | None = None
    profile: str = "steady"
    users: int | None = None
    rate: float | None = None  # open model: iterations per second instead of users
    variables: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    allow_primary: bool = False
    allow_namespaces: tuple[str, ...] = ()
    max_kill_share: float | None = None
    max_fault_s: float | None = None
    allow_unguarded: bool = False
    journal_path: Path | None = None
    cooldown_s: float = 10.0
    recovery_window_s: float = 5.0
    impact_window_s: float = 5.0
    server: ServerSide = field(default_factory=ServerSide)  # Prometheus checks; read over the fault window


@dataclass
class Prepared:
    experiment: dict[str, Any]
    configuration: dict[str, Any]
    experiment_vars: tuple[dict[str, Any], dict[str, Any]]
    guards: Guards
    notes: list[str] = field(default_factory=list)
    unguarded: list[str] = field(default_factory=list)  # what --allow-unguarded let through


def prepare(options: ChaosOptions) -> Prepared:
    """Load, validate and guard-scan an experiment; raises ConfigError or SafetyError (exit 2)."""
    _chaoslib_logging()
    path = str(options.experiment_path)
    if not options.experiment_path.is_file():
        raise ConfigError(f"experiment {path} not found", hint="give the path to a Chaos Toolkit JSON/YAML file")
    try:
        loaded = load_experiment(path)
    except (ChaosException, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: cannot load the experiment: {exc}") from None
    try:
        check_shape(loaded)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None
    experiment = dict(loaded)
    declared = dict(experiment.get("configuration") or {})
    variables, notes = _typed_vars(options.variables, declared)
    config_vars, secret_vars = merge_vars(variables, None)
    guards = _guards(options)
    configuration = _configuration(path, declared, config_vars)
    found = scan(experiment, configuration, guards, variables)  # before chaoslib imports anything it names
    _refuse(path, found.problems)
    try:
        ensure_experiment_is_valid(experiment)
    except (ChaosException, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path}: invalid experiment: {exc}", hint="check it with: chaos validate " + path) from None
    return Prepared(experiment, configuration, (config_vars, secret_vars), guards, notes, found.unguarded)


def _configuration(path: str, declared: Mapping[str, Any], config_vars: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration as chaoslib loads it, minus dynamic entries (never run here)."""
    static = {k: v for k, v in declared.items() if not (isinstance(v, Mapping) and v.get("type") == "probe")}
    for key, value in static.items():
        if isinstance(value, Mapping) and value.get("type") == "env" and not isinstance(value.get("key"), str):
            raise ConfigError(f"{path}: configuration {key}: an env entry needs key: NAME_OF_THE_VARIABLE")
    # chaoslib pops the keys it uses from the vars it is given: hand it a copy, keep ours for the run.
    try:
        return dict(load_configuration(static, dict(config_vars)))
    except (ChaosException, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid configuration: {exc}") from None


def _refuse(path: str, problems: list[str]) -> None:
    if problems:
        raise SafetyError(f"{path}: refused before anything ran:\n  - " + "\n  - ".join(problems))


def run_chaos(options: ChaosOptions, config: Config, *, session: LoadSession | None = None,
              halt: HaltSwitch | None = None) -> ChaosResult:
    """One experiment under load. `session`: a load that already runs and outlives this run (a game
    day's baseline): it is neither started nor stopped here, and only its windows from this run's
    start are scored. `halt`: lets another thread stop this run at once (rollbacks still play)."""
    prepared = prepare(options)
    guard.set_active(prepared.guards)
    try:
        return _run_guarded(options, config, prepared, session, halt)
    finally:
        guard.set_active(None)


def _run_guarded(options: ChaosOptions, config: Config, prepared: Prepared, shared: LoadSession | None,
                 halt: HaltSwitch | None) -> ChaosResult:
    experiment, configuration = prepared.experiment, prepared.configuration
    if prepared.unguarded:
        _warn_unguarded(prepared.unguarded)
        prepared.notes += [f"UNGUARDED (--allow-unguarded): {item}" for item in prepared.unguarded]
    problems, notes = check_before_run(experiment, configuration, prepared.guards, dry=options.dry_run)
    _refuse(str(options.experiment_path), problems)
    prepared.notes += notes
    if options.dry_run:
        experiment["dry"] = Dry.ACTIONS
    server = _server_side(options.server, configuration)
    _check_server_side([*config.thresholds, *config.chaos_thresholds], server)
    session = shared or LoadSession(_plan(options, config, configuration), config.thresholds, config.min_samples)
    timeline = Timeline(notes=list(prepared.notes))
    gate = Gate(prepared.guards, dry=options.dry_run, on_injected=timeline.injected, on_attempt=timeline.attempted)
    control = RunControl(on_phase=lambda phase: setattr(gate, "phase", phase))
    control.install()
    try:
        journal, swept = _experiment(options, prepared, _Load(session, owned=shared is None), timeline, gate, control,
                                     halt)
        if control.received:
            journal = {**journal, "status": "interrupted"}
            timeline.notes.append(f"{', '.join(control.received)} received: stopped after the rollbacks and "
                                  "clean-up")
        timeline.stopped_by = control.stop_reason
        journal_error = _write_journal(options.journal_path, journal)
        external, notes = gather([*config.thresholds, *config.chaos_thresholds], server,
                                 start=_dt(timeline.fault_start or timeline.load_start),
                                 end=_dt(timeline.fault_end or timeline.load_end), wait=not control.stopping)
        timeline.notes.extend(notes)
        return build_chaos_result(ChaosInputs(
            experiment=experiment, journal=journal, timeline=timeline,
            windows=session.windows(since=None if shared is None else timeline.load_start),
            load_thresholds=config.thresholds, chaos_thresholds=config.chaos_thresholds,
            min_samples=config.min_samples, target=session.plan.target, profile=session.plan.profile,
            path=str(options.experiment_path), dry_run=options.dry_run, leftovers=swept.removed,
            leftovers_failed=swept.failed,
            journal_path=str(options.journal_path) if options.journal_path else None,
            recovery_window_s=options.recovery_window_s, impact_window_s=options.impact_window_s,
            external=external, unguarded=prepared.unguarded, measuring=_measuring(experiment),
            journal_error=journal_error, load_error=session.error,
        ))
    finally:
        if halt is not None:
            halt.detach()
        control.restore()


@dataclass(frozen=True)
class _Load:
    """The run's load, and whether this run starts and stops it (or a game day owns it)."""

    session: LoadSession
    owned: bool


def _experiment(options: ChaosOptions, prepared: Prepared, load: _Load, timeline: Timeline, gate: Gate,
                control: RunControl, halt: HaltSwitch | None) -> tuple[dict[str, Any], Swept]:
    """The load, the experiment and everything that must follow it, whatever happens."""
    session = load.session
    recorder = _Recorder(timeline, control)
    supervisor = Supervisor(control, lambda: timeline.first_attempt, lambda: session.running,
                            prepared.guards.max_fault_s, expiry=lambda: min(prepared.guards.expiries, default=None))
    journal: dict[str, Any] = {"status": "interrupted", "deviated": False}
    swept = Swept()
    live.set_current(session)
    pauses = InterruptiblePauses(control)
    try:
        with gate.installed():
            try:
                timeline.load_start = time.time()
                if halt is not None:
                    halt.attach(control)  # a halt already decided stops the run here
                if load.owned:
                    session.start()
                supervisor.start()
                journal = _run(prepared.experiment, prepared, recorder)
            except KeyboardInterrupt:
                journal = {**(recorder.journal or journal), "status": "interrupted"}
            finally:
                swept = _clean_up(prepared, journal, timeline, control)
                if not control.stopping:
                    _cool_down(session, max(options.cooldown_s, options.recovery_window_s + SETTLE_S + 1.0), control)
                if not control.stopping:
                    _steady_state_after(prepared, journal, timeline, control)
                _sweep_again(prepared, timeline, control, swept)
                supervisor.stop()
                control.enter(Phase.REPORT)
                if load.owned:
                    session.stop()
                timeline.load_end = time.time()
    finally:
        live.set_current(None)
        pauses.restore()
    return journal, swept


def _measuring(experiment: Mapping[str, Any]) -> frozenset[str]:
    """Names of the hypothesis' probes whose failure means "could not measure" (loadkit's load
    probes, Prometheus queries), not "not met"."""
    from loadkit.chaos.allowlist import entry_of
    from loadkit.chaos.scan import activity_cache

    cache = activity_cache(experiment)
    names = set()
    for probe in (experiment.get("steady-state-hypothesis") or {}).get("probes") or []:
        target = cache.get(str(probe.get("ref"))) if probe.get("ref") else probe
        _name, entry = entry_of(target or {})
        if entry is not None and entry.measures and target is not None:
            names.add(str(target.get("name")))
    return frozenset(names)


def _server_side(server: ServerSide, configuration: Mapping[str, Any]) -> ServerSide:
    """The experiment's `canary` and `namespace` configuration name the workload when no option did."""
    canary, namespace = configuration.get("canary"), configuration.get("namespace")
    if server.workload is None and isinstance(canary, str) and isinstance(namespace, str):
        return dataclasses.replace(server, workload=Workload(namespace, canary))
    return server


def _check_server_side(thresholds: list[Threshold], server: ServerSide) -> None:
    """Before any load: Prometheus checks can run; comparisons read Prometheus (one load only here)."""
    for t in client_compares(thresholds):
        raise ConfigError(f"check {t.name!r} compares loadkit's own traffic with a baseline, which chaos runs do "
                          "not send", hint="use compare: {source: prometheus} to compare the canary with the primary "
                                           "over the fault window")
    require(thresholds, server)


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts or time.time(), UTC)


def _run(experiment: dict[str, Any], prepared: Prepared, recorder: _Recorder) -> dict[str, Any]:
    """Chaos Toolkit up to its rollbacks: the hypothesis before the method only. The hypothesis
    "after" would run while the fault is still on (before the rollbacks); loadkit takes it itself
    once the fault is gone and the load has cooled down (`_steady_state_after`)."""
    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    return dict(run_experiment(experiment, settings=settings, strategy=Strategy.BEFORE_METHOD,
                               experiment_vars=prepared.experiment_vars,  # a tuple, whatever its annotation says
                               event_handlers=[recorder]))


@contextmanager
def _activity_cache(experiment: Mapping[str, Any]) -> Iterator[None]:
    """chaoslib's `ref:` lookup table, as run_experiment builds it (and clears it when it returns)."""
    cache_activities(experiment)
    try:
        yield
    finally:
        clear_cache()


def _secrets(prepared: Prepared, configuration: dict[str, Any]) -> Any:
    return load_secrets(prepared.experiment.get("secrets") or {}, configuration, dict(prepared.experiment_vars[1]))


def _steady_state_after(prepared: Prepared, journal: dict[str, Any], timeline: Timeline,
                        control: RunControl) -> None:
    """The hypothesis again, after the rollbacks and the cool-down, while the load still runs; a
    signal ends it at once (the fault is gone: it only measures)."""
    experiment = prepared.experiment
    before = (journal.get("steady_states") or {}).get("before") or {}
    if not experiment.get("steady-state-hypothesis") or not before.get("steady_state_met") \
            or journal.get("status") != "completed":
        return  # no hypothesis, the gate was not met (nothing was injected), or the run did not finish
    control.enter(Phase.AFTER)
    configuration = dict(prepared.configuration)
    try:
        with _activity_cache(experiment):
            state = run_steady_state_hypothesis(experiment, configuration, _secrets(prepared, configuration),
                                                dry=experiment.get("dry"), event_registry=EventHandlerRegistry())
    except KeyboardInterrupt:
        timeline.notes.append("the steady state after was not measured: interrupted")
        return
    except Exception as exc:  # a probe that raises is a failed hypothesis, as in Chaos Toolkit
        state = {"steady_state_met": False, "probes": [], "error": str(exc)}
    finally:
        control.enter(Phase.CLEANUP)
    journal.setdefault("steady_states", {})["after"] = state
    timeline.steady_after_at = time.time()
    if state is not None and not state.get("steady_state_met"):
        journal["deviated"] = True


def _clean_up(prepared: Prepared, journal: dict[str, Any], timeline: Timeline, control: RunControl) -> Swept:
    """Rollbacks chaoslib could not run, then this run's own faults that are still there."""
    _finish_rollbacks(prepared, journal, timeline, control)
    control.enter(Phase.CLEANUP)
    signals_before = len(control.received)
    swept = sweep(prepared.guards, interrupted=lambda: len(control.received) > signals_before)
    timeline.notes += swept.notes
    if swept.at is not None:
        timeline.leftovers_removed_at = swept.at
    if SANDBOX_MODULE in modules(prepared.experiment) or prepared.unguarded:
        timeline.notes += still_in_place(prepared.configuration)
    return swept


def _sweep_again(prepared: Prepared, timeline: Timeline, control: RunControl, swept: Swept) -> None:
    """The last word: nothing this run made survives it, whatever ran after the first sweep."""
    control.enter(Phase.CLEANUP)
    again = sweep(prepared.guards, interrupted=lambda: True, restore_wait_s=0.0)
    swept.removed += again.removed
    swept.failed += [f for f in again.failed if f not in swept.failed]
    if again.removed:
        timeline.notes.append(f"removed after the steady state after: {', '.join(again.removed)}")


def _finish_rollbacks(prepared: Prepared, journal: dict[str, Any], timeline: Timeline, control: RunControl) -> None:
    """Rollbacks always run: play the ones a signal kept chaoslib from playing (refs resolved as
    chaoslib does). The third signal abandons the one that hangs and every one after it."""
    experiment = prepared.experiment
    planned = list(experiment.get("rollbacks") or [])
    done = journal.setdefault("rollbacks", [])
    if len(done) >= len(planned) or not journal.get("run"):
        return  # all played, or the method never started (nothing to roll back)
    missing = planned[len(done):]
    if control.abandoned:
        timeline.notes.append(f"the rollbacks were abandoned: loadkit did not play the {len(missing)} left")
        done += [{"activity": a, "status": "failed", "exception": ["abandoned"]} for a in missing]
        return
    control.enter(Phase.ROLLBACKS)
    configuration = dict(prepared.configuration)
    secrets = _secrets(prepared, configuration)
    with _activity_cache(experiment):
        for activity in missing:
            if control.abandoned:
                done.append({"activity": activity, "status": "failed", "exception": ["abandoned"]})
                continue
            try:
                done.append(execute_activity(experiment, activity, configuration, secrets, experiment.get("dry")))
            except KeyboardInterrupt:
                done.append({"activity": activity, "status": "failed", "exception": ["abandoned"]})
            except Exception as exc:
                done.append({"activity": activity, "status": "failed", "exception": [str(exc)]})
    timeline.rollbacks_end = time.time()
    timeline.notes.append(f"loadkit ran {len(missing)} rollback(s) that Chaos Toolkit could not run"
                          + (" (abandoned after signals)" if control.abandoned else ""))


def _plan(options: ChaosOptions, config: Config, configuration: Mapping[str, Any]) -> LoadPlan:
    target = options.target or configuration.get("loadkit_target")
    if not target:
        raise UsageError("no target to load", hint="pass --target URL (or set loadkit_target in the experiment's "
                         "configuration)")
    return live.hold_plan(config, options.profile, str(target), options.users, options.rate)


def _cool_down(session: LoadSession, seconds: float, control: RunControl) -> None:
    """Keep the load on after the fault is gone so the result shows the recovery (a signal ends it)."""
    control.enter(Phase.COOLDOWN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and session.running and not control.stopping:
        time.sleep(0.1)


def _guards(options: ChaosOptions) -> Guards:
    """The run's guards, from its flags only (the experiment file cannot loosen them)."""
    run_id = uuid.uuid4().hex[:12]
    return Guards(
        allow_primary=options.allow_primary,
        namespaces=tuple(_pattern(p) for p in options.allow_namespaces),
        max_kill_share=guard.DEFAULT_MAX_KILL_SHARE if options.max_kill_share is None else options.max_kill_share,
        max_fault_s=guard.DEFAULT_MAX_FAULT_S if options.max_fault_s is None else options.max_fault_s,
        allow_unguarded=options.allow_unguarded,
        run_id=run_id,
        owner=guard.owner_record(run_id, f"loadkit chaos run {options.experiment_path}"),
    )


def _pattern(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"--allow-namespace {text!r} is not a regular expression: {exc}") from None


def _warn_unguarded(items: list[str]) -> None:
    print("loadkit: WARNING: --allow-unguarded: these run OUTSIDE loadkit's safety guards (nothing checks what "
          "they touch, and loadkit cannot remove what they leave):", file=sys.stderr)
    for item in items:
        print(f"loadkit: WARNING:   {item}", file=sys.stderr)


def _typed_vars(variables: Mapping[str, Any], declared: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """--var values take the type of the experiment's own value (`fault_seconds: 10` -> int)."""
    forbidden = sorted(GUARD_KEYS & set(variables))
    if forbidden:
        raise UsageError(f"--var {', '.join(forbidden)}: safety settings cannot be set as variables",
                         hint="use --allow-primary, --allow-namespace, --max-kill-share and --max-fault-duration")
    typed: dict[str, Any] = {}
    notes = [f"--var {k} is not in the experiment's configuration (nothing uses it)"
             for k in variables if k not in declared]
    for key, value in variables.items():
        current = declared.get(key)
        if isinstance(value, str) and isinstance(current, bool | int | float):
            try:
                value = (value.strip().lower() in ("1", "true", "yes", "on")) if isinstance(current, bool) \
                    else type(current)(value)
            except ValueError:
                raise UsageError(f"--var {key}={value}: the experiment uses a {type(current).__name__} here",
                                 hint=f"give a {type(current).__name__}, e.g. --var {key}={current}") from None
        typed[key] = value
    return typed, notes


class _Recorder(RunEventHandler):  # type: ignore[misc]
    """Keeps the live journal and the phases (the gate and the signal policy follow them)."""

    def __init__(self, timeline: Timeline, control: RunControl) -> None:
        self.timeline = timeline
        self.control = control
        self.journal: dict[str, Any] | None = None

    def running(self, experiment: Any, journal: Any, *_args: Any) -> None:
        self.journal = journal
        self.control.reinstall()  # chaoslib just set its own signal handlers: put ours back

    def start_hypothesis_before(self, experiment: Any) -> None:
        self.control.enter(Phase.HYPOTHESIS)

    def start_method(self, experiment: Any) -> None:
        self.control.enter(Phase.METHOD)

    def method_completed(self, experiment: Any, state: Any = None) -> None:
        self.timeline.method_end = time.time()

    def start_rollbacks(self, experiment: Any) -> None:
        self.control.enter(Phase.ROLLBACKS)

    def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
        self.timeline.rollbacks_end = time.time()


def _chaoslib_logging() -> None:
    logger = logging.getLogger("chaostoolkit")
    if not any(getattr(h, "_loadkit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("chaos: %(message)s"))
        handler._loadkit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _write_journal(path: Path | None, journal: Mapping[str, Any]) -> str | None:
    """Writes the journal; returns why it could not be written (the result is still reported)."""
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(journal, indent=2, default=_encode), encoding="utf-8")
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    return str(value)
