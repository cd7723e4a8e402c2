"""After the rollbacks, and again at the very end: remove every fault this run made that is still
in place, and see every pod it killed back.

Only this run's faults (sandbox faults it owns, Kubernetes objects labelled with its run id, in
each namespace it created one in: namespace-scoped permissions suffice), retried while an API is
briefly unreachable; a fault counts as removed only once it is no longer listed, and one that
could not be removed is reported as such with the command that removes it, never as removed. A
kill is rolled back when the workload has as many Running, Ready pods as before it: loadkit waits
for that (at most `RESTORE_WAIT_S`, less if a signal arrives) and says when it is not so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaoslib.exceptions import ActivityFailed

from loadkit.chaos.guards import Guards, Kill

RESTORE_WAIT_S = 75.0  # longer than any sandbox restart_after_s (MAX_RESTART_AFTER_S) allows


@dataclass
class Swept:
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # still in place, or not verified
    notes: list[str] = field(default_factory=list)
    at: float | None = None  # when a leftover was removed, or killed pods were seen back after a wait


def sweep(guards: Guards, interrupted: Callable[[], bool], restore_wait_s: float = RESTORE_WAIT_S) -> Swept:
    from loadkit.chaos import k8s, sandbox

    swept = Swept()
    removed, failed = sandbox.remove_run_faults(guards.run_id)
    removed_k8s, failed_k8s = k8s.delete_run_faults(guards.run_id)
    swept.removed += removed + [f"VirtualService {name}" for name in removed_k8s]
    swept.failed += failed + failed_k8s
    if swept.removed:
        swept.at = time.time()
    _restore(guards.kills.kills, interrupted, restore_wait_s, swept)
    return swept


def still_in_place(configuration: Mapping[str, Any]) -> list[str]:
    """What is still faulting the sandbox after this run's clean-up: never "nothing was left" when
    something was (another run's fault, or what an unguarded activity made)."""
    from loadkit.chaos import sandbox

    try:
        remaining = sandbox.list_faults(configuration=dict(configuration))
        base = sandbox.base_url(dict(configuration))
    except ActivityFailed:
        return []  # no sandbox configured: nothing to inventory
    notes = []
    for fault in remaining:
        owner = fault.get("owner") or {}
        run = owner.get("run")
        command = f"loadkit chaos cleanup --sandbox {base}" + (f" --run {run}" if run else "")
        notes.append(f"still in place after this run: the {fault['kind']} fault {fault['id']} on the "
                     f"{fault['version']}, owned by {run or 'nobody'} (remove it with: {command})")
    return notes


def _restore(kills: list[Kill], interrupted: Callable[[], bool], wait_s: float, swept: Swept) -> None:
    pending = [kill for kill in kills if kill.killed]
    started = time.monotonic()
    waited = False
    errors: dict[str, str] = {}
    while pending:
        pending = [kill for kill in pending if not _back(kill, errors)]
        if not pending or interrupted() or time.monotonic() - started > wait_s:
            break
        waited = True
        time.sleep(0.5)
    took = time.monotonic() - started
    done = [kill for kill in kills if kill.killed and kill not in pending]
    if waited and done:
        swept.at = time.time()
        swept.notes.append(f"loadkit waited {took:.1f}s to see the killed pods of {', '.join(k.where for k in done)} "
                           "back (no rollback waited for them)")
    for kill in pending:
        why = errors.get(kill.where) or ("the wait was cut short by a signal" if interrupted()
                                         else f"not back after {took:.0f}s")
        swept.failed.append(f"the pods this run killed in {kill.where} ({', '.join(kill.killed)}): {why}; the "
                            f"workload had {kill.baseline} running pods before")


def _back(kill: Kill, errors: dict[str, str]) -> bool:
    from loadkit.chaos import k8s, sandbox

    try:
        return sandbox.pods_back(kill) if "sandbox" in kill.restore else k8s.pods_back(kill)
    except Exception as exc:  # the API is unreachable: not seen back (said so, never assumed)
        errors[kill.where] = f"cannot be checked ({type(exc).__name__}: {exc})"
        return False
