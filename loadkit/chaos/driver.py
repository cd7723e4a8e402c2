"""`loadkit chaos run`: a Chaos Toolkit experiment under real load, always rolled back, scored.

Order: validate the experiment and check it against the allow-list (`allowlist`), statically
and against the live systems, naming any fault another run left (nothing runs if they refuse);
start the load and let it settle; run the experiment with Chaos Toolkit up to its rollbacks
(rollback strategy `always`), recording when the fault was injected; run any rollback Chaos
Toolkit could not; remove whatever fault this run created that is still in place; keep the load
for a cool-down to see the recovery; only then take the steady state "after" (never while the
fault is on); stop the load; score.

Signals (see `_Signals`): before the rollbacks a Ctrl-C or SIGTERM interrupts the experiment at
once, pauses included (chaoslib then rolls back); from the rollbacks on they are deferred until
loadkit is done cleaning up (the run counts as interrupted, exit 130). Three signals during the
rollbacks abandon a hung rollback; loadkit still removes its own faults. chaoslib must run in the
main thread; Locust runs in its own process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any

import chaoslib.activity
from chaoslib import merge_vars
from chaoslib.activity import execute_activity
from chaoslib.configuration import load_configuration
from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.hypothesis import run_steady_state_hypothesis
from chaoslib.loader import load_experiment
from chaoslib.run import EventHandlerRegistry, RunEventHandler
from chaoslib.secret import load_secrets
from chaoslib.types import Dry, Strategy

from loadkit.analysis import ServerSide, client_compares, gather, require
from loadkit.chaos import allowlist, live
from loadkit.chaos import guards as guard
from loadkit.chaos.guards import GUARD_KEYS, Guards
from loadkit.chaos.live import LoadSession
from loadkit.chaos.models import ChaosResult
from loadkit.chaos.preflight import check_before_run
from loadkit.chaos.result import SETTLE_S, ChaosInputs, Timeline, build_chaos_result
from loadkit.config import Config
from loadkit.errors import ConfigError, SafetyError, UsageError
from loadkit.load.runner import LoadPlan
from loadkit.models.specs import Threshold
from loadkit.prometheus import Workload

SANDBOX_MODULE, K8S_MODULE = "loadkit.chaos.sandbox", "loadkit.chaos.k8s"
ABANDON_AFTER = 3  # signals during the rollbacks before a hung rollback is abandoned
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChaosOptions:
    experiment_path: Path
    target: str | None = None
    profile: str = "steady"
    users: int | None = None
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
        experiment = dict(load_experiment(path))
    except (ChaosException, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: cannot load the experiment: {exc}") from None
    declared = dict(experiment.get("configuration") or {})
    variables, notes = _typed_vars(options.variables, declared)
    config_vars, secret_vars = merge_vars(variables, None)
    guards = _guards(options)
    # chaoslib pops the keys it uses from the vars it is given: hand it a copy, keep ours for the run.
    static = {k: v for k, v in declared.items() if not (isinstance(v, Mapping) and v.get("type") not in (None, "env"))}
    try:
        configuration = dict(load_configuration(static, dict(config_vars)))
    except ChaosException as exc:
        raise ConfigError(f"{path}: invalid configuration: {exc}") from None
    found = allowlist.scan(experiment, configuration, guards)  # before chaoslib imports anything it names
    _refuse(path, found.problems)
    try:
        ensure_experiment_is_valid(experiment)
    except (ChaosException, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid experiment: {exc}", hint="check it with: chaos validate " + path) from None
    return Prepared(experiment, configuration, (config_vars, secret_vars), guards, notes, found.unguarded)


def _refuse(path: str, problems: list[str]) -> None:
    if problems:
        raise SafetyError(f"{path}: refused before anything ran:\n  - " + "\n  - ".join(problems))


def run_chaos(options: ChaosOptions, config: Config) -> ChaosResult:
    prepared = prepare(options)
    guard.set_active(prepared.guards)
    try:
        return _run_guarded(options, config, prepared)
    finally:
        guard.set_active(None)


def _run_guarded(options: ChaosOptions, config: Config, prepared: Prepared) -> ChaosResult:
    experiment, configuration = prepared.experiment, prepared.configuration
    if prepared.unguarded:
        _warn_unguarded(prepared.unguarded)
        prepared.notes += [f"UNGUARDED (--allow-unguarded): {item}" for item in prepared.unguarded]
    if not options.dry_run:
        problems, notes = check_before_run(experiment, configuration, prepared.guards)
        _refuse(str(options.experiment_path), problems)
        prepared.notes += notes
    else:
        experiment["dry"] = Dry.ACTIONS
    server = _server_side(options.server, configuration)
    _check_server_side([*config.thresholds, *config.chaos_thresholds], server)
    session = LoadSession(_plan(options, config, configuration), config.thresholds, config.min_samples)
    timeline = Timeline(notes=list(prepared.notes))
    recorder = _Recorder(timeline, options.dry_run)
    signals = _Signals(recorder)
    journal: dict[str, Any] = {"status": "interrupted", "deviated": False}
    live.set_current(session)
    signals.install()
    pauses = _InterruptiblePauses(signals)
    try:
        timeline.load_start = time.time()
        session.start()
        journal = _run(experiment, prepared, recorder)
    except KeyboardInterrupt:
        journal = {**(recorder.journal or journal), "status": "interrupted"}
    finally:
        signals.defer()
        leftovers = _clean_up(experiment, prepared, journal, timeline)
        if not signals.received:
            _cool_down(session, max(options.cooldown_s, options.recovery_window_s + SETTLE_S + 1.0), signals)
        if not signals.received:
            _steady_state_after(experiment, prepared, journal, timeline)
        session.stop()
        timeline.load_end = time.time()
        live.set_current(None)
        pauses.restore()
        signals.restore()
    if signals.received:
        journal = {**journal, "status": "interrupted"}
        timeline.notes.append(f"{', '.join(signals.received)} received: stopped after the rollbacks and clean-up")
    journal_error = _write_journal(options.journal_path, journal)
    external, notes = gather([*config.thresholds, *config.chaos_thresholds], server,
                             start=_dt(timeline.fault_start or timeline.load_start),
                             end=_dt(timeline.fault_end or timeline.load_end), wait=not signals.received)
    timeline.notes.extend(notes)
    return build_chaos_result(ChaosInputs(
        experiment=experiment, journal=journal, timeline=timeline, windows=session.windows(),
        load_thresholds=config.thresholds, chaos_thresholds=config.chaos_thresholds,
        min_samples=config.min_samples, target=session.plan.target, profile=session.plan.profile,
        path=str(options.experiment_path), dry_run=options.dry_run, leftovers=leftovers,
        journal_path=str(options.journal_path) if options.journal_path else None,
        recovery_window_s=options.recovery_window_s, impact_window_s=options.impact_window_s, external=external,
        unguarded=prepared.unguarded, journal_error=journal_error, load_error=session.error,
    ))


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


def _steady_state_after(experiment: dict[str, Any], prepared: Prepared, journal: dict[str, Any],
                        timeline: Timeline) -> None:
    """The hypothesis again, after the rollbacks and the cool-down, while the load still runs."""
    before = (journal.get("steady_states") or {}).get("before") or {}
    if not experiment.get("steady-state-hypothesis") or not before.get("steady_state_met") \
            or journal.get("status") != "completed":
        return  # no hypothesis, the gate was not met (nothing was injected), or the run did not finish
    configuration = dict(prepared.configuration)
    secrets = load_secrets(experiment.get("secrets") or {}, configuration, dict(prepared.experiment_vars[1]))
    try:
        state = run_steady_state_hypothesis(experiment, configuration, secrets, dry=experiment.get("dry"),
                                            event_registry=EventHandlerRegistry())
    except Exception as exc:  # a probe that raises is a failed hypothesis, as in Chaos Toolkit
        state = {"steady_state_met": False, "probes": [], "error": str(exc)}
    journal.setdefault("steady_states", {})["after"] = state
    timeline.steady_after_at = time.time()
    if state is not None and not state.get("steady_state_met"):
        journal["deviated"] = True


def _clean_up(experiment: dict[str, Any], prepared: Prepared, journal: dict[str, Any], timeline: Timeline) -> list[str]:
    """Rollbacks chaoslib could not run, then this run's own faults that are still there."""
    _finish_rollbacks(experiment, prepared, journal, timeline)
    run_id = prepared.guards.run_id
    modules = allowlist.modules(experiment)
    removed: list[str] = []
    if SANDBOX_MODULE in modules or prepared.unguarded:
        from loadkit.chaos import sandbox

        removed += sandbox.remove_run_faults(run_id)
        _still_in_place(prepared, timeline)
    if K8S_MODULE in modules:
        from loadkit.chaos import k8s

        try:
            removed += [f"VirtualService {name}" for name in k8s.delete_run_faults(run_id)]
        except Exception as exc:  # the API may be unreachable: say so, never hide it
            timeline.notes.append(f"could not check Kubernetes for faults left by this run: {exc}")
    if removed:
        timeline.leftovers_removed_at = time.time()
    return removed


def _still_in_place(prepared: Prepared, timeline: Timeline) -> None:
    """Say what is still faulting the sandbox after this run's clean-up: never "nothing was left"
    when something was (another run's fault, or what an unguarded activity made)."""
    from chaoslib.exceptions import ActivityFailed

    from loadkit.chaos import sandbox

    try:
        remaining = sandbox.list_faults(configuration=prepared.configuration)
    except ActivityFailed:
        return  # no sandbox configured: nothing to inventory
    base = sandbox.base_url(prepared.configuration)
    for fault in remaining:
        owner = fault.get("owner") or {}
        timeline.notes.append(f"still in place after this run: the {fault['kind']} fault {fault['id']} on the "
                              f"{fault['version']}, owned by {owner.get('run') or 'nobody'} (remove it with: "
                              f"loadkit chaos cleanup --sandbox {base})")


def _finish_rollbacks(experiment: dict[str, Any], prepared: Prepared, journal: dict[str, Any],
                      timeline: Timeline) -> None:
    """Rollbacks always run: play the ones a signal kept chaoslib from playing."""
    planned = list(experiment.get("rollbacks") or [])
    done = journal.setdefault("rollbacks", [])
    if len(done) >= len(planned) or not journal.get("run"):
        return  # all played, or the method never started (nothing to roll back)
    configuration = dict(prepared.configuration)
    secrets = load_secrets(experiment.get("secrets") or {}, configuration, dict(prepared.experiment_vars[1]))
    missing = planned[len(done):]
    for activity in missing:
        try:
            done.append(execute_activity(experiment, activity, configuration, secrets, experiment.get("dry")))
        except Exception as exc:
            done.append({"activity": activity, "status": "failed", "exception": [str(exc)]})
    timeline.rollbacks_end = time.time()
    timeline.notes.append(f"loadkit ran {len(missing)} rollback(s) that Chaos Toolkit could not run")


def _plan(options: ChaosOptions, config: Config, configuration: Mapping[str, Any]) -> LoadPlan:
    target = options.target or configuration.get("loadkit_target")
    if not target:
        raise UsageError("no target to load", hint="pass --target URL (or set loadkit_target in the experiment's "
                         "configuration)")
    return live.hold_plan(config, options.profile, str(target), options.users)


def _cool_down(session: LoadSession, seconds: float, signals: _Signals) -> None:
    """Keep the load on after the fault is gone so the result shows the recovery (a signal ends it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and session.running and not signals.received:
        time.sleep(0.2)


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
    """Keeps the live journal and when the fault was injected and removed."""

    def __init__(self, timeline: Timeline, dry: bool) -> None:
        self.timeline = timeline
        self.dry = dry
        self.in_method = False
        self.journal: dict[str, Any] | None = None
        self.on_started: Any = None
        self.on_rollbacks: Any = None

    def running(self, experiment: Any, journal: Any, *_args: Any) -> None:
        self.journal = journal
        if self.on_started:
            self.on_started()  # chaoslib just set its own SIGTERM handler: put ours back

    def start_method(self, experiment: Any) -> None:
        self.in_method = True

    def activity_completed(self, activity: Any, run: Any) -> None:
        """The fault is on from the start of the first method action that succeeded."""
        if (self.in_method and not self.dry and activity.get("type") == "action"
                and run.get("status") == "succeeded" and self.timeline.fault_start is None):
            self.timeline.fault_start = datetime.fromisoformat(run["start"]).timestamp()

    def method_completed(self, experiment: Any, state: Any) -> None:
        self.in_method = False
        self.timeline.method_end = time.time()

    def start_rollbacks(self, experiment: Any) -> None:
        self.in_method = False
        if self.on_rollbacks:
            self.on_rollbacks()

    def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
        self.timeline.rollbacks_end = time.time()


class _InterruptiblePauses:
    """chaoslib pauses with `time.sleep` inside a `finally:`, so a signal that lands while an action
    runs would still wait out that action's pause (with the fault on). While the experiment runs,
    a pause after a signal ends at once; during the rollbacks it is skipped."""

    def __init__(self, signals: _Signals) -> None:
        self.signals = signals
        self.original = chaoslib.activity.time
        chaoslib.activity.time = self  # type: ignore[assignment]

    def sleep(self, seconds: float) -> None:
        if self.signals.received:
            if not self.signals.deferring:
                raise KeyboardInterrupt
            return
        deadline = time.monotonic() + float(seconds)
        while not self.signals.received and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        if self.signals.received and not self.signals.deferring:
            raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)

    def restore(self) -> None:
        chaoslib.activity.time = self.original  # type: ignore[assignment]


class _Signals:
    """Ctrl-C / SIGTERM policy of a chaos run: interrupt the experiment until the rollbacks start,
    then defer until clean-up is done (three during the rollbacks abandon a hung one)."""

    def __init__(self, recorder: _Recorder) -> None:
        self.received: list[str] = []
        self.deferring = False
        self.in_rollbacks = False
        self.saved: dict[int, Any] = {}
        recorder.on_started = self.reinstall
        recorder.on_rollbacks = self.start_rollbacks

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self.handle)

    def reinstall(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def start_rollbacks(self) -> None:
        self.deferring = self.in_rollbacks = True

    def defer(self) -> None:
        self.deferring, self.in_rollbacks = True, False

    def restore(self) -> None:
        for sig, previous in self.saved.items():
            signal.signal(sig, previous)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if not self.deferring:
            # KeyboardInterrupt, not chaoslib's InterruptExecution: a Python probe or action would
            # swallow the latter (as ActivityFailed) and the experiment would carry on.
            raise KeyboardInterrupt
        if self.in_rollbacks and len(self.received) >= ABANDON_AFTER:
            print(f"loadkit: {name} x{len(self.received)}: abandoning the rollbacks (loadkit still removes its "
                  "own faults)", file=sys.stderr)
            raise KeyboardInterrupt
        print(f"loadkit: {name}: finishing the rollbacks and clean-up first", file=sys.stderr)


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
