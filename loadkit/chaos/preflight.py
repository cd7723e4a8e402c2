"""Checks against the live systems before anything runs: the allow-list's live checks (selectors
resolved to pods, hosts to Services, kill shares on today's pod counts; a dry run too), the
sandbox this run may fault, and faults another run left behind, found and named. (The static
checks are in `scan`.)

A leftover whose owner is proven gone (its process ended, or its expiry passed) is removed with a
note; one whose owner is alive, or may be (another machine or PID namespace), refuses the run
with the exact clean-up command, naming its run. Never a silent failure, never a live run's fault
deleted. A dry run removes nothing and refuses on no leftover: it only notes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadkit.chaos.allowlist import K8S, SANDBOX, arguments
from loadkit.chaos.guards import Guards, owner_alive
from loadkit.chaos.scan import live_problems, modules, placed
from loadkit.errors import SafetyError


def check_before_run(experiment: Mapping[str, Any], configuration: Mapping[str, Any], guards: Guards,
                     dry: bool = False) -> tuple[list[str], list[str]]:
    """(problems that refuse the run, notes for the result)."""
    problems = live_problems(experiment, configuration, guards)
    notes: list[str] = []
    used = modules(experiment)
    if SANDBOX in used:
        _sandbox_leftovers(configuration, guards, problems if not dry else notes, notes, dry)
    for ns, name in sorted(_canaries(experiment, configuration)):
        _cluster_leftovers(ns, name, problems if not dry else notes, notes, dry)
    return problems, notes


def _canaries(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for item in placed(experiment):
        if (item.activity.get("provider") or {}).get("module") == K8S:
            args = arguments(item.activity, configuration)
            if isinstance(args.get("ns"), str) and isinstance(args.get("name"), str):
                found.add((args["ns"], args["name"]))
    return found


def _sandbox_leftovers(configuration: Mapping[str, Any], guards: Guards, problems: list[str], notes: list[str],
                       dry: bool) -> None:
    from chaoslib.exceptions import ActivityFailed

    from loadkit.chaos import sandbox

    try:
        base = sandbox.base_url(dict(configuration))
        guards.check_sandbox_url(base)
        faults = sandbox.list_faults(admin_url=base)
    except SafetyError as exc:
        problems.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
        return
    except ActivityFailed as exc:
        problems.append(f"cannot check the sandbox for faults left by other runs: {exc}")
        return
    for fault in faults:
        owner = fault.get("owner") or {}
        what = f"{fault['kind']} fault {fault['id']} on the {fault['version']}"
        run = owner.get("run")
        by = f"run {run or '?'} (pid {owner.get('pid') or '?'} on {owner.get('host') or '?'})"
        alive = owner_alive(owner)
        if alive is False and not dry:
            sandbox.delete_fault(str(fault["id"]), base)
            notes.append(f"removed a leftover: the {what}, left by {by}, whose process is gone")
        elif alive is False:
            notes.append(f"a leftover is in place: the {what}, left by {by}, whose process is gone")
        elif alive is True:
            problems.append(f"another loadkit run is faulting this sandbox: the {what}, by {by}; wait for it to "
                            "finish")
        elif run:
            problems.append(f"the {what} is owned by {by}, which this machine cannot tell is gone; if it is, remove it "
                            f"with: loadkit chaos cleanup --sandbox {base} --run {run}")
        else:
            problems.append(f"a {what} is in place that no loadkit run owns; if it is a leftover, remove it with: "
                            f"loadkit chaos cleanup --sandbox {base}")


def _cluster_leftovers(ns: str, name: str, problems: list[str], notes: list[str], dry: bool) -> None:
    from loadkit.chaos import k8s

    try:
        if not dry:
            removed, _kept = k8s.cleanup(ns, expired_only=True)
            notes += [f"removed an expired loadkit fault left by an earlier run: {item}" for item in removed]
        active = k8s.active_faults(name, ns)
        for vs in active:
            meta = vs["metadata"]
            run = (meta.get("labels") or {}).get(k8s.RUN_LABEL, "?")
            owner = k8s.owner_of(vs)
            if owner and owner_alive(owner) is False and not dry:
                k8s.delete(vs)
                notes.append(f"removed a leftover: VirtualService {ns}/{meta['name']} of run {run}, whose process "
                             "is gone")
                continue
            problems.append(f"another loadkit fault is active on {ns}/{name}: {meta['name']} (run {run}); if it is a "
                            f"leftover of a killed run, remove it with: loadkit chaos cleanup --namespace {ns} --run "
                            f"{run}")
    except Exception as exc:
        problems.append(f"cannot check {ns}/{name} for other loadkit faults ({type(exc).__name__}: {exc})")
