"""`loadkit chaos run`: a Chaos Toolkit experiment under real load, always rolled back, scored.

Order: validate the experiment and scan it with the safety guards (nothing runs if they refuse);
start the load; run the experiment with Chaos Toolkit (rollback strategy `always`), recording
when the fault started and ended; keep the load for a cool-down to see the recovery; stop it;
remove any loadkit fault still in place; score.

Signals: during the rollbacks Ctrl-C and SIGTERM are deferred until the rollbacks finished (the
run then counts as interrupted), so a fault is never left behind by an impatient operator.
chaoslib must run in the main thread; Locust runs in its own process.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any

from chaoslib import merge_vars
from chaoslib.configuration import load_configuration
from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.loader import load_experiment
from chaoslib.run import RunEventHandler
from chaoslib.types import Dry, Strategy

from loadkit.chaos import live
from loadkit.chaos.guards import scan_experiment
from loadkit.chaos.live import LoadSession
from loadkit.chaos.models import ChaosResult
from loadkit.chaos.result import SETTLE_S, ChaosInputs, Timeline, build_chaos_result
from loadkit.config import Config
from loadkit.errors import ConfigError, Interrupted, SafetyError, UsageError
from loadkit.load.runner import LoadPlan

SANDBOX_MODULE, K8S_MODULE = "loadkit.chaos.sandbox", "loadkit.chaos.k8s"


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
    journal_path: Path | None = None
    cooldown_s: float = 10.0
    recovery_window_s: float = 5.0


@dataclass
class Prepared:
    experiment: dict[str, Any]
    configuration: dict[str, Any]
    experiment_vars: tuple[dict[str, Any], dict[str, Any]]


def prepare(options: ChaosOptions) -> Prepared:
    """Load, validate and guard-scan an experiment; raises ConfigError or SafetyError (exit 2)."""
    _quiet_chaoslib()
    path = str(options.experiment_path)
    if not options.experiment_path.is_file():
        raise ConfigError(f"experiment {path} not found", hint="give the path to a Chaos Toolkit JSON/YAML file")
    try:
        experiment = dict(load_experiment(path))
    except (ChaosException, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: cannot load the experiment: {exc}") from None
    config_vars, secret_vars = merge_vars(dict(options.variables), None)
    experiment["configuration"] = {**(experiment.get("configuration") or {}), **_guard_settings(options)}
    try:
        ensure_experiment_is_valid(experiment)
    except (ChaosException, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid experiment: {exc}",
                          hint="check it with: chaos validate " + path) from None
    # chaoslib pops the keys it uses from the vars it is given: hand it a copy, keep ours for the run.
    configuration = dict(load_configuration(experiment["configuration"], dict(config_vars)))
    problems = scan_experiment(experiment, configuration)
    if problems:
        raise SafetyError(f"{path}: refused before anything ran:\n  - " + "\n  - ".join(problems))
    return Prepared(experiment, configuration, (config_vars, secret_vars))


def run_chaos(options: ChaosOptions, config: Config) -> ChaosResult:
    prepared = prepare(options)
    experiment, configuration = prepared.experiment, prepared.configuration
    if options.dry_run:
        experiment["dry"] = Dry.ACTIONS
    session = LoadSession(_plan(options, config, configuration), config.thresholds, config.min_samples)
    timeline = Timeline()
    journal: dict[str, Any] = {"status": "aborted", "deviated": False}
    live.set_current(session)
    try:
        timeline.load_start = time.time()
        session.start()
        journal = _run(experiment, prepared, timeline, options.dry_run)
        if journal.get("status") != "interrupted":
            # Long enough to see one whole recovery window after the fault is gone.
            _cool_down(session, max(options.cooldown_s, options.recovery_window_s + SETTLE_S + 1.0))
    except (KeyboardInterrupt, Interrupted):
        journal = {**journal, "status": "interrupted"}
    finally:
        leftovers = _remove_leftovers(experiment, configuration)
        session.stop()
        timeline.load_end = time.time()
        live.set_current(None)
    if timeline.notes and any("deferred" in n for n in timeline.notes):
        journal = {**journal, "status": "interrupted"}
    _write_journal(options.journal_path, journal)
    return build_chaos_result(ChaosInputs(
        experiment=experiment, journal=journal, timeline=timeline, windows=session.windows(),
        load_thresholds=config.thresholds, chaos_thresholds=config.chaos_thresholds,
        min_samples=config.min_samples, target=session.plan.target, profile=session.plan.profile,
        path=str(options.experiment_path), dry_run=options.dry_run, leftovers=leftovers,
        journal_path=str(options.journal_path) if options.journal_path else None,
        recovery_window_s=options.recovery_window_s,
    ))


def _run(experiment: dict[str, Any], prepared: Prepared, timeline: Timeline, dry: bool) -> dict[str, Any]:
    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    handler = _Recorder(timeline, dry)
    return dict(run_experiment(experiment, settings=settings, strategy=Strategy.DEFAULT,
                               experiment_vars=prepared.experiment_vars,  # a tuple, whatever its annotation says
                               event_handlers=[handler]))


def _plan(options: ChaosOptions, config: Config, configuration: Mapping[str, Any]) -> LoadPlan:
    target = options.target or configuration.get("loadkit_target")
    if not target:
        raise UsageError("no target to load", hint="pass --target URL, or set loadkit_target in the experiment's "
                         "configuration (e.g. with --var loadkit_target=http://...)")
    return live.hold_plan(config, options.profile, str(target), options.users)


def _cool_down(session: LoadSession, seconds: float) -> None:
    """Keep the load on after the rollbacks so the result shows the recovery."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and session.running:
        time.sleep(0.2)


def _guard_settings(options: ChaosOptions) -> dict[str, Any]:
    settings: dict[str, Any] = {"loadkit_run_id": uuid.uuid4().hex[:12], "loadkit_allow_primary": options.allow_primary}
    if options.allow_namespaces:
        settings["loadkit_allowed_namespaces"] = list(options.allow_namespaces)
    if options.max_kill_share is not None:
        settings["loadkit_max_kill_share"] = options.max_kill_share
    return settings


def _remove_leftovers(experiment: Mapping[str, Any], configuration: dict[str, Any]) -> list[str]:
    """The last line of defence: whatever loadkit faults this run created and are still there."""
    modules = {(a.get("provider") or {}).get("module") for a in [*(experiment.get("method") or []),
                                                                *(experiment.get("rollbacks") or [])]}
    removed: list[str] = []
    if SANDBOX_MODULE in modules:
        from loadkit.chaos import sandbox

        try:
            faults = sandbox.list_faults(configuration=configuration)
            if faults:
                sandbox.remove_faults(configuration=configuration)
                removed += [f"sandbox fault {f['id']} ({f['kind']} on {f['version']})" for f in faults]
        except ChaosException as exc:
            logging.getLogger(__name__).warning("could not check the sandbox for leftover faults: %s", exc)
    if K8S_MODULE in modules:
        removed += _remove_k8s_leftovers(str(configuration.get("loadkit_run_id", "")))
    return removed


def _remove_k8s_leftovers(run_id: str) -> list[str]:
    from loadkit.chaos import k8s

    try:
        return k8s._delete_matching(f"{k8s.MANAGED_BY}=loadkit,{k8s.RUN_LABEL}={run_id}", None, None)
    except Exception as exc:  # the API may be unreachable: say so, never hide it
        logging.getLogger(__name__).warning("could not check Kubernetes for leftover faults: %s", exc)
        return []


class _Recorder(RunEventHandler):  # type: ignore[misc]
    """Records when the fault started and ended; defers signals while the rollbacks run."""

    def __init__(self, timeline: Timeline, dry: bool) -> None:
        self.timeline = timeline
        self.dry = dry
        self.in_method = False
        self.saved: dict[int, Any] = {}

    def start_method(self, experiment: Any) -> None:
        self.in_method = True

    def start_activity(self, activity: Any) -> None:
        if self.in_method and not self.dry and activity.get("type") == "action" and self.timeline.fault_start is None:
            self.timeline.fault_start = time.time()

    def method_completed(self, experiment: Any, state: Any) -> None:
        self.in_method = False
        self.timeline.method_end = time.time()

    def start_rollbacks(self, experiment: Any) -> None:
        self.in_method = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._defer)

    def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
        self.timeline.rollbacks_end = time.time()
        for sig, previous in self.saved.items():
            signal.signal(sig, previous)

    def _defer(self, signum: int, _frame: FrameType | None) -> None:
        self.timeline.notes.append(f"{signal.Signals(signum).name} deferred until the rollbacks finished")
        print(f"loadkit: {signal.Signals(signum).name}: finishing the rollbacks first", file=sys.stderr)


def _quiet_chaoslib() -> None:
    logger = logging.getLogger("chaostoolkit")
    if not any(getattr(h, "_loadkit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("chaos: %(message)s"))
        handler._loadkit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _write_journal(path: Path | None, journal: Mapping[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(journal, indent=2, default=_encode), encoding="utf-8")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    return str(value)
