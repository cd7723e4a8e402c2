"""Checks against the live systems before anything runs: the allow-list's live checks (selectors
resolved to pods, hosts to Services, kill shares on today's pod counts), and faults another run
left behind, found and named. (The static checks are in `allowlist`.)

A leftover whose owner is gone (its process ended, or its expiry passed) is removed with a note;
one that a live run owns, or that nobody owns, refuses the run with the exact clean-up command.
Never a silent failure, never another live run's fault deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadkit.chaos.allowlist import SANDBOX, arguments, live_problems, modules
from loadkit.chaos.guards import Guards


def check_before_run(experiment: Mapping[str, Any], configuration: Mapping[str, Any],
                     guards: Guards) -> tuple[list[str], list[str]]:
    """(problems that refuse the run, notes for the result)."""
    problems = live_problems(experiment, configuration, guards)
    notes: list[str] = []
    used = modules(experiment)
    if SANDBOX in used:
        _sandbox_leftovers(configuration, problems, notes)
    for ns, name in sorted(_canaries(experiment, configuration)):
        _cluster_leftovers(ns, name, problems, notes)
    return problems, notes


def _canaries(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> set[tuple[str, str]]:
    from loadkit.chaos.allowlist import K8S, all_activities

    found = set()
    for _where, activity in all_activities(experiment):
        if (activity.get("provider") or {}).get("module") == K8S:
            args = arguments(activity, configuration)
            if isinstance(args.get("ns"), str) and isinstance(args.get("name"), str):
                found.add((args["ns"], args["name"]))
    return found


def _sandbox_leftovers(configuration: Mapping[str, Any], problems: list[str], notes: list[str]) -> None:
    from chaoslib.exceptions import ActivityFailed

    from loadkit.chaos import sandbox

    try:
        base = sandbox.base_url(dict(configuration))
        faults = sandbox.list_faults(admin_url=base)
    except ActivityFailed as exc:
        problems.append(f"cannot check the sandbox for faults left by other runs: {exc}")
        return
    for fault in faults:
        owner = fault.get("owner") or {}
        what = f"{fault['kind']} fault {fault['id']} on the {fault['version']}"
        by = f"run {owner.get('run') or '?'} (pid {owner.get('pid') or '?'} on {owner.get('host') or '?'})"
        alive = sandbox.owner_alive(owner)
        if alive is False:
            sandbox.delete_fault(str(fault["id"]), base)
            notes.append(f"removed a leftover: the {what}, left by {by}, whose process is gone")
        elif alive is True:
            problems.append(f"another loadkit run is faulting this sandbox: the {what}, by {by}; wait for it to "
                            "finish")
        else:
            problems.append(f"a {what} is in place that no live run here owns ({by if owner else 'no owner'}); "
                            f"if it is a leftover, remove it with: loadkit chaos cleanup --sandbox {base}")


def _cluster_leftovers(ns: str, name: str, problems: list[str], notes: list[str]) -> None:
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
        runs = ", ".join(sorted({(vs["metadata"].get("labels") or {}).get(k8s.RUN_LABEL, "?") for vs in active}))
        problems.append(f"another loadkit fault is active on {ns}/{name}: {names} (run {runs}); if it is a leftover "
                        f"of a killed run, remove it with: loadkit chaos cleanup --namespace {ns} --run {runs}")
