"""Chaos Toolkit actions against the local sandbox (`loadkit sandbox up`): pod kills and
router faults (delay, abort), all removable, all guarded, each fault owned by the run that made it.

The sandbox's admin URL comes from the argument `admin_url`, the configuration key
`loadkit_sandbox_admin_url`, or the LOADKIT_SANDBOX_ADMIN_URL environment variable; the guards
allow only the sandbox LOADKIT_SANDBOX_ADMIN_URL names (with none set, none at all: the experiment
file alone never chooses what is faulted).

    method:
      - type: action
        name: add-600ms-to-the-canary
        provider: {type: python, module: loadkit.chaos.sandbox, func: add_delay,
                   arguments: {version: canary, delay_ms: 600}}
    rollbacks:
      - type: action
        name: remove-faults
        provider: {type: python, module: loadkit.chaos.sandbox, func: remove_faults}

Every fault records its owner (run id, pid, host, start time): a rollback removes only its own
run's faults, and a later run can tell a leftover of a killed run from a live run's fault. A run
remembers where it may have put a fault before it asks for one (an answer lost on the way, or a
Ctrl-C while the request is in flight, still leaves it findable).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from loadkit import httpcalls
from loadkit.chaos import guards as guard
from loadkit.errors import SafetyError

__all__ = ["add_abort", "add_cpu_stress", "add_delay", "add_dependency_fault", "add_memory_limit", "add_packet_loss",
           "add_partition", "kill_pods", "list_faults", "remove_faults", "wait_for_pods"]

VERSIONS = ("canary", "primary")
DEPENDENCIES = ("database", "external")
DEPENDENCY_MODES = ("slow", "failing", "unreachable")
CPU_MECHANISMS = ("auto", "cgroup", "busy")

# Sandboxes this process asked for faults on, by run: where `loadkit chaos run` sweeps its own faults.
_touched: dict[str, set[str]] = {}
_unanswered: dict[str, float] = {}  # run -> when a fault request got no answer (it may still have been made)
SETTLE_S = 1.0  # a request the sandbox had in full when its client gave up is served within this
owner_alive = guard.owner_alive


def add_delay(delay_ms: int, version: str = "canary", percentage: float = 100.0, ttl_s: float = 600.0,
              admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Delay `percentage` % of a version's requests by `delay_ms` at the router (Istio fault.delay)."""
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": "delay", "delay_ms": int(delay_ms), "percentage": float(percentage)})


def add_abort(http_status: int = 503, version: str = "canary", percentage: float = 10.0, ttl_s: float = 600.0,
              admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Answer `percentage` % of a version's requests with `http_status` at the router (fault.abort)."""
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": "abort", "http_status": int(http_status), "percentage": float(percentage)})


def add_packet_loss(percentage: float = 10.0, version: str = "canary", dependency: str | None = None,
                    ttl_s: float = 600.0, admin_url: str | None = None,
                    configuration: Configuration = None) -> dict[str, Any]:
    """Drop `percentage` % of the TCP packets to and from a version's pods (or, with `dependency`,
    between them and their database/external service): an nftables table on lo. Needs root and nft."""
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": "loss", "percentage": float(percentage), **_dependency(dependency, optional=True)})


def add_partition(version: str = "canary", dependency: str | None = None, ttl_s: float = 600.0,
                  admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Cut a version's pods off the network (or, with `dependency`, from that dependency): every
    packet dropped by an nftables table on lo. Needs root and nft."""
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": "partition", **_dependency(dependency, optional=True)})


def add_cpu_stress(cpu_pct: float = 20.0, version: str = "canary", mechanism: str = "auto", ttl_s: float = 600.0,
                   admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Limit a version's pods to `cpu_pct` % of one CPU: a cgroup v1 CPU quota (`cgroup`), or busy
    processes pinned with them to one CPU (`busy`); `auto` takes the cgroup when it can."""
    if mechanism not in CPU_MECHANISMS:
        raise ActivityFailed(f"mechanism {mechanism!r} is not one of {', '.join(CPU_MECHANISMS)}")
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": "cpu", "cpu_pct": float(cpu_pct), "mechanism": mechanism})


def add_memory_limit(memory_mb: int = 64, version: str = "canary", ttl_s: float = 600.0,
                     admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Cap what a version's pods may newly allocate at `memory_mb` MiB (a cgroup v1 memory limit):
    past it the kernel reclaims, then OOM-kills the pod (the sandbox restarts it). Needs root."""
    return _fault(configuration, admin_url, version, ttl_s, {"kind": "memory", "memory_mb": int(memory_mb)})


def add_dependency_fault(dependency: str, mode: str = "failing", delay_ms: int | None = None,
                         version: str = "canary", ttl_s: float = 600.0, admin_url: str | None = None,
                         configuration: Configuration = None) -> dict[str, Any]:
    """Make a dependency (`database`, `external`) slow (`delay_ms` on each answer), failing (every
    connection cut) or unreachable (a black hole) for one version's pods only. Needs `sandbox up --deps`."""
    if mode not in DEPENDENCY_MODES:
        raise ActivityFailed(f"mode {mode!r} is not one of {', '.join(DEPENDENCY_MODES)}")
    if (mode == "slow") != (delay_ms is not None):
        raise ActivityFailed("delay_ms is required for mode slow, and only for it")
    return _fault(configuration, admin_url, version, ttl_s, {
        "kind": f"dependency-{mode}", **_dependency(dependency, optional=False),
        **({"delay_ms": int(delay_ms)} if delay_ms is not None else {})})


def _dependency(dependency: str | None, *, optional: bool) -> dict[str, str]:
    if dependency is None and optional:
        return {}
    if dependency not in DEPENDENCIES:
        raise ActivityFailed(f"dependency {dependency!r} is not one of {', '.join(DEPENDENCIES)}")
    return {"dependency": str(dependency)}


def remove_faults(version: str | None = None, admin_url: str | None = None,
                  configuration: Configuration = None) -> dict[str, Any]:
    """Remove this run's router faults (or its faults on one version); never another run's. Safe to repeat."""
    query = {"run": guard.active().run_id, **({"version": version} if version else {})}
    return _call("DELETE", "/faults?" + urllib.parse.urlencode(query), configuration, admin_url)


def list_faults(admin_url: str | None = None, configuration: Configuration = None) -> list[dict[str, Any]]:
    """Every fault on the sandbox, with its owner."""
    return list(_call("GET", "/faults", configuration, admin_url)["faults"])


def kill_pods(count: int = 1, version: str = "canary", restart_after_s: float = 2.0, admin_url: str | None = None,
              configuration: Configuration = None) -> list[str]:
    """Kill `count` pods of a version (SIGKILL); the sandbox starts new ones after `restart_after_s`."""
    guards = _guard(version)
    base = base_url(configuration, admin_url)
    longest = min(guard.MAX_RESTART_AFTER_S, guards.max_fault_s)
    try:
        if not 0 <= float(restart_after_s) <= longest:
            raise SafetyError(f"restart_after_s {restart_after_s} is not within 0-{longest:g}s (how long loadkit "
                              "waits to see the pod back)")
        available = running_pods(version, admin_url, configuration)
        guards.kill_quantity(int(count), available)
        kill = guards.kills.reserve(f"the sandbox's {version}", available, int(count), guards.max_kill_share,
                                    {"sandbox": {"base": base, "version": version}})
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None
    answer = _call("POST", "/pods/kill", configuration, admin_url, {
        "version": version, "count": int(count), "restart_after_s": float(restart_after_s)})
    kill.killed.extend(str(name) for name in answer["killed"])
    return list(answer["killed"])


def wait_for_pods(version: str = "canary", timeout_s: float = 60.0, admin_url: str | None = None,
                  configuration: Configuration = None) -> bool:
    """Wait until every pod of a version is alive again (a rollback that restores capacity)."""
    timeout_s = min(float(timeout_s), guard.active().max_fault_s)
    deadline = time.monotonic() + timeout_s
    while True:
        pods = [p for p in _pods(configuration, admin_url) if p["version"] == version]
        if pods and all(p["alive"] for p in pods):
            return True
        if time.monotonic() > deadline:
            raise ActivityFailed(f"{version} pods not all back after {timeout_s:g}s: {pods}")
        time.sleep(0.2)


def remove_run_faults(run_id: str, attempts: int = 4) -> tuple[list[str], list[str]]:
    """Remove the faults `run_id` created that are still in place, on every sandbox it asked for
    one, retrying while a sandbox is unreachable. Returns (removed, what could not be removed or
    checked): a fault is "removed" only once the sandbox lists it no more."""
    unanswered = _unanswered.get(run_id)
    if unanswered is not None and (wait := unanswered + SETTLE_S - time.time()) > 0:
        time.sleep(wait)  # a request in flight when it was given up on is served by now
    removed: list[str] = []
    failed: list[str] = []
    query = "?" + urllib.parse.urlencode({"run": run_id})
    for base in sorted(_touched.get(run_id, set())):
        error, here = "", dict[str, str]()
        for attempt in range(attempts):
            try:
                present = _call("GET", f"/faults{query}", None, base, timeout=5)["faults"]
                if present:
                    _call("DELETE", f"/faults{query}", None, base, timeout=5)
                    here |= {f["id"]: f"sandbox fault {f['id']} ({f['kind']} on {f['version']})" for f in present}
                if not _call("GET", f"/faults{query}", None, base, timeout=5)["faults"]:
                    removed += here.values()
                    break
                error = "still listed after the delete"
            except ActivityFailed as exc:
                error = str(exc)
            if attempt + 1 < attempts:
                time.sleep(0.5 * 2 ** attempt)
        else:
            failed.append(f"the faults of run {run_id} on the sandbox {base} ({error}); remove them with: loadkit "
                          f"chaos cleanup --sandbox {base} --run {run_id}")
    return removed, failed


def fault_present(fault_id: str, admin_url: str | None = None, configuration: Configuration = None) -> bool:
    return any(f["id"] == fault_id for f in _call("GET", "/faults", configuration, admin_url)["faults"])


def delete_fault(fault_id: str, admin_url: str) -> None:
    """Remove one fault by id (a leftover whose owner is gone); not an experiment activity."""
    _call("DELETE", f"/faults/{urllib.parse.quote(fault_id)}", None, admin_url)


def pods_back(kill: guard.Kill) -> bool:
    """Every pod of the version is alive again, as many as before the kill."""
    spec = kill.restore["sandbox"]
    pods = [p for p in _pods(None, spec["base"]) if p["version"] == spec["version"]]
    return bool(pods) and all(p["alive"] for p in pods) and len(pods) >= kill.baseline


def running_pods(version: str, admin_url: str | None = None, configuration: Configuration = None) -> int:
    return sum(1 for p in _pods(configuration, admin_url) if p["version"] == version and p["alive"])


def base_url(configuration: Configuration = None, admin_url: str | None = None) -> str:
    url = admin_url or (configuration or {}).get("loadkit_sandbox_admin_url") \
        or guard.active().sandbox_admin_url or os.environ.get(guard.SANDBOX_ENV)
    if not url:
        raise ActivityFailed("no sandbox admin URL: pass admin_url, or set the configuration key "
                             "loadkit_sandbox_admin_url (or LOADKIT_SANDBOX_ADMIN_URL)")
    return str(url).rstrip("/")


def _fault(configuration: Configuration, admin_url: str | None, version: str, ttl_s: float,
           spec: dict[str, Any]) -> dict[str, Any]:
    guards = _guard(version)
    try:
        guards.check_fault_length(float(ttl_s), "ttl_s")
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None
    base = base_url(configuration, admin_url)
    try:
        guards.check_sandbox_url(base)
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None
    _touched.setdefault(guards.run_id, set()).add(base)  # before the call: a lost answer may still have made it
    guards.expiries.append(time.time() + float(ttl_s))
    try:
        return _call("POST", "/faults", configuration, admin_url, {
            **spec, "version": version, "ttl_s": float(ttl_s), "owner": dict(guards.owner)})
    except BaseException:  # no answer (an error, a Ctrl-C in flight): the fault may exist all the same
        _unanswered[guards.run_id] = time.time()
        raise


def _guard(version: str) -> guard.Guards:
    if version not in VERSIONS:
        raise ActivityFailed(f"version {version!r} is not one of {', '.join(VERSIONS)}")
    guards = guard.active()
    try:
        guards.check_not_primary("", version)
    except SafetyError as exc:
        raise ActivityFailed(str(exc)) from None
    return guards


def _pods(configuration: Configuration, admin_url: str | None) -> list[dict[str, Any]]:
    return list(_call("GET", "/pods", configuration, admin_url)["pods"])


def _call(method: str, path: str, configuration: Configuration, admin_url: str | None,
          body: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
    base = base_url(configuration, admin_url)
    try:
        guard.active().check_sandbox_url(base)
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None
    try:
        response = httpcalls.request(method, base + path, json=body, timeout=timeout)  # redirects are not followed
    except httpx.HTTPError as exc:
        raise ActivityFailed(f"cannot reach the sandbox admin API at {base}: {exc}") from None
    if not response.is_success:
        raise ActivityFailed(f"sandbox {method} {path} answered {response.status_code}: {response.text}")
    return dict(response.json()) if response.content else {}
