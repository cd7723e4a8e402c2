"""Safety guards: the settings and the checks every guarded activity runs through.

Guard settings come only from `loadkit chaos run`'s flags (never from the experiment file, which
could loosen them): the driver sets them for the process with `set_active`. Under a plain
`chaos run` (Chaos Toolkit alone) loadkit's actions use the strict defaults.

What an experiment may run at all is the allow-list in `loadkit.chaos.allowlist`; the checks here
are what those entries are made of (namespaces, the primary, kill shares, hosts, fault lengths,
strict types). Every loadkit action runs them again when it is called.
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loadkit.errors import SafetyError
from loadkit.safety import API_SERVER_HOSTS, SYSTEM_NAMESPACES

DEFAULT_MAX_KILL_SHARE = 0.5
DEFAULT_MAX_FAULT_S = 900.0  # a fault's TTL, and any pause while it is on
# The longest a killed sandbox pod may stay down: loadkit's clean-up waits that long (plus a margin)
# to see it back, so a pod kill is "rolled back" within the run, never left for later.
MAX_RESTART_AFTER_S = 60.0
SANDBOX_ENV = "LOADKIT_SANDBOX_ADMIN_URL"
# Configuration keys loadkit once read its settings from: an experiment that sets them is refused,
# and --var cannot set them either.
GUARD_KEYS = frozenset({"loadkit_allow_primary", "loadkit_allowed_namespaces", "loadkit_max_kill_share",
                        "loadkit_run_id", "loadkit_allow_unguarded", "loadkit_max_fault_duration"})
PRIMARY_HINT = "pass --allow-primary if you mean it"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class Guards:
    """What a chaos run may do. Defaults are the strictest."""

    allow_primary: bool = False
    namespaces: tuple[re.Pattern[str], ...] = ()
    max_kill_share: float = DEFAULT_MAX_KILL_SHARE
    max_fault_s: float = DEFAULT_MAX_FAULT_S
    allow_unguarded: bool = False
    # The one sandbox actions may call: LOADKIT_SANDBOX_ADMIN_URL when the guards were made. None:
    # no sandbox may be faulted (an experiment file never chooses it alone).
    sandbox_admin_url: str | None = field(default_factory=lambda: os.environ.get(SANDBOX_ENV) or None)
    run_id: str = ""  # this run's id: the owner of the faults it creates
    owner: Mapping[str, Any] = field(default_factory=dict)  # who made a fault: run, pid, host, started
    kills: KillLedger = field(default_factory=lambda: KillLedger())  # what this run killed, by workload
    # When each fault this run asked for expires (time.time()): past it, the sandbox, the reaper or
    # another run's preflight removes the fault, so the experiment stops there (`signals.Supervisor`).
    expiries: list[float] = field(default_factory=list)

    def check_namespace(self, namespace: Any) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise SafetyError("no namespace given: refusing to act on a whole cluster or on 'default' by chance",
                              hint="give ns: explicitly")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise SafetyError(f"namespace {namespace!r} is not a Kubernetes namespace name",
                              hint="lower-case letters, digits and -, e.g. ns: bruno")
        if self.namespaces:
            if not any(p.fullmatch(namespace) for p in self.namespaces):
                raise SafetyError(f"namespace {namespace!r} is not in the allow-list", hint="add it with "
                                  "--allow-namespace")
        elif SYSTEM_NAMESPACES.fullmatch(namespace):
            raise SafetyError(f"namespace {namespace!r} is a system namespace",
                              hint="allow it explicitly with --allow-namespace")

    def check_not_primary(self, workload: str, version: str | None = None) -> None:
        is_primary = version == "primary" or "primary" in workload
        if is_primary and not self.allow_primary:
            raise SafetyError(f"{workload or version} is (or may include) the primary workload, which serves users",
                              hint=PRIMARY_HINT)

    def check_fault_length(self, seconds: float, what: str, *, zero: bool = False) -> None:
        """`seconds` is a length of time within --max-fault-duration (0 allowed when `zero`: a pause)."""
        if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
            raise SafetyError(f"{what} of {seconds:g}s is not a length of time",
                              hint=f"give a number of seconds {'from 0' if zero else 'above 0'} up to "
                                   f"{self.max_fault_s:g}")
        if seconds > self.max_fault_s:
            raise SafetyError(f"{what} of {seconds:g}s is over the longest fault allowed ({self.max_fault_s:g}s)",
                              hint="shorten it, or raise --max-fault-duration")

    def kill_quantity(self, requested: float, available: int, mode: str = "fixed", matched: int | None = None) -> int:
        """How many pods a kill takes, computed as chaosk8s does (`ceil(qty * matched / 100)` for a
        percentage of every pod the selector lists, Terminating ones included); refuses
        whole-workload kills and shares over the cap of the `available` (Running, Ready) pods."""
        if not math.isfinite(requested) or requested <= 0:
            raise SafetyError(f"pod kill quantity {requested:g} must be above 0")
        if available == 0:
            raise SafetyError("no running pods match: nothing to kill (is the canary scaled up?)")
        listed = available if matched is None else max(matched, available)
        count = math.ceil(requested * listed / 100) if mode == "percentage" else int(requested)
        count = min(count, listed)
        cap = math.floor(available * self.max_kill_share)
        if count > cap or count >= available:
            raise SafetyError(f"killing {count} of {available} pods is over the cap "
                              f"({self.max_kill_share:.0%} of the workload, never all of it)",
                              hint="kill fewer pods or raise --max-kill-share")
        return count

    def check_sandbox_url(self, url: str, *, offline: bool = False) -> None:
        """Sandbox actions call only the sandbox loadkit was pointed at (LOADKIT_SANDBOX_ADMIN_URL).
        With none set, nothing may be faulted: the experiment file alone never picks the target
        (`offline`, for `chaos validate`: a loopback URL is accepted until the run checks it)."""
        allowed = self.sandbox_admin_url
        if allowed and url.rstrip("/") == allowed.rstrip("/"):
            return
        if not allowed and offline and (urlsplit(url).hostname or "") in LOOPBACK:
            return
        if not allowed:
            raise SafetyError(f"sandbox admin URL {url} is not the sandbox this run may fault: no sandbox is "
                              f"configured ({SANDBOX_ENV} is not set)",
                              hint=f"set {SANDBOX_ENV} to the admin URL `loadkit sandbox up` printed")
        raise SafetyError(f"sandbox admin URL {url} is not the sandbox this run may fault ({allowed})",
                          hint=f"point {SANDBOX_ENV} at it")


_active: Guards | None = None
_active_lock = threading.Lock()


def set_active(guards: Guards | None) -> None:
    """`loadkit chaos run` sets its flags' guards for the process (and clears them after)."""
    global _active
    with _active_lock:
        _active = guards


def active() -> Guards:
    """The guards of this process: `loadkit chaos run`'s flags, else the strict defaults (plain `chaos run`)."""
    global _default
    with _active_lock:
        if _active is not None:
            return _active
        if _default is None:
            run = f"chaos-{uuid.uuid4().hex[:8]}"
            _default = Guards(run_id=run, owner=owner_record(run))
        return _default


_default: Guards | None = None


def owner_record(run_id: str, command: str = "chaos run") -> dict[str, Any]:
    """Who makes a fault: enough for a later run to tell whether that process is still alive."""
    import psutil

    return {"run": run_id, "pid": os.getpid(), "host": process_host(),
            "started": psutil.Process().create_time(), "command": command[:200]}


def owner_alive(owner: Mapping[str, Any] | None) -> bool | None:
    """Is the process that made a fault still running? None when it cannot be told (another host or
    PID namespace, no pid): such a fault is kept until it expires or its run is named."""
    if not owner or not owner.get("pid") or owner.get("host") != process_host():
        return None
    import psutil

    try:
        process = psutil.Process(int(owner["pid"]))
        started = owner.get("started")
        return started is None or abs(process.create_time() - float(started)) < 1.0  # a reused pid is not it
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, ValueError, TypeError):
        return None


def process_host() -> str:
    """This machine, and this process's PID namespace: a pid means something only within both."""
    try:
        namespace = f"/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}{namespace}"[:255]


def check_selector(label_selector: Any, name_pattern: Any = None) -> None:
    if not isinstance(label_selector, str) or not label_selector.strip():
        what = "a name pattern alone can match every pod" if name_pattern else \
            "an empty label selector selects every pod in the namespace"
        raise SafetyError(f"{what}: refusing", hint="select the canary with label_selector, e.g. app=bruno-site")
    if re.search(r"!=|\bnotin\b|(^|,)\s*!", label_selector):
        raise SafetyError(f"label selector {label_selector!r} selects by exclusion, which includes the primary",
                          hint="select the canary positively, e.g. app=bruno-site")
    for term in re.split(r",(?![^()]*\))", label_selector):
        if term.strip() and not re.search(r"=|\sin\s*\(", term):
            raise SafetyError(f"label selector term {term.strip()!r} selects every pod that has the label, the "
                              "primary's too", hint="give it a value, e.g. app=bruno-site")


def canary_service_hosts(name: str, ns: str) -> set[str]:
    """The canary Service's in-cluster names: the only hosts a canary fault may name."""
    base = f"{name}-canary.{ns}"
    return {base, f"{base}.svc", f"{base}.svc.cluster.local"}


def check_canary_host(host: Any, name: str, ns: str) -> None:
    if not isinstance(host, str) or host.rstrip(".").lower() not in canary_service_hosts(name, ns):
        raise SafetyError(f"host {host!r} is not {name}'s canary Service ({name}-canary.{ns}...): the apex and "
                          "primary Services carry primary traffic", hint=f"leave host out, or {PRIMARY_HINT}")


def check_dependency_host(host: Any, name: str, ns: str, guards: Guards) -> str:
    """A dependency the canary calls: never one of the canary's own Services (the apex and the
    primary carry the primary's traffic), never the API server, never a system namespace's Service
    (unless that namespace is allowed explicitly). Returns the host as given, lower-cased."""
    if not isinstance(host, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", host.rstrip(".").lower()):
        raise SafetyError(f"host {host!r} is not a service host name", hint="e.g. payments.bruno.svc.cluster.local")
    host = host.rstrip(".").lower()
    if API_SERVER_HOSTS.fullmatch(host) or host == "kubernetes":
        raise SafetyError(f"host {host!r} is the Kubernetes API server", hint="fault a dependency of the canary")
    labels = host.split(".")
    service, namespace = labels[0], ns if len(labels) == 1 else labels[1]
    in_cluster = len(labels) <= 2 or labels[2:] in (["svc"], ["svc", "cluster", "local"])
    if not in_cluster:
        return host  # an external host (a ServiceEntry): only the canary's calls to it fail
    if namespace == ns and service in (name, f"{name}-primary", f"{name}-canary"):
        raise SafetyError(f"host {host!r} is one of {name}'s own Services, not a dependency: the apex and primary "
                          "Services carry the primary's traffic", hint="use add_canary_abort for the canary itself")
    explicitly = any(p.fullmatch(namespace) for p in guards.namespaces)
    if SYSTEM_NAMESPACES.fullmatch(namespace) and not explicitly:
        raise SafetyError(f"host {host!r} is a Service of the system namespace {namespace!r}",
                          hint="allow it explicitly with --allow-namespace")
    return host


def is_primary_pod(pod: Any) -> bool:
    """Flagger's primary: labelled `app: <name>-primary`, owned by a `<name>-primary` ReplicaSet."""
    labels = getattr(pod.metadata, "labels", None) or {}
    if any(str(labels.get(k, "")).endswith("-primary") for k in ("app", "app.kubernetes.io/name", "name")):
        return True
    owners: Iterable[Any] = getattr(pod.metadata, "owner_references", None) or []
    return any(re.fullmatch(r".+-primary(-[a-z0-9]+)?", str(o.name or "")) for o in owners)


def strict(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """A value of exactly that type: "false" is not false, "3" is not 3 (booleans are not numbers),
    and a number is finite."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = "number" if set(kinds) == {int, float} else " or ".join(
            {"int": "whole number", "str": "string", "bool": "boolean"}.get(k.__name__, k.__name__) for k in kinds)
        raise SafetyError(f"{what} must be a {names}, not {value!r} ({type(value).__name__})",
                          hint=_type_hint(kinds, what, value))
    if isinstance(value, float) and not math.isfinite(value):
        raise SafetyError(f"{what} must be a finite number, not {value!r}", hint=f"give {what} a real number")
    return value


def _type_hint(kinds: tuple[type, ...], what: str, value: Any) -> str:
    quoted = isinstance(value, str)
    if bool in kinds:
        return f"write {what}: true or {what}: false, without quotes"
    if int in kinds or float in kinds:
        return f"write {what} as a number{', without quotes' if quoted else ''}, e.g. {what}: 1"
    if str in kinds:
        return f"write {what} as a string in quotes"
    return f"give {what} as a {' or '.join(k.__name__ for k in kinds)}"


@dataclass
class Kill:
    """One kill this run made: where, what, and the pods the workload had before it."""

    where: str  # "bruno/bruno-site" or the sandbox's "http://127.0.0.1:8081 canary"
    baseline: int
    count: int
    restore: Mapping[str, Any]  # how to tell the pods are back: {"k8s": (ns, selector)} or {"sandbox": ...}
    killed: list[str] = field(default_factory=list)


class KillLedger:
    """Kills add up over a run: a workload may lose at most the kill share of the pods it had before
    the first kill, however many actions kill (and never all of them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kills: list[Kill] = []
        self._baseline: dict[str, int] = {}
        self._taken: dict[str, int] = {}

    def reserve(self, where: str, available: int, count: int, share: float,
                restore: Mapping[str, Any]) -> Kill:
        with self._lock:
            baseline = self._baseline.setdefault(where, available)
            taken = self._taken.get(where, 0)
            cap = math.floor(baseline * share)
            if taken + count > cap or taken + count >= baseline:
                raise SafetyError(f"killing {count} more of {where}'s pods is over the cap: this run already killed "
                                  f"{taken} of its {baseline} ({share:.0%} of the workload in a whole run, never all "
                                  "of it)", hint="kill fewer pods, or raise --max-kill-share")
            self._taken[where] = taken + count
            kill = Kill(where, baseline, count, dict(restore))
            self.kills.append(kill)
            return kill
