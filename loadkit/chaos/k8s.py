"""Chaos Toolkit actions for Kubernetes (Flagger + Istio), guarded and always removable.

- Pod kill: chaosk8s `terminate_pods` on the canary's pods only (`app=<name>`, Flagger's label
  for the canary Deployment), never the primary unless allowed, never all of them. The count is
  chaosk8s's own (`ceil(qty * pods / 100)` for a percentage of every pod it lists), and kills add
  up over a run against the share cap (`Guards.kills`). `terminate_pods` is chaosk8s's, guarded:
  `loadkit chaos run` runs it in place of `chaosk8s.pod.actions.terminate_pods`.
- Latency and aborts: a loadkit-owned Istio VirtualService with a `fault` block, for the canary
  Service's host (`<name>-canary.<ns>.svc.cluster.local`) or, with `sourceLabels`, for a
  dependency as the canary calls it (with a plain route for every other caller). Flagger's own
  VirtualService is never touched: Flagger rewrites it on every reconcile, and it carries primary
  traffic too. Each fault is its own object, so two faults of a run never clash.
- Every object loadkit creates is labelled `app.kubernetes.io/managed-by: loadkit`, with the
  canary and the run, and annotated with an expiry and its owner (run, pid, host), so
  `remove_faults` (rollbacks) and `loadkit chaos cleanup` find every leftover and never remove a
  live run's fault before it expires.

Credentials: as chaosk8s (kubeconfig, in-cluster, or KUBERNETES_HOST and friends).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from loadkit.chaos import guards as guard
from loadkit.chaos.guards import Guards, Kill, check_canary_host, check_dependency_host, check_selector
from loadkit.errors import SafetyError
from loadkit.units import parse_duration

__all__ = ["add_canary_abort", "add_canary_delay", "add_canary_network_fault", "add_canary_stress",
           "add_dependency_abort", "add_dependency_delay", "kill_canary_pods", "list_faults", "remove_faults",
           "terminate_pods", "wait_for_canary_pods"]

MANAGED_BY = "app.kubernetes.io/managed-by"
CANARY_LABEL = "loadkit.io/canary"
RUN_LABEL = "loadkit.io/run"
EXPIRES = "loadkit.io/expires-at"
OWNER = "loadkit.io/owner"
GROUP, VERSION, PLURAL = "networking.istio.io", "v1beta1", "virtualservices"
CHAOS_MESH = "chaos-mesh.org", "v1alpha1"
# What loadkit creates, by kind: (group, version, plural). Lists and deletes walk all of them.
KINDS = {"VirtualService": (GROUP, VERSION, PLURAL), "NetworkChaos": (*CHAOS_MESH, "networkchaos"),
         "StressChaos": (*CHAOS_MESH, "stresschaos")}
NETWORK_ACTIONS = ("loss", "delay", "partition")

# Namespaces this process created objects in, by run: where its last-chance clean-up looks
# (namespace by namespace: the shipped RBAC is namespace-scoped).
_touched: dict[str, set[str]] = {}
_sequence = itertools.count(1)  # each fault of a run gets its own VirtualService


@dataclass(frozen=True)
class KillPlan:
    matched: list[Any]  # every pod chaosk8s lists for the selector (Terminating and Pending ones too)
    live: list[Any]  # of those, Running, Ready and not being deleted
    count: int  # how many chaosk8s will delete


def kill_canary_pods(name: str, ns: str, qty: float = 1, mode: str = "fixed", grace_period: int = 0,
                     configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Terminate `qty` (or `qty` %) of the canary's pods, chosen at random; returns their names."""
    _guards(ns, name)
    return _kill(f"app={name}", ns, None, qty, mode, rand=True, order="alphabetic", grace_period=grace_period,
                 secrets=secrets)


def terminate_pods(label_selector: str | None = None, name_pattern: str | None = None, all: bool = False,
                   rand: bool = False, mode: str = "fixed", qty: float = 1, grace_period: int = -1,
                   ns: str | None = None, order: str = "alphabetic", secrets: Secrets = None) -> list[str]:
    """chaosk8s's `terminate_pods`, guarded (`loadkit chaos run` runs this in its place): a selector
    with values, never `all`, an explicit namespace, no primary pod, and within the kill cap."""
    guards = guard.active()
    _safely(check_selector, label_selector, name_pattern)
    if all is not False:
        raise ActivityFailed("refused by loadkit's safety guards: all: true kills every matching pod")
    _safely(guards.check_namespace, ns)
    _safely(guards.check_not_primary, f"{label_selector} {name_pattern or ''}")
    return _kill(str(label_selector), str(ns), name_pattern, qty, mode, rand=rand, order=order,
                 grace_period=grace_period, secrets=secrets)


def kill_plan(selector: str, ns: str, name_pattern: str | None, qty: Any, mode: str, guards: Guards,
              secrets: Secrets = None) -> KillPlan:
    """What a kill would take today, as chaosk8s counts it; SafetyError if any matched pod is the
    primary's or the count is over the cap of the live pods."""
    listed = _core(secrets).list_namespaced_pod(ns, label_selector=selector).items
    pattern = re.compile(name_pattern) if name_pattern else None
    matched = [p for p in listed if pattern is None or pattern.search(p.metadata.name)]
    live = [p for p in matched if _running(p)]
    primary = [p.metadata.name for p in matched if guard.is_primary_pod(p)]
    if primary and not guards.allow_primary:
        raise SafetyError(f"label_selector {selector!r}" + (f" with name_pattern {name_pattern!r}" if name_pattern
                          else "") + f" matches primary pods ({', '.join(primary[:3])})",
                          hint="select the canary only")
    count = guards.kill_quantity(float(qty), len(live), mode, matched=len(matched))
    return KillPlan(matched, live, count)


def _kill(selector: str, ns: str, name_pattern: str | None, qty: Any, mode: str, *, rand: bool, order: str,
          grace_period: int, secrets: Secrets) -> list[str]:
    from chaosk8s.pod.actions import terminate_pods as chaosk8s_terminate_pods

    guards = guard.active()
    plan = _safely(kill_plan, selector, ns, name_pattern, qty, mode, guards, secrets)
    kills: list[Kill] = []
    for workload in sorted({workload_of(p) for p in plan.live}):
        live = sum(1 for p in plan.live if workload_of(p) == workload)
        listed = sum(1 for p in plan.matched if workload_of(p) == workload)
        restore = {"ns": ns, "selector": selector, "workload": workload}
        kills.append(_safely(guards.kills.reserve, f"{ns}/{workload}", live, min(plan.count, listed),
                             guards.max_kill_share, {"k8s": restore}))
    killed = chaosk8s_terminate_pods(label_selector=selector, name_pattern=name_pattern, rand=rand, mode="fixed",
                                     qty=plan.count, grace_period=grace_period, ns=ns, order=order, secrets=secrets)
    names = [str(n) for n in killed or []]
    for kill in kills:
        kill.killed.extend(names)
    return names


def workload_of(pod: Any) -> str:
    """The Deployment (or other controller) a pod belongs to: what a kill share is counted against."""
    for owner in getattr(pod.metadata, "owner_references", None) or []:
        if getattr(owner, "controller", False) or len(pod.metadata.owner_references) == 1:
            return str(owner.name).rsplit("-", 1)[0] if owner.kind == "ReplicaSet" else str(owner.name)
    labels = pod.metadata.labels or {}
    return str(labels.get("app") or pod.metadata.name)


def pods_back(kill: Kill, secrets: Secrets = None) -> bool:
    """The workload has as many Running and Ready pods as before the kill."""
    spec = kill.restore["k8s"]
    pods = running_pods(spec["selector"], spec["ns"], secrets)
    return sum(1 for p in pods if workload_of(p) == spec["workload"]) >= kill.baseline


def pods_going(names: list[str], ns: str, secrets: Secrets = None) -> list[str]:
    """Of these pods, those deleted or being deleted (a kill took effect)."""
    from kubernetes.client.rest import ApiException

    going = []
    for name in names:
        try:
            pod = _core(secrets).read_namespaced_pod(name, ns)
        except ApiException as exc:
            if exc.status == 404:
                going.append(name)
                continue
            raise
        if pod.metadata.deletion_timestamp:
            going.append(name)
    return going


def wait_for_canary_pods(name: str, ns: str, count: int | None = None, timeout_s: float = 120.0,
                         secrets: Secrets = None) -> int:
    """Wait until the canary Deployment's pods (`count`, default its spec.replicas) are Running and
    Ready again: a restoring rollback. The wait is at most --max-fault-duration."""
    from chaosk8s import create_k8s_api_client
    from kubernetes import client

    wanted = count
    if wanted is None:
        deployment = client.AppsV1Api(create_k8s_api_client(secrets)).read_namespaced_deployment(name, ns)
        wanted = int(deployment.spec.replicas or 0)
    timeout_s = min(float(timeout_s), guard.active().max_fault_s)
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
    return [p for p in pods if _running(p) and (pattern is None or pattern.search(p.metadata.name))]


def _running(pod: Any) -> bool:
    return bool(pod.status and pod.status.phase == "Running" and _ready(pod) and not pod.metadata.deletion_timestamp)


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


def add_dependency_delay(name: str, ns: str, host: str, delay: str = "500ms", percentage: float = 100.0,
                         expires_in: str = "15m", configuration: Configuration = None,
                         secrets: Secrets = None) -> str:
    """Make a dependency slow for the canary only (`sourceLabels: {app: <name>}`, as add_dependency_abort)."""
    fault = {"delay": {"fixedDelay": _istio_duration(delay), "percentage": {"value": float(percentage)}}}
    return _create_fault(name, ns, "dependency-delay", host, fault, {"app": name}, expires_in,
                         configuration, secrets)


def add_canary_network_fault(name: str, ns: str, action: str = "loss", loss_pct: float = 10.0,
                             latency: str = "200ms", jitter: str | None = None, target_app: str | None = None,
                             direction: str = "to", pods_pct: float = 100.0, duration: str = "60s",
                             configuration: Configuration = None, secrets: Secrets = None) -> str:
    """A Chaos Mesh NetworkChaos on the canary's pods (`app=<name>`) only: `loss` (`loss_pct` % of
    packets), `delay` (`latency` ± `jitter`) or `partition` (from `target_app`'s pods). Always with
    `spec.duration` (Chaos Mesh restores it then by itself), labelled and annotated like every loadkit
    object. Needs Chaos Mesh in the cluster."""
    if action not in NETWORK_ACTIONS:
        raise ActivityFailed(f"action {action!r} is not one of {', '.join(NETWORK_ACTIONS)}")
    spec: dict[str, Any] = {"action": action, "direction": direction}
    if action == "loss":
        spec["loss"] = {"loss": f"{float(loss_pct):g}", "correlation": "0"}
    elif action == "delay":
        spec["delay"] = {"latency": _istio_duration(latency), "correlation": "0",
                         **({"jitter": _istio_duration(jitter)} if jitter else {})}
    if target_app is not None:
        spec["target"] = {"mode": "all", "selector": {"namespaces": [ns], "labelSelectors": {"app": target_app}}}
    elif action == "partition":
        raise ActivityFailed("a partition needs target_app: the app label of the pods to cut the canary off from")
    return _create_chaos(name, ns, "NetworkChaos", action, spec, pods_pct, duration, secrets)


def add_canary_stress(name: str, ns: str, cpu_workers: int = 1, cpu_load: int = 80, memory_workers: int = 0,
                      memory_size: str = "256MB", pods_pct: float = 100.0, duration: str = "60s",
                      configuration: Configuration = None, secrets: Secrets = None) -> str:
    """A Chaos Mesh StressChaos on the canary's pods only: `cpu_workers` at `cpu_load` % and/or
    `memory_workers` each taking `memory_size`. Always with `spec.duration`."""
    stressors: dict[str, Any] = {}
    if int(cpu_workers) > 0:
        stressors["cpu"] = {"workers": int(cpu_workers), "load": int(cpu_load)}
    if int(memory_workers) > 0:
        stressors["memory"] = {"workers": int(memory_workers), "size": str(memory_size)}
    if not stressors:
        raise ActivityFailed("no stressor: give cpu_workers or memory_workers above 0")
    return _create_chaos(name, ns, "StressChaos", "stress", {"stressors": stressors}, pods_pct, duration, secrets)


def chaos_object_exists(kind: str, obj_name: str, ns: str, secrets: Secrets = None) -> bool:
    group, version, plural = KINDS[kind]
    return _exists(group, version, plural, obj_name, ns, secrets)


def _exists(group: str, version: str, plural: str, obj_name: str, ns: str, secrets: Secrets) -> bool:
    """The custom object is there (404: it is not; any other API error is raised)."""
    from kubernetes.client.rest import ApiException

    try:
        _custom(secrets).get_namespaced_custom_object(group, version, ns, plural, obj_name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def chaos_body(name: str, ns: str, kind: str, tag: str, spec: dict[str, Any], pods_pct: float, seconds: float,
               guards: Guards) -> dict[str, Any]:
    """The whole Chaos Mesh object: loadkit's labels and annotations, the canary's pods as the
    selector, `mode: all` (or `fixed-percent`), and `spec.duration` always."""
    run = _run_label()
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    digest = hashlib.sha256(run.encode()).hexdigest()[:6]
    obj_name = f"loadkit-{tag}-{name}"[:44].rstrip("-") + f"-{digest}-{next(_sequence)}"
    mode = {"mode": "all"} if float(pods_pct) >= 100 else {"mode": "fixed-percent", "value": f"{float(pods_pct):g}"}
    return {
        "apiVersion": "/".join(CHAOS_MESH), "kind": kind,
        "metadata": {"name": obj_name, "namespace": ns,
                     "labels": {MANAGED_BY: "loadkit", CANARY_LABEL: name, RUN_LABEL: run},
                     "annotations": {EXPIRES: expires.isoformat(timespec="seconds"),
                                     OWNER: json.dumps(dict(guards.owner), sort_keys=True)}},
        "spec": {**spec, **mode, "selector": {"namespaces": [ns], "labelSelectors": {"app": name}},
                 "duration": f"{int(seconds)}s" if seconds == int(seconds) else f"{round(seconds * 1000)}ms"},
    }


def _create_chaos(name: str, ns: str, kind: str, tag: str, spec: dict[str, Any], pods_pct: float, duration: str,
                  secrets: Secrets) -> str:
    from chaosk8s.crd.actions import create_custom_object

    guards = _guards(ns, name)
    target = (spec.get("target") or {}).get("selector", {}).get("labelSelectors", {}).get("app")
    if target is not None:
        _safely(guards.check_not_primary, str(target))
    seconds = parse_duration(duration)
    _safely(guards.check_fault_length, seconds, "duration")
    body = chaos_body(name, ns, kind, tag, spec, pods_pct, seconds, guards)
    group, version, plural = KINDS[kind]
    _touched.setdefault(guards.run_id, set()).add(ns)  # before the call: a timeout may still have created it
    created = create_custom_object(group, version, plural, ns=ns, resource=body, secrets=secrets)
    if (created.get("metadata") or {}).get("uid") is None or \
            (created["metadata"].get("labels") or {}).get(RUN_LABEL) != body["metadata"]["labels"][RUN_LABEL]:
        raise ActivityFailed(f"{kind} {ns}/{body['metadata']['name']} exists but is not this run's")  # a 409
    return str(body["metadata"]["name"])


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


def fault_exists(vs_name: str, ns: str, secrets: Secrets = None) -> bool:
    return _exists(GROUP, VERSION, PLURAL, vs_name, ns, secrets)


def cleanup(ns: str | None = None, secrets: Secrets = None, expired_only: bool = False,
            run: str | None = None) -> tuple[list[str], list[str]]:
    """`loadkit chaos cleanup`: delete loadkit's objects (in `ns`, or in every namespace when
    allowed): those past their expiry, those whose run is proven gone, those of `run` (named
    explicitly), and those with no owner (nobody's run). One whose run may still be going is kept
    (and said so). Returns (removed, kept)."""
    selector = f"{MANAGED_BY}=loadkit" + (f",{RUN_LABEL}={run[:63]}" if run else "")
    api, now = _custom(secrets), datetime.now(UTC)
    removed, kept = [], []
    for item in _listed(api, selector, ns):
        why = None if run or _expired(item, now) else _keep_because(item, expired_only)
        meta = item["metadata"]
        if why:
            if not expired_only:
                kept.append(f"kept {item.get('kind', 'VirtualService')} {meta['namespace']}/{meta['name']}: {why}")
            continue
        if _delete(api, meta, item.get("kind")):
            removed.append(f"{meta['namespace']}/{meta['name']}")
    return removed, kept


def _keep_because(item: dict[str, Any], expired_only: bool) -> str | None:
    """Why a loadkit object that has not expired must stay (None: it may go)."""
    if expired_only:
        return "not expired"
    owner = owner_of(item)
    if not owner:
        return None  # nobody's run: a leftover anyone may remove
    alive = guard.owner_alive(owner)
    if alive is False:
        return None
    run, expires = owner.get("run", "?"), (item["metadata"].get("annotations") or {}).get(EXPIRES, "?")
    state = "is still going" if alive else (f"may still be going (pid {owner.get('pid')} on {owner.get('host')}, "
                                            "which this machine cannot check)")
    return f"its run {run} {state}; it expires at {expires} (remove it now with --run {run})"


def owner_of(item: dict[str, Any]) -> dict[str, Any]:
    raw = (item["metadata"].get("annotations") or {}).get(OWNER)
    try:
        owner = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def delete_run_faults(run_id: str, secrets: Secrets = None, attempts: int = 4) -> tuple[list[str], list[str]]:
    """Delete what one `loadkit chaos run` created, in each namespace it created something in,
    retrying while the API is unreachable. Returns (removed, what could not be removed)."""
    removed, failed = [], []
    selector = f"{MANAGED_BY}=loadkit,{RUN_LABEL}={run_id[:63]}"
    for ns in sorted(_touched.get(run_id, set())):
        error = ""
        for attempt in range(attempts):
            try:
                removed += _delete_matching(selector, ns, secrets)
                if not _listed(_custom(secrets), selector, ns):
                    break
                error = "it is still listed after the delete"
            except Exception as exc:  # the API is unreachable or refused: retry, then say so
                error = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                time.sleep(0.5 * 2 ** attempt)
        else:
            failed.append(f"this run's VirtualServices in {ns} ({error}); remove them with: loadkit chaos cleanup "
                          f"--namespace {ns} --run {run_id}")
    return removed, failed


def service_selector(service: str, ns: str, secrets: Secrets = None) -> str:
    """A Service's pod selector as a label selector string ("" when it selects nothing)."""
    spec = _core(secrets).read_namespaced_service(service, ns).spec
    return ",".join(f"{k}={v}" for k, v in sorted((spec.selector or {}).items()))


def active_faults(name: str, ns: str, secrets: Secrets = None) -> list[dict[str, Any]]:
    """Unexpired loadkit faults on a canary: another run is (or was, killed) at work on it."""
    now = datetime.now(UTC)
    return [vs for vs in _listed(_custom(secrets), f"{MANAGED_BY}=loadkit,{CANARY_LABEL}={name}", ns)
            if not _expired(vs, now)]


def delete(item: dict[str, Any], secrets: Secrets = None) -> bool:
    return _delete(_custom(secrets), item["metadata"], item.get("kind"))


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
    if kind in ("dependency-abort", "dependency-delay"):
        host = _safely(check_dependency_host, host, name, ns, guards)
    else:
        _safely(check_canary_host, host, name, ns)
    seconds = parse_duration(expires_in)
    _safely(guards.check_fault_length, seconds, "expires_in")
    routes: list[dict[str, Any]] = [{"fault": fault, "route": [{"destination": {"host": host}}]}]
    if source_labels:
        routes[0]["match"] = [{"sourceLabels": source_labels}]
        routes.append({"route": [{"destination": {"host": host}}]})  # every other caller: as without the fault
    run = _run_label()
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    tag = hashlib.sha256(run.encode()).hexdigest()[:6]
    vs_name = f"loadkit-{kind}-{name}"[:44].rstrip("-") + f"-{tag}-{next(_sequence)}"  # one per fault
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
        "metadata": {"name": vs_name, "namespace": ns,
                     "labels": {MANAGED_BY: "loadkit", CANARY_LABEL: name, RUN_LABEL: run[:63]},
                     "annotations": {EXPIRES: expires.isoformat(timespec="seconds"),
                                     OWNER: json.dumps(dict(guards.owner), sort_keys=True)}},
        "spec": {"hosts": [host], "http": routes},
    }
    from kubernetes.client.rest import ApiException

    _touched.setdefault(guards.run_id, set()).add(ns)  # before the call: a timeout may still have created it
    guards.expiries.append(expires.timestamp())
    try:
        _custom(secrets).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    except ApiException as exc:
        raise ActivityFailed(f"could not create VirtualService {ns}/{vs_name}: {exc.status} {exc.reason}") from None
    return vs_name


def _delete_matching(selector: str, ns: str | None, secrets: Secrets) -> list[str]:
    api = _custom(secrets)
    removed = []
    for item in _listed(api, selector, ns):
        if _delete(api, item["metadata"], item.get("kind")):
            removed.append(f"{item['metadata']['namespace']}/{item['metadata']['name']}")
    return removed


def _delete(api: Any, meta: Mapping[str, Any], kind: str | None = None) -> bool:
    """Delete one object; False when it was already gone (removal is idempotent)."""
    from kubernetes.client.rest import ApiException

    group, version, plural = KINDS.get(kind or "VirtualService", KINDS["VirtualService"])
    try:
        api.delete_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"])
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise ActivityFailed(f"could not delete {meta['namespace']}/{meta['name']}: {exc.status}") from None
    return True


def _listed(api: Any, selector: str, ns: str | None) -> list[dict[str, Any]]:
    """loadkit's objects of every kind it makes (Chaos Mesh's only where its CRDs are installed)."""
    from kubernetes.client.rest import ApiException

    items: list[dict[str, Any]] = []
    for kind, (group, version, plural) in KINDS.items():
        try:
            if ns:
                found = api.list_namespaced_custom_object(group, version, ns, plural, label_selector=selector)
            else:
                found = api.list_cluster_custom_object(group, version, plural, label_selector=selector)
        except ApiException as exc:
            # No Chaos Mesh in this cluster (404), or a role for other kinds of fault, which cannot
            # have made any (403: e.g. the pod-kill role).
            if exc.status in (403, 404) and kind != "VirtualService":
                continue
            raise
        items += [{**item, "kind": kind} for item in found["items"]]
    return items


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
