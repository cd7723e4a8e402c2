"""Every activity chaoslib runs passes through loadkit's gate first, during `loadkit chaos run`.

chaoslib calls `chaoslib.activity.run_activity` for every activity it really runs (the hypothesis,
the method, the rollbacks, dynamic configuration, tolerance probes; a dry activity never gets
there). The gate stands in for it while a run lasts and, right before the call, checks again what
the scan checked before the run, now with the arguments chaoslib substituted (configuration and
secrets) and the live system as it is at that moment:

- the activity is allow-listed (else it runs only with `--allow-unguarded`), for the phase it runs
  in (a fault only in the method, as an action; only reads in a hypothesis; no fault in the
  rollbacks), and nothing runs while chaoslib loads its configuration;
- in a dry run no action runs at all, whatever an activity's own `dry` says;
- its argument checks and live checks (pods, Services, kill shares) pass; a chaosk8s pod kill
  runs as loadkit's guarded twin, which counts every kill of the run against the share cap;
- after a fault-injecting action, the fault is looked for: only a fault seen in place counts as
  injected (`on_injected`), and the time it was first attempted starts the fault watchdog.

A refusal is an ActivityFailed, so chaoslib records it as the activity's failure.

    gate = Gate(guards, dry=False, on_injected=..., on_attempt=...)
    with gate.installed():
        run_experiment(...)
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import chaoslib.activity
import chaoslib.hypothesis
from chaoslib.exceptions import ActivityFailed

from loadkit.chaos.allowlist import Kind, arguments, check_entry, entry_of, section_problem
from loadkit.chaos.guards import Guards
from loadkit.errors import SafetyError


class Phase(enum.Enum):
    """Where a chaos run is; the gate and the signal policy both follow it."""

    SETUP = "setup"  # chaoslib loads the configuration (dynamic configuration would run here)
    HYPOTHESIS = "steady-state probe"
    METHOD = "method"
    ROLLBACKS = "rollback"
    CLEANUP = "clean-up"
    COOLDOWN = "cool-down"
    AFTER = "after"  # loadkit's steady-state hypothesis after the cool-down
    REPORT = "report"

    @property
    def section(self) -> str | None:
        return {Phase.HYPOTHESIS: "steady-state probe", Phase.AFTER: "steady-state probe",
                Phase.METHOD: "method", Phase.ROLLBACKS: "rollback"}.get(self)


class Gate:
    def __init__(self, guards: Guards, *, dry: bool, on_injected: Callable[[float, str], None],
                 on_attempt: Callable[[float], None]) -> None:
        self.guards = guards
        self.dry = dry
        self.phase = Phase.SETUP
        self.on_injected = on_injected
        self.on_attempt = on_attempt
        self.unverified: list[str] = []  # unguarded method actions that succeeded: loadkit cannot see their fault
        self._lock = threading.Lock()
        self._original = chaoslib.activity.run_activity

    @contextlib.contextmanager
    def installed(self) -> Iterator[Gate]:
        chaoslib.activity.run_activity = self  # type: ignore[assignment]
        chaoslib.hypothesis.run_activity = self  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            chaoslib.activity.run_activity = self._original
            chaoslib.hypothesis.run_activity = self._original  # type: ignore[attr-defined]

    def __call__(self, activity: Mapping[str, Any], configuration: Any, secrets: Any) -> Any:
        name, entry = entry_of(activity)
        label = f"{activity.get('type', 'activity')} {activity.get('name') or name}"
        phase = self.phase
        if entry is None:
            return self._unguarded(activity, configuration, secrets, label, phase)
        section = phase.section
        if section is None:
            raise ActivityFailed(f"refused by loadkit's safety guards: {label} may not run during the {phase.value}")
        problem = section_problem(entry, section, activity.get("type"), name)
        if problem:
            raise ActivityFailed(f"refused by loadkit's safety guards: {label}: {problem}")
        if self.dry and activity.get("type") == "action":
            raise ActivityFailed(f"refused by loadkit's safety guards: {label}: a dry run runs no action")
        provider = activity.get("provider") or {}
        args = arguments(activity, configuration or {}, secrets or {})
        try:
            check_entry(entry, str(provider.get("module")), str(provider.get("func")), args, self.guards)
            if entry.live is not None:
                entry.live(args, self.guards, configuration or {})
        except SafetyError as exc:
            raise ActivityFailed(f"refused by loadkit's safety guards: {label}: {exc}") from None
        except ActivityFailed:
            raise
        except Exception as exc:  # the system cannot be asked: the check cannot be made, so it does not run
            raise ActivityFailed(f"refused by loadkit's safety guards: {label}: cannot check it against the live "
                                 f"system ({type(exc).__name__}: {exc})") from None
        if entry.redirect is not None:
            module, func = entry.redirect
            activity = {**activity, "provider": {**provider, "module": module, "func": func}}
        started = time.time()
        if entry.kind is Kind.FAULT:
            self.on_attempt(started)
        try:
            result = self._original(activity, configuration, secrets)
            if entry.kind is Kind.FAULT and entry.observe is not None:
                try:
                    seen, why = entry.observe(result, args, configuration or {}), "it is not there"
                except Exception as exc:  # the API went away: the fault cannot be seen, so it does not count
                    seen, why = None, f"it could not be looked for ({type(exc).__name__}: {exc})"
        except KeyboardInterrupt:
            if entry.kind is Kind.FAULT:  # it may be in place (its request may have been served): say so
                self.on_injected(started, f"{label} (interrupted while it ran: counted as in place, as it may be)")
            raise
        if entry.kind is Kind.FAULT and entry.observe is not None:
            if seen is None:
                raise ActivityFailed(f"{label} returned, but its fault is not in place ({why}): nothing was "
                                     "injected")
            self.on_injected(started, seen)
        return result

    def _unguarded(self, activity: Mapping[str, Any], configuration: Any, secrets: Any, label: str,
                   phase: Phase) -> Any:
        if not self.guards.allow_unguarded:
            raise ActivityFailed(f"refused by loadkit's safety guards: {label} is not on the allow-list")
        if self.dry and activity.get("type") == "action":
            raise ActivityFailed(f"refused by loadkit's safety guards: {label}: a dry run runs no action")
        started = time.time()
        in_method = phase is Phase.METHOD and activity.get("type") == "action"
        if in_method:
            self.on_attempt(started)
        result = self._original(activity, configuration, secrets)
        if in_method:
            with self._lock:
                self.unverified.append(label)
            self.on_injected(started, f"{label} (unguarded: loadkit cannot see what it injected)")
        return result
