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
from loadkit.safety import SYSTEM_NAMESPACES

DEFAULT_MAX_KILL_SHARE = 0.5
DEFAULT_MAX_FAULT_S = 900.0  # a fault's TTL, and any pause while it is on
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
    sandbox_admin_url: str | None = None  # the sandbox actions may call (default: a loopback one)
    run_id: str = ""  # this run's id: the owner of the faults it creates
    owner: Mapping[str, Any] = field(default_factory=dict)  # who made a fault: run, pid, host, started

    def check_namespace(self, namespace: Any) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise SafetyError("no namespace given: refusing to act on a whole cluster or on 'default' by chance",
                              hint="give ns: explicitly")
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

    def check_fault_length(self, seconds: float, what: str) -> None:
        if not (math.isfinite(seconds) and 0 < seconds <= self.max_fault_s):
            raise SafetyError(f"{what} of {seconds:g}s is over the longest fault allowed ({self.max_fault_s:g}s)",
                              hint="shorten it, or raise --max-fault-duration")

    def kill_quantity(self, requested: int, available: int, mode: str = "fixed") -> int:
        """How many pods a kill may take; refuses whole-workload kills and shares over the cap."""
        if requested < 1:
            raise SafetyError(f"pod kill quantity {requested} must be at least 1")
        if available == 0:
            raise SafetyError("no running pods match: nothing to kill (is the canary scaled up?)")
        count = math.ceil(requested * available / 100) if mode == "percentage" else requested
        cap = math.floor(available * self.max_kill_share)
        if count > cap or count >= available:
            raise SafetyError(f"killing {count} of {available} pods is over the cap "
                              f"({self.max_kill_share:.0%} of the workload, never all of it)",
                              hint="kill fewer pods or raise --max-kill-share")
        return count

    def check_sandbox_url(self, url: str) -> None:
        """Sandbox actions call only the sandbox loadkit was pointed at, or a loopback one."""
        allowed = self.sandbox_admin_url or os.environ.get("LOADKIT_SANDBOX_ADMIN_URL")
        if allowed and url.rstrip("/") == allowed.rstrip("/"):
            return
        if not allowed and (urlsplit(url).hostname or "") in LOOPBACK:
            return
        raise SafetyError(f"sandbox admin URL {url} is not the sandbox this run may fault "
                          f"({allowed or 'a loopback address'})", hint="point LOADKIT_SANDBOX_ADMIN_URL at it")


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


def is_primary_pod(pod: Any) -> bool:
    """Flagger's primary: labelled `app: <name>-primary`, owned by a `<name>-primary` ReplicaSet."""
    labels = getattr(pod.metadata, "labels", None) or {}
    if any(str(labels.get(k, "")).endswith("-primary") for k in ("app", "app.kubernetes.io/name", "name")):
        return True
    owners: Iterable[Any] = getattr(pod.metadata, "owner_references", None) or []
    return any(re.fullmatch(r".+-primary(-[a-z0-9]+)?", str(o.name or "")) for o in owners)


def strict(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """A value of exactly that type: "false" is not false, "3" is not 3 (booleans are not numbers)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise SafetyError(f"{what} must be a {names}, not {value!r} ({type(value).__name__})",
                          hint="write it without quotes, e.g. all: false")
    return value
