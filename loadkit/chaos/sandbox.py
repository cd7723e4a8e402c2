"""Chaos Toolkit actions against the local sandbox (`loadkit sandbox up`): pod kills and
router faults (delay, abort), all removable, all guarded.

The sandbox's admin URL comes from the argument `admin_url`, the configuration key
`loadkit_sandbox_admin_url`, or the LOADKIT_SANDBOX_ADMIN_URL environment variable.

    method:
      - type: action
        name: add-600ms-to-the-canary
        provider: {type: python, module: loadkit.chaos.sandbox, func: add_delay,
                   arguments: {version: canary, delay_ms: 600}}
    rollbacks:
      - type: action
        name: remove-faults
        provider: {type: python, module: loadkit.chaos.sandbox, func: remove_faults}
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from loadkit.chaos.guards import Guards
from loadkit.errors import SafetyError

__all__ = ["add_abort", "add_delay", "kill_pods", "list_faults", "remove_faults", "wait_for_pods"]

VERSIONS = ("canary", "primary")

# Faults created in this process, by run (configuration loadkit_run_id): what `loadkit chaos run`
# removes if the experiment's rollbacks did not. Never other runs' or people's faults.
_created: dict[str, list[tuple[str, str]]] = {}


def add_delay(delay_ms: int, version: str = "canary", percentage: float = 100.0, ttl_s: float = 600.0,
              admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Delay `percentage` % of a version's requests by `delay_ms` at the router (Istio fault.delay)."""
    _guard(version, configuration)
    return _remember(configuration, admin_url, _call("POST", "/faults", configuration, admin_url, {
        "version": version, "kind": "delay", "delay_ms": int(delay_ms), "percentage": float(percentage),
        "ttl_s": float(ttl_s)}))


def add_abort(http_status: int = 503, version: str = "canary", percentage: float = 10.0, ttl_s: float = 600.0,
              admin_url: str | None = None, configuration: Configuration = None) -> dict[str, Any]:
    """Answer `percentage` % of a version's requests with `http_status` at the router (fault.abort)."""
    _guard(version, configuration)
    return _remember(configuration, admin_url, _call("POST", "/faults", configuration, admin_url, {
        "version": version, "kind": "abort", "http_status": int(http_status), "percentage": float(percentage),
        "ttl_s": float(ttl_s)}))


def remove_faults(version: str | None = None, admin_url: str | None = None,
                  configuration: Configuration = None) -> dict[str, Any]:
    """Remove every router fault (or one version's). Safe to call when there are none."""
    query = f"?version={version}" if version else ""
    return _call("DELETE", f"/faults{query}", configuration, admin_url)


def list_faults(admin_url: str | None = None, configuration: Configuration = None) -> list[dict[str, Any]]:
    return list(_call("GET", "/faults", configuration, admin_url)["faults"])


def kill_pods(count: int = 1, version: str = "canary", restart_after_s: float = 2.0, admin_url: str | None = None,
              configuration: Configuration = None) -> list[str]:
    """Kill `count` pods of a version (SIGKILL); the sandbox starts new ones after `restart_after_s`."""
    guards = _guard(version, configuration)
    try:
        guards.kill_quantity(int(count), running_pods(version, admin_url, configuration))
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None
    answer = _call("POST", "/pods/kill", configuration, admin_url, {
        "version": version, "count": int(count), "restart_after_s": float(restart_after_s)})
    return list(answer["killed"])


def wait_for_pods(version: str = "canary", timeout_s: float = 60.0, admin_url: str | None = None,
                  configuration: Configuration = None) -> bool:
    """Wait until every pod of a version is alive again (a rollback that restores capacity)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pods = [p for p in _pods(configuration, admin_url) if p["version"] == version]
        if pods and all(p["alive"] for p in pods):
            return True
        if time.monotonic() > deadline:
            raise ActivityFailed(f"{version} pods not all back after {timeout_s:g}s: {pods}")
        time.sleep(0.2)


def remove_run_faults(run_id: str) -> list[str]:
    """Remove the faults this process created for `run_id` that are still in place."""
    removed = []
    for base, fault_id in _created.pop(run_id, []):
        try:
            present = {f["id"]: f for f in _call("GET", "/faults", None, base)["faults"]}
            if fault_id in present:
                _call("DELETE", f"/faults/{fault_id}", None, base)
                fault = present[fault_id]
                removed.append(f"sandbox fault {fault_id} ({fault['kind']} on {fault['version']})")
        except ActivityFailed as exc:
            removed.append(f"sandbox fault {fault_id}: could not be checked ({exc})")
    return removed


def running_pods(version: str, admin_url: str | None = None, configuration: Configuration = None) -> int:
    return sum(1 for p in _pods(configuration, admin_url) if p["version"] == version and p["alive"])


def _remember(configuration: Configuration, admin_url: str | None, fault: dict[str, Any]) -> dict[str, Any]:
    run = str((configuration or {}).get("loadkit_run_id", ""))
    if run:
        _created.setdefault(run, []).append((_base(configuration, admin_url), str(fault["id"])))
    return fault


def _guard(version: str, configuration: Configuration) -> Guards:
    if version not in VERSIONS:
        raise ActivityFailed(f"version {version!r} is not one of {', '.join(VERSIONS)}")
    guards = Guards.from_configuration(configuration)
    try:
        guards.check_not_primary("", version)
    except SafetyError as exc:
        raise ActivityFailed(str(exc)) from None
    return guards


def _pods(configuration: Configuration, admin_url: str | None) -> list[dict[str, Any]]:
    return list(_call("GET", "/pods", configuration, admin_url)["pods"])


def _base(configuration: Configuration, admin_url: str | None) -> str:
    url = admin_url or (configuration or {}).get("loadkit_sandbox_admin_url") \
        or os.environ.get("LOADKIT_SANDBOX_ADMIN_URL")
    if not url:
        raise ActivityFailed("no sandbox admin URL: pass admin_url, or set the configuration key "
                             "loadkit_sandbox_admin_url (or LOADKIT_SANDBOX_ADMIN_URL)")
    return str(url).rstrip("/")


def _call(method: str, path: str, configuration: Configuration, admin_url: str | None,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = _base(configuration, admin_url) + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise ActivityFailed(f"sandbox {method} {path} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ActivityFailed(f"cannot reach the sandbox admin API at {url}: {exc}") from None
