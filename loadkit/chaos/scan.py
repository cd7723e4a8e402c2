"""An experiment against the allow-list, before anything runs: every activity where it is.

Each activity is checked for the section it runs in (a `ref:` is resolved as chaoslib resolves
it: by name among the method and the steady-state probes, the last one winning, and checked where
it is referenced), then its arguments and pauses. Refused outright: guard settings and `dry` in
the file (only loadkit's flags set them), a `ref` to nothing, a fault outside the method or
declared as a probe. Refused unless `--allow-unguarded` (then loud, and recorded in the result):
anything not on the allow-list, `process` and `http` providers, controls other than loadkit's,
secrets (they could point an action at another cluster than the one loadkit checks and cleans
up), background activities, probe tolerances, and dynamic configuration anywhere in a
configuration value or a `--var` (an `env` entry's default included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaoslib import substitute

from loadkit.chaos.allowlist import (
    CONTROL,
    HINTS,
    SECRETS_HINT,
    SECRETS_REFUSED,
    arguments,
    check_entry,
    entry_of,
    section_problem,
)
from loadkit.chaos.guards import GUARD_KEYS, Guards, strict
from loadkit.errors import SafetyError

SECTIONS = (("steady-state probe", "steady-state-hypothesis"), ("method", "method"), ("rollback", "rollbacks"))


@dataclass
class Scan:
    problems: list[str] = field(default_factory=list)
    unguarded: list[str] = field(default_factory=list)  # what --allow-unguarded let through

    def refuse(self, where: str, exc: SafetyError) -> None:
        self.add(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


@dataclass(frozen=True)
class Placed:
    """An activity as it will run: its section, where it is written, and what runs (a ref resolved)."""

    section: str
    where: str
    activity: Mapping[str, Any]
    ref: str | None = None


def scan(experiment: Mapping[str, Any], configuration: Mapping[str, Any], guards: Guards,
         variables: Mapping[str, Any] | None = None) -> Scan:
    """Everything wrong with an experiment that can be seen without touching any system."""
    result = Scan()
    declared = experiment.get("configuration") or {}
    for key in sorted(GUARD_KEYS & set(declared)):
        result.add(f"configuration {key}: guard settings come only from loadkit's flags, never from the experiment "
                   "(drop it; use --allow-primary, --allow-namespace, --max-kill-share)")
    if "dry" in experiment:
        result.add("dry: only --dry-run makes a run dry (drop dry from the experiment)")
    if experiment.get("secrets"):
        _unguarded(result, "secrets", f"{SECRETS_REFUSED} ({SECRETS_HINT})", guards)
    _dynamic_configuration(result, declared, variables or {}, guards)
    for where, control in _controls(experiment):
        module = (control.get("provider") or {}).get("module")
        if module != CONTROL:
            _unguarded(result, where, f"control {module!r} is not loadkit's ({CONTROL})", guards)
    cache = activity_cache(experiment)
    for section, where, activity in written(experiment):
        if "dry" in activity:
            result.add(f"{where}: dry: an activity's own dry overrides --dry-run in Chaos Toolkit, so a dry run would "
                       "run it; only --dry-run makes a run dry (drop dry from the activity)")
        if activity.get("background"):
            _unguarded(result, where, "a background activity runs beside the rest, where loadkit can neither order "
                       "its fault before the rollbacks nor stop it on a signal", guards)
        ref = activity.get("ref")
        if ref is not None:
            target = cache.get(str(ref))
            if target is None:
                result.add(f"{where}: ref {ref!r} names no activity of the method or the steady-state hypothesis "
                           "(Chaos Toolkit looks refs up there, by name)")
                continue
            _scan_activity(result, Placed(section, f"{where} (ref {ref})", target, str(ref)), configuration, guards)
        else:
            _scan_activity(result, Placed(section, where, activity), configuration, guards)
        tolerance = activity.get("tolerance")
        if isinstance(tolerance, Mapping) and tolerance.get("type") in ("probe", "action"):
            _unguarded(result, f"{where}: its tolerance probe", "a probe tolerance runs an activity outside "
                       "loadkit's guards", guards)
    return result


def placed(experiment: Mapping[str, Any]) -> list[Placed]:
    """Every activity that will run, refs resolved (a ref to nothing is left out: the scan refuses it)."""
    cache = activity_cache(experiment)
    found = []
    for section, where, activity in written(experiment):
        ref = activity.get("ref")
        if ref is None:
            found.append(Placed(section, where, activity))
        elif (target := cache.get(str(ref))) is not None:
            found.append(Placed(section, f"{where} (ref {ref})", target, str(ref)))
    return found


def activity_cache(experiment: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """What `ref:` resolves to, as chaoslib's cache holds it: the method's and the steady-state
    probes' activities by name, a later one replacing an earlier one of the same name."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    cache: dict[str, Mapping[str, Any]] = {}
    for activity in [*(experiment.get("method") or []), *(hypothesis.get("probes") or [])]:
        if isinstance(activity, Mapping) and activity.get("name"):
            cache[str(activity["name"])] = activity
    return cache


def written(experiment: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(section, where, activity) for each activity as written: steady-state probes, method, rollbacks."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found = []
    for section, key in SECTIONS:
        items = hypothesis.get("probes") if key == "steady-state-hypothesis" else experiment.get(key)
        for activity in items or []:
            if isinstance(activity, Mapping):
                found.append((section, f"{section} {activity.get('name') or activity.get('ref') or '?'}", activity))
    return found


def modules(experiment: Mapping[str, Any]) -> set[str]:
    return {str((p.activity.get("provider") or {}).get("module")) for p in placed(experiment)}


def live_problems(experiment: Mapping[str, Any], configuration: Mapping[str, Any], guards: Guards) -> list[str]:
    """The allow-listed activities' checks against the live system (pods, Services, pod counts)."""
    problems: list[str] = []
    for item in placed(experiment):
        _name, entry = entry_of(item.activity)
        if entry is None or entry.live is None:
            continue
        try:
            entry.live(arguments(item.activity, configuration), guards, configuration)
        except SafetyError as exc:
            problem = f"{item.where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        except Exception as exc:  # the system cannot be asked, so the check cannot be made: refuse
            problem = f"{item.where}: cannot check it against the live system ({type(exc).__name__}: {exc})"
        else:
            continue
        if problem not in problems:
            problems.append(problem)
    return problems


def _scan_activity(result: Scan, item: Placed, configuration: Mapping[str, Any], guards: Guards) -> None:
    activity, where = item.activity, item.where
    provider = activity.get("provider") or {}
    kind = provider.get("type")
    if kind != "python":
        _unguarded(result, where, f"a {kind!r} provider runs outside loadkit's guards", guards)
        return
    name, entry = entry_of(activity)
    if entry is None:
        module = str(provider.get("module"))
        hint = next((h for prefix, h in HINTS.items() if module.startswith(prefix)), "")
        _unguarded(result, where, hint or f"{name} is not an activity loadkit can guard (see docs/chaos.md for the "
                   "list)", guards)
        return
    if provider.get("secrets"):
        _unguarded(result, where, f"provider secrets: {SECRETS_REFUSED} ({SECRETS_HINT})", guards)
    problem = section_problem(entry, item.section, activity.get("type"), name)
    if problem:
        result.add(f"{where}: {problem}")
    args = arguments(activity, configuration)
    try:
        check_entry(entry, str(provider["module"]), str(provider["func"]), args, guards)
    except SafetyError as exc:
        result.refuse(where, exc)
    for pause in ("before", "after"):
        value = (activity.get("pauses") or {}).get(pause)
        if value is None:
            continue
        try:
            seconds = float(strict(substitute(value, dict(configuration), {}), (int, float), f"pauses.{pause}"))
            guards.check_fault_length(seconds, f"pause {pause}", zero=True)
        except SafetyError as exc:
            result.refuse(where, exc)


def _dynamic_configuration(result: Scan, declared: Mapping[str, Any], variables: Mapping[str, Any],
                           guards: Guards) -> None:
    """chaoslib runs a configuration value of type probe before the experiment, an env entry's
    default and a --var value included: refuse an activity anywhere in one."""
    for origin, values in (("configuration", declared), ("--var", variables)):
        for key, value in values.items():
            path = _activity_inside(value, "")
            if path is not None:
                _unguarded(result, f"{origin} {key}{path}", "dynamic configuration (an activity in a configuration "
                           "value) runs before the experiment, outside loadkit's guards", guards)


def _activity_inside(value: Any, path: str) -> str | None:
    if isinstance(value, Mapping):
        if value.get("type") in ("probe", "action") or "provider" in value:
            return path
        for key, inner in value.items():
            if (found := _activity_inside(inner, f"{path}.{key}")) is not None:
                return found
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            if (found := _activity_inside(inner, f"{path}[{i}]")) is not None:
                return found
    return None


def _unguarded(result: Scan, where: str, reason: str, guards: Guards) -> None:
    if guards.allow_unguarded:
        if f"{where}: {reason}" not in result.unguarded:
            result.unguarded.append(f"{where}: {reason}")
    else:
        result.add(f"{where}: {reason}; refused (--allow-unguarded runs it anyway, outside the guards)")


def _controls(experiment: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found = [("experiment control", c) for c in experiment.get("controls") or []]
    found += [("hypothesis control", c) for c in hypothesis.get("controls") or []]
    for _section, where, activity in written(experiment):
        found += [(f"{where}: control", c) for c in activity.get("controls") or []]
    return [(f"{where} {c.get('name', '?')}", c) for where, c in found if isinstance(c, Mapping)]
