"""A fake Kubernetes API server at the HTTP level, for tests that drive the real clients.

No real cluster can run here, so this is the one simulated thing the tests may use. It speaks
the API server's JSON over HTTP on 127.0.0.1 (port 0), so the real `kubernetes` client and
`chaosk8s` talk to it unchanged. It holds Flagger's layout of Deployments and their pods, a
Deployment controller that replaces deleted pods, and Istio VirtualServices as custom objects.

    with FakeKubernetes() as k8s:
        k8s.apply_env(monkeypatch)           # chaosk8s now targets k8s.url
        terminate_pods(label_selector="app=bruno-site", ns="bruno", qty=1)
        k8s.wait_for(lambda: len(k8s.pods("bruno", "app=bruno-site")) == 2, timeout=5)

Served (anything else is a 404 Status, or 405/415 on a known path, kept in `unexpected_requests`):
  /api/v1/pods, /api/v1/namespaces/{ns}/pods[/{name}]                  GET list (watch too), GET, DELETE
  /api/v1/services, /api/v1/namespaces/{ns}/services[/{name}]          GET list, GET (Flagger's three
                                                                       Services for each canary/primary pair)
  /apis/apps/v1/deployments, /apis/apps/v1/namespaces/{ns}/deployments[/{name}]
                                                                       GET list (watch too), GET, PATCH
  /apis/networking.istio.io/{v1,v1beta1,v1alpha3}/[namespaces/{ns}/]virtualservices[/{name}]
                                                                       GET list (watch too), POST, GET,
                                                                       PUT, PATCH (merge), DELETE
With `namespaced_only=True` the fake answers like an API server where the caller's RBAC is
namespace-scoped (the shipped Roles): every list across all namespaces is 403 Forbidden.
Lists honour `labelSelector`; `fieldSelector` is honoured for metadata.name, metadata.namespace
and status.phase, other fields are ignored. Watches start with the current objects as ADDED, or
resume after `resourceVersion`, and end at `timeoutSeconds` or when the fake closes. Fields the
API server omits when empty (Deployment status counts at zero, a Pending pod's IP) are omitted
here too, so None-handling bugs show up.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import heapq
import itertools
import json
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pytest
    from kubernetes.client import ApiClient, Configuration

T = TypeVar("T")
Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

DEFAULT_DEPLOYMENTS: Mapping[Key, int] = {("bruno", "bruno-site"): 2, ("bruno", "bruno-site-primary"): 2}

# Environment keys chaosk8s.create_k8s_api_client (or the kubernetes client's proxy lookup) reads
# that would point it elsewhere. KUBERNETES_VERIFY_SSL is here too: chaosk8s tests
# `value is not False`, so any string, "false" included, turns verification on.
ENV_KEYS_TO_UNSET: tuple[str, ...] = (
    "CHAOSTOOLKIT_IN_POD", "KUBERNETES_CONTEXT", "KUBERNETES_API_KEY", "KUBERNETES_API_KEY_PREFIX",
    "KUBERNETES_CERT_FILE", "KUBERNETES_KEY_FILE", "KUBERNETES_USERNAME", "KUBERNETES_PASSWORD",
    "KUBERNETES_VERIFY_SSL", "KUBERNETES_CA_CERT_FILE", "KUBERNETES_DEBUG",
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
)
# /dev/null is not a directory, so this path can never exist: chaosk8s skips the kubeconfig.
MISSING_KUBECONFIG = os.path.join(os.devnull, "kubeconfig")

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes
_VS_GROUP, _VS_PLURAL, _VS_KIND = "networking.istio.io", "virtualservices", "VirtualService"
_CM_GROUP, _CM_VERSION = "chaos-mesh.org", "v1alpha1"
_CM_KINDS = {"networkchaos": "NetworkChaos", "stresschaos": "StressChaos"}
# One storage served at each version, as Istio's CRD does.
_VS_PREFIX = rf"/apis/{re.escape(_VS_GROUP)}/(?P<version>v1|v1beta1|v1alpha3)"


# --- label and field selectors ------------------------------------------------------------------

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `op` is =, !=, in, notin, exists or !exists."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        return labels.get(self.key) not in self.values  # != and notin also match a missing key


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """`"app=a,tier in (x,y),!canary"` -> requirements, ANDed; ValueError names a bad term."""
    if not selector or not selector.strip():
        return []
    return [_parse_requirement(term) for term in _split_terms(selector)]


def label_selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    return all(req.matches(labels) for req in parse_label_selector(selector))


def _split_terms(selector: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ValueError(f"unbalanced parentheses in label selector {selector!r}")
        if char == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced parentheses in label selector {selector!r}")
    return [*terms, selector[start:]]


def _parse_requirement(term: str) -> Requirement:
    term = term.strip()
    if m := _EQUALITY.match(term):
        return Requirement(m[1], "!=" if m[2] == "!=" else "=", frozenset({m[3]}))
    if m := _SET.match(term):
        values = [v.strip() for v in m[3].split(",")]
        if not m[3].strip() or not all(re.fullmatch(_VALUE, v) for v in values):
            raise ValueError(f"invalid value set in label selector term {term!r}")
        return Requirement(m[1], m[2], frozenset(values))
    if m := _EXISTS.match(term):
        return Requirement(m[2], "!exists" if m[1] else "exists")
    raise ValueError(f"invalid label selector term {term!r}")


def _field_selector_matches(selector: str | None, fields: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise ValueError(f"invalid field selector term {term!r}")
        if m[1] in fields and (fields[m[1]] == m[3]) == (m[2] == "!="):
            return False
    return True


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --- API errors ---------------------------------------------------------------------------------

class ApiError(Exception):
    """Becomes a `Status` response, shaped as the API server sends it."""

    REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "AlreadyExists",
               415: "UnsupportedMediaType", 422: "Invalid"}

    def __init__(self, code: int, message: str, reason: str | None = None, details: Obj | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or self.REASONS.get(code, "InternalError")
        self.details = details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    details = {"name": name, "kind": resource, **({"group": group} if group else {})}
    return ApiError(404, f'{qualified} "{name}" not found', details=details)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix(n: int, seed: str | None = None) -> str:
    if seed is None:
        return "".join(random.choices(_ALPHABET, k=n))
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:n])


# --- objects ------------------------------------------------------------------------------------

@dataclass
class _Deployment:
    obj: Obj
    spawns_due: int = 0  # replacement pods scheduled but not yet created

    @property
    def replicas(self) -> int:
        return int(self.obj["spec"].get("replicas", 1))

    @property
    def match_labels(self) -> dict[str, str]:
        return dict(self.obj["spec"]["selector"]["matchLabels"])


def _deployment_obj(namespace: str, name: str, replicas: int, image: str) -> Obj:
    labels = {"app": name}
    container = {"name": "app", "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
    return {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1,
                     "creationTimestamp": _now(), "labels": dict(labels),
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                 "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
        "status": {},
    }


def _deployment_status(dep: _Deployment, pods: list[Obj]) -> Obj:
    ready = sum(1 for p in pods if p["status"]["phase"] == "Running" and not p["metadata"].get("deletionTimestamp"))
    wanted = dep.replicas
    available_enough = ready >= wanted - wanted // 4  # maxUnavailable 25%, rounded down
    now = _now()
    status: Obj = {"observedGeneration": dep.obj["metadata"]["generation"], "replicas": len(pods),
                   "updatedReplicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                   "unavailableReplicas": max(wanted - ready, 0)}
    status = {k: v for k, v in status.items() if v}  # the API server omits zero counts
    status["conditions"] = [
        {"type": "Available", "status": "True" if available_enough else "False",
         "reason": "MinimumReplicasAvailable" if available_enough else "MinimumReplicasUnavailable",
         "message": "Deployment has minimum availability." if available_enough
         else "Deployment does not have minimum availability.",
         "lastUpdateTime": now, "lastTransitionTime": now},
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
         "message": f'ReplicaSet "{_replicaset_name(dep)}" has successfully progressed.',
         "lastUpdateTime": now, "lastTransitionTime": now},
    ]
    return status


def _replicaset_name(dep: _Deployment) -> str:
    """`<deployment>-<pod-template-hash>`; the hash is stable, as the template never changes here."""
    ns, name = dep.obj["metadata"]["namespace"], dep.obj["metadata"]["name"]
    return f"{name}-{_suffix(10, seed=f'{ns}/{name}')}"


def _pod_obj(dep: _Deployment, ip: str, running: bool) -> Obj:
    meta, spec = dep.obj["metadata"], dep.obj["spec"]
    rs_name = _replicaset_name(dep)
    labels = {**spec["template"]["metadata"]["labels"], "pod-template-hash": rs_name.rsplit("-", 1)[1]}
    containers = copy.deepcopy(spec["template"]["spec"]["containers"])
    pod = {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": f"{rs_name}-{_suffix(5)}", "generateName": f"{rs_name}-",
                     "namespace": meta["namespace"], "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                     "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                          "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, rs_name)),
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": containers, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "nodeName": "fake-node-1", "serviceAccountName": "default"},
        "status": {},
    }
    _set_pod_phase(pod, ip, running)
    return pod


def _set_pod_phase(pod: Obj, ip: str, running: bool) -> None:
    now, ready = _now(), "True" if running else "False"
    status: Obj = {
        "phase": "Running" if running else "Pending", "hostIP": "10.0.0.1", "startTime": now,
        "conditions": [{"type": t, "status": s, "lastTransitionTime": now} for t, s in
                       (("Initialized", "True"), ("Ready", ready), ("ContainersReady", ready),
                        ("PodScheduled", "True"))],
        "containerStatuses": [
            {"name": c["name"], "image": c["image"], "imageID": "", "ready": running, "restartCount": 0,
             "started": running,
             "state": {"running": {"startedAt": now}} if running else {"waiting": {"reason": "ContainerCreating"}}}
            for c in pod["spec"]["containers"]],
    }
    if running:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    pod["status"] = status


# --- the fake -----------------------------------------------------------------------------------

@dataclass
class _Watch:
    """A list request with ?watch=true: streamed by the HTTP handler as JSON lines."""

    kind: str
    initial: list[Obj]
    matches: Callable[[Obj], bool]
    convert: Callable[[Obj], Obj]
    since: int  # index into the event log
    timeout_s: float


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class FakeKubernetes:
    """A threaded fake API server on 127.0.0.1:0 holding Deployments, pods and VirtualServices.

    Deleting a pod removes it at once (grace periods are ignored), or, with `terminate_after_s`,
    marks it Terminating as the API server does (a `deletionTimestamp`, not Ready, still listed)
    and removes it that much later; the Deployment controller, which does not count a Terminating
    pod, creates a replacement with a new name `recreate_after_s` after the delete, Pending, then
    Running `ready_after_s` after that.

        with FakeKubernetes(deployments={("bruno", "bruno-site"): 3}) as k8s:
            CoreV1Api(k8s.api_client()).list_namespaced_pod("bruno", label_selector="app=bruno-site")
    """

    def __init__(self, deployments: Mapping[Key, int] | None = None, *,
                 recreate_after_s: float = 0.5, ready_after_s: float = 0.2, namespaced_only: bool = False,
                 terminate_after_s: float = 0.0, chaos_mesh: bool = True) -> None:
        self.chaos_mesh = chaos_mesh  # are Chaos Mesh's CRDs installed (else its URLs are 404s)
        self._chaos: dict[tuple[str, str, str], Obj] = {}
        self.recreate_after_s = recreate_after_s
        self.terminate_after_s = terminate_after_s
        self.ready_after_s = ready_after_s
        self.namespaced_only = namespaced_only
        self._services: dict[Key, Obj] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0  # bumped on every state change, for wait_for and watches
        self._rv = itertools.count(1000)
        self._ips = itertools.count(10)
        self._seq = itertools.count()
        self._timers: list[_Timer] = []
        self._closing = False
        self._deployments: dict[Key, _Deployment] = {}
        self._pods: dict[Key, Obj] = {}
        self._custom: dict[Key, Obj] = {}  # VirtualServices; all served versions share this storage
        self._deleted: list[str] = []
        self._events: list[tuple[str, Obj]] = []  # (ADDED|MODIFIED|DELETED, a copy of the object), for watches
        self._requests: list[tuple[str, str]] = []
        self._unexpected: list[tuple[str, str]] = []
        with self._lock:
            for (ns, name), replicas in (DEFAULT_DEPLOYMENTS if deployments is None else deployments).items():
                self._add_deployment(ns, name, replicas)
                if name.endswith("-primary"):
                    self._add_flagger_services(ns, name.removesuffix("-primary"))
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                          name="fake-k8s-http"),
                         threading.Thread(target=self._controller, daemon=True, name="fake-k8s-controller")]

    # -- lifecycle

    def start(self) -> FakeKubernetes:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        started = [thread for thread in self._threads if thread.ident is not None]
        if started:
            self._server.shutdown()  # waits for serve_forever, so only once it runs
        self._server.close_connections()
        self._server.server_close()
        for thread in started:
            thread.join(timeout=5)

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- test-facing API

    def pods(self, namespace: str, selector: str | None = None) -> list[Obj]:
        """Pods in `namespace` matching the label selector, by name, as the API returns them."""
        with self._lock:
            return copy.deepcopy(self._select(self._pods, namespace, selector))

    def deployment(self, namespace: str, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self._deployments[(namespace, name)].obj)

    def virtualservices(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return copy.deepcopy(self._select(self._custom, namespace, None))

    def plant_virtualservice(self, namespace: str, name: str, labels: Mapping[str, str] | None = None,
                             spec: Obj | None = None, annotations: Mapping[str, str] | None = None) -> Obj:
        """Store a VirtualService as if someone else had created it (a leftover, say)."""
        meta: Obj = {"name": name, "labels": dict(labels or {})}
        if annotations:
            meta["annotations"] = dict(annotations)
        body = {"apiVersion": f"{_VS_GROUP}/v1beta1", "kind": _VS_KIND, "metadata": meta,
                "spec": copy.deepcopy(spec or {})}
        with self._lock:
            return copy.deepcopy(self._create_custom(namespace, "v1beta1", body))

    @property
    def deleted_pods(self) -> list[str]:
        """Names of pods deleted through the API, in order (not the controller's scale-downs)."""
        with self._lock:
            return list(self._deleted)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request as (method, path), query string left off, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def unexpected_requests(self) -> list[tuple[str, str]]:
        """Requests this fake does not serve (answered 404/405/415), as (method, path)."""
        with self._lock:
            return list(self._unexpected)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
        """Re-check `predicate` on every state change (and at least every 50 ms) until it is truthy.

        Returns its value; raises TimeoutError after `timeout` seconds. The predicate runs
        without the lock held, so it may call the server over HTTP.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._generation
            if result := predicate():
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} not reached within {timeout}s")
            self._wait_past(seen, min(remaining, 0.05))

    def env(self) -> dict[str, str]:
        """Variables that make chaosk8s build its client for this server (also unset ENV_KEYS_TO_UNSET)."""
        return {"KUBECONFIG": MISSING_KUBECONFIG, "KUBERNETES_HOST": self.url}

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in ENV_KEYS_TO_UNSET:
            monkeypatch.delenv(key, raising=False)
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)

    def subprocess_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with the keys unset and env() applied, for `chaos run`."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in ENV_KEYS_TO_UNSET}
        return env | self.env()

    def client_configuration(self) -> Configuration:
        from kubernetes.client import Configuration

        config = Configuration(host=self.url)
        config.proxy = None  # not from the environment
        return config

    def api_client(self) -> ApiClient:
        from kubernetes.client import ApiClient

        return ApiClient(self.client_configuration())

    # -- state (all under self._lock)

    def _touch(self, obj: Obj, event: str = "MODIFIED") -> None:
        """Record a change: a new resourceVersion, an event for watches, a wake-up for waiters."""
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self._events.append((event, copy.deepcopy(obj)))
        self._generation += 1
        self._changed.notify_all()

    @staticmethod
    def _matcher(namespace: str | None, selector: str | None, fields: str | None = None) -> Callable[[Obj], bool]:
        reqs = parse_label_selector(selector)
        _field_selector_matches(fields, {})  # a malformed one fails now, as a 400

        def matches(obj: Obj) -> bool:
            meta = obj["metadata"]
            values = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
                      "status.phase": obj.get("status", {}).get("phase", "")}
            return ((namespace is None or meta["namespace"] == namespace)
                    and all(r.matches(meta.get("labels") or {}) for r in reqs)
                    and _field_selector_matches(fields, values))
        return matches

    @classmethod
    def _select(cls, store: Mapping[Key, Obj], namespace: str | None, selector: str | None) -> list[Obj]:
        matches = cls._matcher(namespace, selector)
        return [obj for _, obj in sorted(store.items()) if matches(obj)]

    def _add_deployment(self, namespace: str, name: str, replicas: int) -> None:
        image = f"{name.removesuffix('-primary')}:1"
        dep = _Deployment(_deployment_obj(namespace, name, replicas, image))
        self._deployments[(namespace, name)] = dep
        for _ in range(replicas):
            self._store_pod(_pod_obj(dep, self._next_ip(), running=True))
        dep.obj["status"] = _deployment_status(dep, self._pods_of(dep))
        self._touch(dep.obj, "ADDED")

    def _add_flagger_services(self, namespace: str, name: str) -> None:
        """Flagger's layout: the apex and `-primary` Services select the primary, `-canary` the canary."""
        for service, app in ((name, f"{name}-primary"), (f"{name}-primary", f"{name}-primary"),
                             (f"{name}-canary", name)):
            self._services[(namespace, service)] = {
                "kind": "Service", "apiVersion": "v1",
                "metadata": {"name": service, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "creationTimestamp": _now(), "resourceVersion": str(next(self._rv))},
                "spec": {"selector": {"app": app}, "type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}]},
            }

    def _next_ip(self) -> str:
        n = next(self._ips)
        return f"10.244.{n // 250}.{n % 250 + 2}"

    def _store_pod(self, pod: Obj) -> None:
        while (pod["metadata"]["namespace"], pod["metadata"]["name"]) in self._pods:  # a 1 in 14M clash
            pod["metadata"]["name"] = pod["metadata"]["generateName"] + _suffix(5)
        self._pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
        self._touch(pod, "ADDED")

    def _pods_of(self, dep: _Deployment) -> list[Obj]:
        ns, want = dep.obj["metadata"]["namespace"], dep.match_labels
        return [p for (pns, _), p in sorted(self._pods.items())
                if pns == ns and all(p["metadata"]["labels"].get(k) == v for k, v in want.items())]

    def _refresh_status(self, dep: _Deployment) -> None:
        status = _deployment_status(dep, self._pods_of(dep))
        old = {**dep.obj["status"], "conditions": [
            {k: v for k, v in c.items() if not k.startswith("last")} for c in dep.obj["status"].get("conditions", [])]}
        new = {**status, "conditions": [{k: v for k, v in c.items() if not k.startswith("last")}
                                        for c in status["conditions"]]}
        if old != new:
            dep.obj["status"] = status
            self._touch(dep.obj)

    def _owner_of(self, pod: Obj) -> _Deployment | None:
        for dep in self._deployments.values():
            if dep.obj["metadata"]["namespace"] == pod["metadata"]["namespace"] and all(
                    pod["metadata"]["labels"].get(k) == v for k, v in dep.match_labels.items()):
                return dep
        return None

    def _active_pods_of(self, dep: _Deployment) -> list[Obj]:
        """The pods a ReplicaSet counts: not the Terminating ones."""
        return [p for p in self._pods_of(dep) if not p["metadata"].get("deletionTimestamp")]

    def _reconcile(self, dep: _Deployment) -> None:
        pods = self._active_pods_of(dep)
        for surplus in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])[dep.replicas:]:
            del self._pods[(surplus["metadata"]["namespace"], surplus["metadata"]["name"])]
            self._touch(copy.deepcopy(surplus), "DELETED")
        missing = dep.replicas - len(pods) - dep.spawns_due
        for _ in range(max(missing, 0)):
            dep.spawns_due += 1
            self._schedule(self.recreate_after_s, functools.partial(self._spawn, dep))
        self._refresh_status(dep)

    def _spawn(self, dep: _Deployment) -> None:
        dep.spawns_due -= 1
        if len(self._active_pods_of(dep)) >= dep.replicas:
            return
        pod = _pod_obj(dep, self._next_ip(), running=False)
        self._store_pod(pod)
        self._refresh_status(dep)
        self._schedule(self.ready_after_s, lambda: self._make_ready(dep, pod))

    def _make_ready(self, dep: _Deployment, pod: Obj) -> None:
        if self._pods.get((pod["metadata"]["namespace"], pod["metadata"]["name"])) is pod:
            _set_pod_phase(pod, self._next_ip(), running=True)
            self._touch(pod)
            self._refresh_status(dep)

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, _Timer(time.monotonic() + delay, next(self._seq), action))
        self._changed.notify_all()

    def _controller(self) -> None:
        with self._changed:
            while not self._closing:
                now = time.monotonic()
                while self._timers and self._timers[0].due <= now:
                    heapq.heappop(self._timers).action()
                wait = self._timers[0].due - now if self._timers else None
                self._changed.wait(timeout=wait)

    # -- pods

    def _list_pods(self, ns: str | None, query: Mapping[str, str]) -> Obj | _Watch:
        return self._list("Pod", "v1", self._pods, ns, query)

    def _get_service(self, ns: str, name: str) -> Obj:
        if (ns, name) not in self._services:
            raise _not_found("services", name)
        return self._services[(ns, name)]

    def _get_pod(self, ns: str, name: str) -> Obj:
        if (ns, name) not in self._pods:
            raise _not_found("pods", name)
        return self._pods[(ns, name)]

    def _delete_pod(self, ns: str, name: str, body: Obj | None) -> Obj:
        stored = self._get_pod(ns, name)
        if stored["metadata"].get("deletionTimestamp"):
            return stored  # already Terminating: deleting again changes nothing
        self._deleted.append(name)
        grace = (body or {}).get("gracePeriodSeconds")
        marks = {"deletionTimestamp": _now(), "deletionGracePeriodSeconds": 30 if grace is None else grace}
        if self.terminate_after_s > 0:
            stored["metadata"] |= marks
            for condition in stored["status"].get("conditions", []):
                if condition["type"] in ("Ready", "ContainersReady"):
                    condition["status"] = "False"
            for container in stored["status"].get("containerStatuses", []):
                container["ready"] = False
            self._touch(stored)
            self._schedule(self.terminate_after_s, functools.partial(self._terminated, ns, name, stored))
            pod = stored
        else:
            pod = copy.deepcopy(stored)
            del self._pods[(ns, name)]
            pod["metadata"] |= marks
            self._touch(pod, "DELETED")
        if dep := self._owner_of(pod):
            self._reconcile(dep)
        return pod

    def _terminated(self, ns: str, name: str, pod: Obj) -> None:
        if self._pods.get((ns, name)) is pod:
            del self._pods[(ns, name)]
            self._touch(copy.deepcopy(pod), "DELETED")
            if dep := self._owner_of(pod):
                self._refresh_status(dep)

    # -- deployments

    def _list_deployments(self, ns: str | None, query: Mapping[str, str]) -> Obj | _Watch:
        objs = {key: dep.obj for key, dep in self._deployments.items()}
        return self._list("Deployment", "apps/v1", objs, ns, query)

    def _get_deployment(self, ns: str, name: str) -> _Deployment:
        if (ns, name) not in self._deployments:
            raise _not_found("deployments", name, "apps")
        return self._deployments[(ns, name)]

    def _patch_deployment(self, ns: str, name: str, body: Any, content_type: str) -> Obj:
        dep = self._get_deployment(ns, name)
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, f"the fake serves merge patches of deployments, not {content_type!r}")
        if not isinstance(body, dict):
            raise ApiError(400, "a merge patch of a deployment must be a JSON object")
        # For the scalars this fake's Deployments hold, a strategic merge is a JSON merge.
        patched = json_merge_patch(dep.obj, body)
        for frozen in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            patched["metadata"][frozen] = dep.obj["metadata"][frozen]
        if patched["spec"] != dep.obj["spec"]:
            patched["metadata"]["generation"] = dep.obj["metadata"]["generation"] + 1
        dep.obj = patched
        self._touch(dep.obj)
        self._reconcile(dep)
        return dep.obj

    # -- virtual services

    def _list_custom(self, ns: str | None, version: str, query: Mapping[str, str]) -> Obj | _Watch:
        return self._list(_VS_KIND, f"{_VS_GROUP}/{version}", self._custom, ns, query,
                          lambda obj: self._as_version(obj, version))

    @staticmethod
    def _as_version(obj: Obj, version: str) -> Obj:
        return {**obj, "apiVersion": f"{_VS_GROUP}/{version}"}

    def _get_custom(self, ns: str, name: str) -> Obj:
        if (ns, name) not in self._custom:
            raise _not_found(_VS_PLURAL, name, _VS_GROUP)
        return self._custom[(ns, name)]

    def _check_body(self, ns: str, version: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if body.get("kind") != _VS_KIND:
            raise ApiError(400, f"Object 'Kind' is {body.get('kind')!r}, expected {_VS_KIND!r}")
        if body.get("apiVersion") != f"{_VS_GROUP}/{version}":
            raise ApiError(400, f"the API version in the data ({body.get('apiVersion')}) does not match the "
                                f"expected API version ({_VS_GROUP}/{version})")
        meta = body.get("metadata") or {}
        if meta.get("namespace", ns) != ns:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on "
                                "the request")
        if not meta.get("name"):
            raise ApiError(422, f"{_VS_KIND}.{_VS_GROUP} is invalid: metadata.name: Required value: name or "
                                "generateName is required", reason="Invalid")
        return body

    def _create_custom(self, ns: str, version: str, body: Any) -> Obj:
        body = self._check_body(ns, version, body)
        name = body["metadata"]["name"]
        if (ns, name) in self._custom:
            raise ApiError(409, f'{_VS_PLURAL}.{_VS_GROUP} "{name}" already exists',
                           details={"name": name, "group": _VS_GROUP, "kind": _VS_PLURAL})
        obj = copy.deepcopy(body)
        obj["metadata"] |= {"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                            "generation": 1}
        self._custom[(ns, name)] = obj
        self._touch(obj, "ADDED")
        return self._as_version(obj, version)

    def _replace_custom(self, ns: str, name: str, version: str, body: Any) -> Obj:
        current = self._get_custom(ns, name)
        body = self._check_body(ns, version, body)
        if body["metadata"]["name"] != name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        rv = body["metadata"].get("resourceVersion")
        if not rv:
            raise ApiError(422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        return self._store_update(current, copy.deepcopy(body), version, rv)

    def _patch_custom(self, ns: str, name: str, version: str, body: Any, content_type: str) -> Obj:
        current = self._get_custom(ns, name)
        if content_type != "application/merge-patch+json":
            raise ApiError(415, f"the fake serves merge patches of virtualservices, not {content_type!r}")
        if not isinstance(body, dict):
            raise ApiError(400, "a merge patch of a virtualservice must be a JSON object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return self._store_update(current, json_merge_patch(current, body), version, rv)

    def _store_update(self, current: Obj, new: Obj, version: str, rv: str | None) -> Obj:
        meta = current["metadata"]
        if rv is not None and rv != meta["resourceVersion"]:
            raise ApiError(409, f'Operation cannot be fulfilled on {_VS_PLURAL}.{_VS_GROUP} "{meta["name"]}": the '
                                "object has been modified; please apply your changes to the latest version and "
                                "try again", reason="Conflict")
        for frozen in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            new["metadata"][frozen] = meta[frozen]
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] += 1
        new["kind"] = _VS_KIND
        self._custom[(meta["namespace"], meta["name"])] = new
        self._touch(new)
        return self._as_version(new, version)

    def _delete_custom(self, ns: str, name: str) -> Obj:
        obj = self._get_custom(ns, name)
        del self._custom[(ns, name)]
        self._touch(obj, "DELETED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": _VS_GROUP, "kind": _VS_PLURAL, "uid": obj["metadata"]["uid"]}}

    # -- Chaos Mesh (chaos-mesh.org/v1alpha1 NetworkChaos and StressChaos), when installed

    def chaos_objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(o) for (pl, ns, _), o in sorted(self._chaos.items())
                    if pl == plural and namespace in (None, ns)]

    def _chaos_mesh(self, route: str, method: str, p: Mapping[str, str], query: Mapping[str, str],
                    body: Any) -> Obj | _Watch:
        plural, ns, name = p["plural"], p.get("ns"), p.get("name", "")
        kind = _CM_KINDS[plural]
        if not self.chaos_mesh:
            raise ApiError(404, "the server could not find the requested resource", reason="NotFound")
        if route == "chaoses" and method == "GET":
            store = {(n, nm): o for (pl, n, nm), o in self._chaos.items() if pl == plural}
            return self._list(kind, f"{_CM_GROUP}/{_CM_VERSION}", store, ns, query)
        if route == "chaoses" and method == "POST" and ns is not None:
            if not isinstance(body, dict) or body.get("kind") != kind or \
                    body.get("apiVersion") != f"{_CM_GROUP}/{_CM_VERSION}":
                raise ApiError(400, f"expected a {kind} of {_CM_GROUP}/{_CM_VERSION}")
            meta = body.get("metadata") or {}
            if not meta.get("name") or meta.get("namespace", ns) != ns:
                raise ApiError(422, f"{kind} metadata.name is required and metadata.namespace must be {ns}")
            if not isinstance((body.get("spec") or {}).get("selector"), dict):
                raise ApiError(422, f"{kind}.spec.selector: Required value", reason="Invalid")
            if (plural, ns, meta["name"]) in self._chaos:
                raise ApiError(409, f'{plural}.{_CM_GROUP} "{meta["name"]}" already exists', reason="AlreadyExists")
            obj = copy.deepcopy(body)
            obj["metadata"] |= {"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                                "resourceVersion": str(next(self._rv))}
            self._chaos[(plural, ns, meta["name"])] = obj
            return obj
        if route == "chaos" and ns is not None and (plural, ns, name) in self._chaos:
            if method == "GET":
                return self._chaos[(plural, ns, name)]
            if method == "DELETE":
                del self._chaos[(plural, ns, name)]
                return {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
        if route == "chaos" and method in ("GET", "DELETE"):
            raise _not_found(plural, name, _CM_GROUP)
        raise ApiError(405, f"the fake API server does not serve {method} on {plural}")

    # -- lists and watches

    def _list(self, kind: str, api_version: str, store: Mapping[Key, Obj], ns: str | None,
              query: Mapping[str, str], convert: Callable[[Obj], Obj] = lambda obj: obj) -> Obj | _Watch:
        matches = self._matcher(ns, query.get("labelSelector"), query.get("fieldSelector"))
        items = [convert(obj) for _, obj in sorted(store.items()) if matches(obj)]
        if query.get("watch", "").lower() in ("1", "true"):
            timeout = float(query.get("timeoutSeconds") or 3600)
            since = query.get("resourceVersion", "0") or "0"
            if since == "0":  # "any version": the current objects as ADDED, then changes
                return _Watch(kind, copy.deepcopy(items), matches, convert, len(self._events), timeout)
            # Resuming: replay what changed after that version; the log is never trimmed.
            first = next((i for i, (_, obj) in enumerate(self._events)
                          if int(obj["metadata"]["resourceVersion"]) > int(since)), len(self._events))
            return _Watch(kind, [], matches, convert, first, timeout)
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    def _watch_events(self, watch: _Watch) -> Iterator[Obj]:
        """ADDED for what exists, then every change to a matching object, until the timeout."""
        deadline = time.monotonic() + watch.timeout_s
        for obj in watch.initial:
            yield {"type": "ADDED", "object": obj}
        seen = watch.since
        while True:
            with self._lock:
                new, seen, generation, closing = self._events[seen:], len(self._events), self._generation, self._closing
            for event, obj in new:  # copies, never changed after logging
                if obj["kind"] == watch.kind and watch.matches(obj):
                    yield {"type": event, "object": watch.convert(obj)}
            remaining = deadline - time.monotonic()
            if closing or remaining <= 0:
                return
            self._wait_past(generation, remaining)

    def _wait_past(self, generation: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._generation != generation or self._closing, timeout=timeout)

    # -- routing

    _ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
        ("pods", r"/api/v1(?:/namespaces/(?P<ns>[^/]+))?/pods"),
        ("services", r"/api/v1(?:/namespaces/(?P<ns>[^/]+))?/services"),
        ("service", r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)"),
        ("pod", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)"),
        ("deployments", r"/apis/apps/v1(?:/namespaces/(?P<ns>[^/]+))?/deployments"),
        ("deployment", r"/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)"),
        ("vss", rf"{_VS_PREFIX}(?:/namespaces/(?P<ns>[^/]+))?/{_VS_PLURAL}"),
        ("vs", rf"{_VS_PREFIX}/namespaces/(?P<ns>[^/]+)/{_VS_PLURAL}/(?P<name>[^/]+)"),
        ("chaoses", r"/apis/chaos-mesh.org/v1alpha1(?:/namespaces/(?P<ns>[^/]+))?"
                    r"/(?P<plural>networkchaos|stresschaos)"),
        ("chaos", r"/apis/chaos-mesh.org/v1alpha1/namespaces/(?P<ns>[^/]+)/(?P<plural>networkchaos|stresschaos)"
                  r"/(?P<name>[^/]+)"),
    ))

    def handle(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, Obj | _Watch]:
        """Answer one request: (HTTP status, JSON body or a watch to stream)."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append((method, path))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return 400, ApiError(400, "the request body is not JSON").status()
        for route, pattern in self._ROUTES:
            if m := pattern.fullmatch(path):
                params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                try:
                    with self._lock:
                        result = self._route(route, method, params, query, body, content_type)
                    return 201 if method == "POST" else 200, result
                except ApiError as exc:
                    if exc.code in (405, 415):
                        self._note_unexpected(method, path)
                    return exc.code, exc.status()
                except ValueError as exc:  # a bad selector or query parameter
                    return 400, ApiError(400, str(exc)).status()
                except Exception as exc:  # a bug in the fake: say so, rather than drop the connection
                    self._note_unexpected(method, path)
                    return 500, ApiError(500, f"the fake API server failed: {exc!r}").status()
        self._note_unexpected(method, path)
        return 404, ApiError(404, f"the fake API server does not serve {method} {path}").status()

    def _note_unexpected(self, method: str, path: str) -> None:
        with self._lock:
            self._unexpected.append((method, path))

    def _route(self, route: str, method: str, p: Mapping[str, str], query: Mapping[str, str], body: Any,
               content_type: str) -> Obj | _Watch:
        ns, name, version = p.get("ns"), p.get("name", ""), p.get("version", "")
        if self.namespaced_only and ns is None and method == "GET":
            resource = {"vss": "virtualservices.networking.istio.io", "deployments": "deployments.apps"}.get(route,
                                                                                                           route)
            raise ApiError(403, f'{resource} is forbidden: User "system:serviceaccount:loadkit:loadkit-chaos" '
                                f'cannot list resource "{resource.split(".")[0]}" at the cluster scope',
                           reason="Forbidden")
        handlers: dict[tuple[str, str], Callable[[], Obj | _Watch]] = {
            ("services", "GET"): lambda: self._list("Service", "v1", self._services, ns, query),
            ("service", "GET"): lambda: self._get_service(p["ns"], name),
            ("pods", "GET"): lambda: self._list_pods(ns, query),
            ("pod", "GET"): lambda: self._get_pod(p["ns"], name),
            ("pod", "DELETE"): lambda: self._delete_pod(p["ns"], name, body),
            ("deployments", "GET"): lambda: self._list_deployments(ns, query),
            ("deployment", "GET"): lambda: self._get_deployment(p["ns"], name).obj,
            ("deployment", "PATCH"): lambda: self._patch_deployment(p["ns"], name, body, content_type),
            ("vss", "GET"): lambda: self._list_custom(ns, version, query),
            ("vs", "GET"): lambda: self._as_version(self._get_custom(p["ns"], name), version),
            ("vs", "PUT"): lambda: self._replace_custom(p["ns"], name, version, body),
            ("vs", "PATCH"): lambda: self._patch_custom(p["ns"], name, version, body, content_type),
            ("vs", "DELETE"): lambda: self._delete_custom(p["ns"], name),
        }
        if route in ("chaoses", "chaos"):
            return copy.deepcopy(self._chaos_mesh(route, method, p, query, body))
        if route == "vss" and method == "POST":
            if ns is None:
                raise ApiError(405, "the fake creates virtualservices only in a namespace")
            return self._create_custom(ns, version, body)
        handler = handlers.get((route, method))
        if handler is None:
            raise ApiError(405, f"the fake API server does not serve {method} on {route}")
        result = handler()
        return result if isinstance(result, _Watch) else copy.deepcopy(result)


# --- HTTP ---------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKubernetes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on kept-alive connections."""
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real client's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out as two writes: 40 ms per request without it
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        code, body = self.server.fake.handle(self.command, self.path, content_type, raw)
        if isinstance(body, _Watch):
            self._stream(body)
            return
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, watch: _Watch) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            for event in self.server.fake._watch_events(watch):
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the watcher hung up
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
