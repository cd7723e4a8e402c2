"""Checks against the live systems before anything runs: the kill share cap on today's pod
counts, and faults another run left behind. (The static checks are in `guards`.)"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from loadkit.chaos.guards import KILLS, Guards, activities, call_arguments
from loadkit.errors import SafetyError


def check_before_run(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(problems that refuse the run, notes for the result)."""
    guards = Guards.from_configuration(configuration)
    problems: list[str] = []
    notes: list[str] = []
    canaries: set[tuple[str, str]] = set()
    for activity in activities(experiment):
        provider = activity.get("provider") or {}
        module, func = str(provider.get("module")), str(provider.get("func"))
        args = call_arguments(activity, configuration)
        where = f"{activity.get('name', '?')} ({module}.{func})"
        if module == "loadkit.chaos.k8s" and "name" in args and "ns" in args:
            canaries.add((str(args["ns"]), str(args["name"])))
        if (module, func) not in KILLS:
            continue
        try:
            available = _running(module, func, args, configuration)
            guards.kill_quantity(int(args.get("count", args.get("qty", 1))), available,
                                 str(args.get("mode", "fixed")))
        except SafetyError as exc:
            problems.append(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:  # the API cannot be asked: the cap cannot be checked, so refuse
            problems.append(f"{where}: cannot count the pods before the run ({type(exc).__name__}: {exc})")
    for ns, name in sorted(canaries):
        _check_other_runs(ns, name, problems, notes)
    return problems, notes


def _running(module: str, func: str, args: Mapping[str, Any], configuration: Mapping[str, Any]) -> int:
    if module == "loadkit.chaos.sandbox":
        from loadkit.chaos import sandbox

        return sandbox.running_pods(str(args.get("version", "canary")), args.get("admin_url"), dict(configuration))
    from loadkit.chaos import k8s

    ns = str(args.get("ns", "default"))
    if module == "loadkit.chaos.k8s":
        return len(k8s.running_pods(f"app={args['name']}", ns))
    pattern = args.get("name_pattern")
    if pattern:
        re.compile(str(pattern))
    return len(k8s.running_pods(str(args.get("label_selector", "")), ns, name_pattern=pattern))


def _check_other_runs(ns: str, name: str, problems: list[str], notes: list[str]) -> None:
    from loadkit.chaos import k8s

    try:
        expired = k8s.cleanup(ns, expired_only=True)
        active = k8s.active_faults(name, ns)
    except Exception as exc:
        problems.append(f"cannot check {ns}/{name} for other loadkit faults ({type(exc).__name__}: {exc})")
        return
    notes += [f"removed an expired loadkit fault left by an earlier run: {item}" for item in expired]
    if active:
        names = ", ".join(vs["metadata"]["name"] for vs in active)
        problems.append(f"another loadkit fault is active on {ns}/{name}: {names} (if it is a leftover of a "
                        f"killed run, remove it with: loadkit chaos cleanup --namespace {ns})")
