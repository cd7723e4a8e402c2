"""Chaos Toolkit actions for Kubernetes (Flagger + Istio), guarded and always removable.

- Pod kill: chaosk8s `terminate_pods` on the canary's pods only (`app=<name>`, Flagger's label
  for the canary Deployment), never the primary unless allowed, never all of them.
- Latency and aborts: a loadkit-owned Istio VirtualService with a `fault` block, for the canary
  Service's host (`<name>-canary.<ns>.svc.cluster.local`) or, with `sourceLabels`, for a
  dependency as the canary calls it. Flagger's own VirtualService is never touched: Flagger
  rewrites it on every reconcile, and it carries primary traffic too.
- Every object loadkit creates is labelled `app.kubernetes.io/managed-by: loadkit`, with the
  canary and the run, and annotated with an expiry, so `remove_faults` (rollbacks) and
  `loadkit chaos cleanup` find every leftover.

Credentials: as chaosk8s (kubeconfig, in-cluster, or KUBERNETES_HOST and friends).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from loadkit.chaos import guards as guard
from loadkit.chaos.guards import Guards, check_canary_host, check_selector
from loadkit.errors import SafetyError
from loadkit.units import parse_duration

__all__ = ["add_canary_abort", "add_canary_delay", "add_dependency_abort", "kill_canary_pods", "list_faults",
           "remove_faults", "wait_for_canary_pods"]

MANAGED_BY = "app.kubernetes.io/managed-by"
CANARY_LABEL = "loadkit.io/canary"
RUN_LABEL = "loadkit.io/run"
EXPIRES = "loadkit.io/expires-at"
GROUP, VERSION, PLURAL = "networking.istio.io", "v1beta1", "virtualservices"

# Namespaces this process created objects in, by run: where its last-chance clean-up looks
# (namespace by namespace: the shipped RBAC is namespace-scoped).
_touched: dict[str, set[str]] = {}


def kill_canary_pods(name: str, ns: str, qty: int = 1, mode: str = "fixed", grace_period: int = 0,
                     configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Terminate `qty` (or `qty` %) of the canary's pods, chosen at random; returns their names."""
    from chaosk8s.pod.actions import terminate_pods

    guards = _guards(ns, name)
    selector = f"app={name}"
    _safely(check_selector, selector)
    pods = running_pods(selector, ns, secrets)
    primary = [p.metadata.name for p in pods if guard.is_primary_pod(p)]
    if primary and not guards.allow_primary:
        raise ActivityFailed(f"refused by loadkit's safety guards: app={name} matches primary pods {primary[:3]}")
    count = _safely(guards.kill_quantity, int(qty), len(pods), mode)
    killed = terminate_pods(label_selector=selector, ns=ns, qty=count, mode="fixed", rand=True,
                            grace_period=grace_period, secrets=secrets)
    return list(killed or [])


def wait_for_canary_pods(name: str, ns: str, count: int | None = None, timeout_s: float = 120.0,
                         secrets: Secrets = None) -> int:
    """Wait until the canary Deployment's pods (`count`, default its spec.replicas) are Running and
    Ready again: a restoring rollback."""
    import time

    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    wanted = count
    if wanted is None:
        deployment = client.AppsV1Api(create_k8s_api_client(secrets)).read_namespaced_deployment(name, ns)
        wanted = int(deployment.spec.replicas or 0)
    deadline = time.monotonic() + timeout_s
    while True:
        ready = running_pods(f"app={name}", ns, secrets)
        if len(ready) >= wanted:
            return len(ready)
        if time.monotonic() > deadline:
            raise ActivityFailed(f"only {len(ready)} of {wanted} canary pods ready after {timeout_s:g}s")
        time.sleep(0.5)


def running_pods(selector: str, ns: str, secrets: Secrets = None, name_pattern: str | None = None) -> list[Any]:
    """Pods that match, are Running and Ready, and are not being deleted: what a kill can take."""
    pods = _core(secrets).list_namespaced_pod(ns, label_selector=selector).items
    pattern = re.compile(name_pattern) if name_pattern else None
    return [p for p in pods
            if p.status and p.status.phase == "Running" and _ready(p) and not p.metadata.deletion_timestamp
            and (pattern is None or pattern.search(p.metadata.name))]


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions) or not conditions


def add_canary_delay(name: str, ns: str, delay: str = "600ms", percentage: float = 100.0,
                     host: str | None = None, expires_in: str = "15m", configuration: Configuration = None,
                     secrets: Secrets = None) -> str:
    """Delay requests to the canary Service by `delay` (`percentage` % of them)."""
    fault = {"delay": {"fixedDelay": _istio_duration(delay), "percentage": {"value": float(percentage)}}}
    return _create_fault(name, ns, "delay", host or _canary_host(name, ns), fault, None, expires_in,
                         configuration, secrets)


def add_canary_abort(name: str, ns: str, http_status: int = 503, percentage: float = 10.0,
                     host: str | None = None, expires_in: str = "15m", configuration: Configuration = None,
                     secrets: Secrets = None) -> str:
    """Answer `percentage` % of requests to the canary Service with `http_status`."""
    fault = {"abort": {"httpStatus": int(http_status), "percentage": {"value": float(percentage)}}}
    return _create_fault(name, ns, "abort", host or _canary_host(name, ns), fault, None, expires_in,
                         configuration, secrets)


def add_dependency_abort(name: str, ns: str, host: str, http_status: int = 503, percentage: float = 10.0,
                         expires_in: str = "15m", configuration: Configuration = None,
                         secrets: Secrets = None) -> str:
    """Make a dependency fail for the canary only: `sourceLabels: {app: <name>}` keeps the primary's
    calls to the same host untouched."""
    fault = {"abort": {"httpStatus": int(http_status), "percentage": {"value": float(percentage)}}}
    return _create_fault(name, ns, "dependency-abort", host, fault, {"app": name}, expires_in,
                         configuration, secrets)


def remove_faults(name: str | None = None, ns: str | None = None, configuration: Configuration = None,
                  secrets: Secrets = None) -> list[str]:
    """Delete this run's loadkit VirtualServices in `ns` (of one canary, or all of them); never another
    run's. Safe to repeat."""
    if not ns:
        raise ActivityFailed("remove_faults needs ns: loadkit cleans up namespace by namespace")
    selector = f"{MANAGED_BY}=loadkit,{RUN_LABEL}={_run_label()}" + (f",{CANARY_LABEL}={name}" if name else "")
    return _delete_matching(selector, ns, secrets)


def list_faults(ns: str, secrets: Secrets = None) -> list[dict[str, Any]]:
    """loadkit's VirtualServices in `ns`."""
    return _listed(_custom(secrets), f"{MANAGED_BY}=loadkit", ns)


def cleanup(ns: str | None = None, secrets: Secrets = None, expired_only: bool = False,
            run: str | None = None) -> list[str]:
    """Delete loadkit's objects (in `ns`, or in every namespace when allowed): `loadkit chaos cleanup`."""
    selector = f"{MANAGED_BY}=loadkit" + (f",{RUN_LABEL}={run[:63]}" if run else "")
    return _delete_matching(selector, ns, secrets, expired_only=expired_only)


def delete_run_faults(run_id: str, secrets: Secrets = None) -> list[str]:
    """Delete what one `loadkit chaos run` created, in each namespace it created something in."""
    removed = []
    for ns in sorted(_touched.pop(run_id, set())):
        removed += _delete_matching(f"{MANAGED_BY}=loadkit,{RUN_LABEL}={run_id[:63]}", ns, secrets)
    return removed


def service_selector(service: str, ns: str, secrets: Secrets = None) -> str:
    """A Service's pod selector as a label selector string ("" when it selects nothing)."""
    spec = _core(secrets).read_namespaced_service(service, ns).spec
    return ",".join(f"{k}={v}" for k, v in sorted((spec.selector or {}).items()))


def active_faults(name: str, ns: str, secrets: Secrets = None) -> list[dict[str, Any]]:
    """Unexpired loadkit faults on a canary: another run is (or was, killed) at work on it."""
    now = datetime.now(UTC)
    return [vs for vs in _listed(_custom(secrets), f"{MANAGED_BY}=loadkit,{CANARY_LABEL}={name}", ns)
            if not _expired(vs, now)]


def _expired(item: dict[str, Any], now: datetime) -> bool:
    stamp = (item["metadata"].get("annotations") or {}).get(EXPIRES)
    try:
        return stamp is not None and datetime.fromisoformat(stamp) <= now
    except ValueError:
        return False


# -- helpers ----------------------------------------------------------------------------------------

def _create_fault(name: str, ns: str, kind: str, host: str, fault: dict[str, Any],
                  source_labels: dict[str, str] | None, expires_in: str, configuration: Configuration,
                  secrets: Secrets) -> str:
    guards = _guards(ns, name)
    if kind != "dependency-abort":
        _safely(check_canary_host, host, name, ns)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", host):
        raise ActivityFailed(f"host {host!r} is not a service host name")
    seconds = parse_duration(expires_in)
    _safely(guards.check_fault_length, seconds, "expires_in")
    route: dict[str, Any] = {"fault": fault, "route": [{"destination": {"host": host}}]}
    if source_labels:
        route["match"] = [{"sourceLabels": source_labels}]
    run = _run_label()
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    tag = hashlib.sha256(run.encode()).hexdigest()[:6]
    vs_name = f"loadkit-{kind}-{name}"[:56].rstrip("-") + f"-{tag}"  # one per run: never a name clash
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
        "metadata": {"name": vs_name, "namespace": ns,
                     "labels": {MANAGED_BY: "loadkit", CANARY_LABEL: name, RUN_LABEL: run[:63]},
                     "annotations": {EXPIRES: expires.isoformat(timespec="seconds")}},
        "spec": {"hosts": [host], "http": [route]},
    }
    from kubernetes.client.rest import ApiException

    _touched.setdefault(guards.run_id, set()).add(ns)  # before the call: a timeout may still have created it
    try:
        _custom(secrets).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    except ApiException as exc:
        raise ActivityFailed(f"could not create VirtualService {ns}/{vs_name}: {exc.status} {exc.reason}") from None
    return vs_name


def _delete_matching(selector: str, ns: str | None, secrets: Secrets, expired_only: bool = False) -> list[str]:
    from kubernetes.client.rest import ApiException

    api = _custom(secrets)
    removed = []
    now = datetime.now(UTC)
    for item in _listed(api, selector, ns):
        if expired_only and not _expired(item, now):
            continue
        meta = item["metadata"]
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
            removed.append(f"{meta['namespace']}/{meta['name']}")
        except ApiException as exc:
            if exc.status != 404:  # already gone is fine: removal is idempotent
                raise ActivityFailed(f"could not delete {meta['namespace']}/{meta['name']}: {exc.status}") from None
    return removed


def _listed(api: Any, selector: str, ns: str | None) -> list[dict[str, Any]]:
    if ns:
        return list(api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, label_selector=selector)["items"])
    return list(api.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector)["items"])


def _run_label() -> str:
    return guard.active().run_id[:63]


def _guards(ns: str, name: str) -> Guards:
    guards = guard.active()
    _safely(guards.check_namespace, ns)
    if not name:
        raise ActivityFailed("no canary name given")
    _safely(guards.check_not_primary, name)
    return guards


def _safely(check: Any, *args: Any) -> Any:
    try:
        return check(*args)
    except SafetyError as exc:
        raise ActivityFailed(f"refused by loadkit's safety guards: {exc}") from None


def _canary_host(name: str, ns: str) -> str:
    return f"{name}-canary.{ns}.svc.cluster.local"


def _istio_duration(text: str) -> str:
    """`600ms`, `1.5s` -> Istio's duration strings (seconds or milliseconds, no compounds)."""
    seconds = parse_duration(text)
    return f"{round(seconds * 1000)}ms" if seconds < 1 or seconds != int(seconds) else f"{int(seconds)}s"


def _core(secrets: Secrets) -> Any:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    return client.CoreV1Api(create_k8s_api_client(secrets))


def _custom(secrets: Secrets) -> Any:
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    return client.CustomObjectsApi(create_k8s_api_client(secrets))
