"""What a chaos experiment may run: an allow-list of activities, each with its checks.

Only activities loadkit knows how to guard run: loadkit's own actions and probes, and a short
list of chaosk8s / chaosprometheus functions. Each entry says what it does (`Kind`: injects a
fault, removes faults, or only reads), which decides where it may appear (a fault only as a
method action; rollbacks only remove or read; steady-state probes only read), checks its
arguments (strict types: "false" is not false; finite numbers; namespaces; never the primary;
fault lengths), may check them against the live system (`live`: selectors resolved to pods,
hosts to Services, kill shares on today's pod counts), and can tell whether the fault it made is
in place (`observe`). `loadkit.chaos.scan` walks an experiment against this list before the run;
`loadkit.chaos.gate` checks every activity again right before chaoslib runs it.

Experiments are code: a guarded activity can still hurt a system loadkit does not know about
(docs/chaos.md says what the guards cover and what they do not).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chaoslib import substitute

from loadkit.chaos.guards import (
    MAX_RESTART_AFTER_S,
    Guards,
    check_canary_host,
    check_dependency_host,
    check_selector,
    is_primary_pod,
    strict,
)
from loadkit.errors import SafetyError
from loadkit.units import parse_duration

Args = Mapping[str, Any]
Check = Callable[[Args, Guards], None]
Live = Callable[[Args, Guards, Mapping[str, Any]], None]
Observe = Callable[[Any, Args, Mapping[str, Any]], "str | None"]
NUMBER = (int, float)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
SANDBOX, K8S, PROBES = "loadkit.chaos.sandbox", "loadkit.chaos.k8s", "loadkit.chaos.probes"
CHAOSK8S_KILL = ("chaosk8s.pod.actions", "terminate_pods")
CONTROL = "loadkit.chaos.control"
SECRETS_REFUSED = ("secrets can point an activity at another cluster or sandbox than the one loadkit checks before "
                   "the run and cleans up after it")
SECRETS_HINT = "drop them: loadkit takes credentials from the environment (KUBECONFIG, KUBERNETES_CONTEXT, ...)"


class Kind(enum.Enum):
    """What an activity does, which decides where it may appear."""

    FAULT = "injects a fault"  # only as a method action
    RESTORE = "removes faults"  # a method or rollback action
    READ = "only reads"  # anywhere


@dataclass(frozen=True)
class Entry:
    kind: Kind
    check: Check
    live: Live | None = None
    observe: Observe | None = None  # FAULT: describe the fault now in place, None if it is not
    measures: bool = False  # READ: its failure means "could not measure" (no data), not "not met"
    redirect: tuple[str, str] | None = None  # loadkit's guarded twin that runs instead (same arguments)


SECTIONS = {
    "steady-state probe": {Kind.READ},
    "method": {Kind.FAULT, Kind.RESTORE, Kind.READ},
    "rollback": {Kind.RESTORE, Kind.READ},
}


def section_problem(entry: Entry, section: str, activity_type: Any, func: str) -> str | None:
    """Why this entry may not run here (None: it may)."""
    if entry.kind not in SECTIONS[section]:
        where = {"steady-state probe": "a steady-state probe (which must only read)",
                 "rollback": "a rollback (which may only remove faults or read)"}[section]
        return f"{func} {entry.kind.value}, so it may not be {where}: put it in the method, as an action"
    if entry.kind is Kind.FAULT and activity_type != "action":
        return f"{func} {entry.kind.value} but is declared as a {activity_type}: declare it as type: action"
    return None


# -- checks of arguments ---------------------------------------------------------------------------

def _number(args: Args, key: str, default: float, *, low: float = 0.0, high: float | None = None,
            inclusive: bool = False) -> float:
    value = float(strict(args.get(key, default), NUMBER, key))
    too_low = value < low if inclusive else value <= low
    if too_low or (high is not None and value > high):
        bound = f"at least {low:g}" if inclusive else f"above {low:g}"
        raise SafetyError(f"{key} {value:g} must be {bound}" + (f" and at most {high:g}" if high is not None else ""))
    return value


def _percentage(args: Args, default: float) -> None:
    _number(args, "percentage", default, high=100.0)


def _version(args: Args, guards: Guards, default: str | None = "canary") -> None:
    version = args.get("version", default)
    if version is None:
        return
    if version not in ("canary", "primary"):
        raise SafetyError(f"version {version!r} is not canary or primary")
    guards.check_not_primary("", str(version))


def _admin_url(args: Args, guards: Guards) -> None:
    if args.get("admin_url") is not None:
        guards.check_sandbox_url(str(strict(args["admin_url"], str, "admin_url")), offline=True)


def _name_ns(args: Args, guards: Guards) -> str:
    name = strict(args.get("name"), str, "name")
    if not DNS_LABEL.fullmatch(name):
        raise SafetyError(f"name {name!r} is not a Kubernetes name (lower-case letters, digits and -)")
    guards.check_namespace(args.get("ns"))
    guards.check_not_primary(name)
    return name


def _duration(args: Args, key: str, default: str, guards: Guards) -> None:
    text = strict(args.get(key, default), str, key)
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise SafetyError(f"{key}: {exc}") from None
    guards.check_fault_length(seconds, key)


def _wait(args: Args, key: str, guards: Guards) -> None:
    """A wait given explicitly is bounded like a fault (loadkit also caps it at run time)."""
    if key in args:
        guards.check_fault_length(_number(args, key, 0.0, inclusive=True), key, zero=True)


def _http_status(args: Args) -> None:
    status = strict(args.get("http_status", 503), int, "http_status")
    if not 400 <= status <= 599:
        raise SafetyError(f"http_status {status} is not an HTTP error (400-599)")


def _sandbox_fault(args: Args, guards: Guards, percentage: float) -> None:
    _version(args, guards)
    _percentage(args, percentage)
    guards.check_fault_length(_number(args, "ttl_s", 600.0), "ttl_s")
    _admin_url(args, guards)


def _sandbox_delay(args: Args, guards: Guards) -> None:
    _number(args, "delay_ms", 0, high=120_000)
    _sandbox_fault(args, guards, 100.0)


def _sandbox_abort(args: Args, guards: Guards) -> None:
    _http_status(args)
    _sandbox_fault(args, guards, 10.0)


def _choice(args: Args, key: str, default: Any, choices: tuple[Any, ...]) -> None:
    if args.get(key, default) not in choices:
        raise SafetyError(f"{key} {args.get(key)!r} is not one of {', '.join(map(str, choices))}")


def _sandbox_net(args: Args, guards: Guards) -> None:
    _choice(args, "dependency", None, (None, "database", "external"))
    _sandbox_fault(args, guards, 10.0)


def _sandbox_cpu(args: Args, guards: Guards) -> None:
    _number(args, "cpu_pct", 20.0, high=100.0)
    _choice(args, "mechanism", "auto", ("auto", "cgroup", "busy"))
    _sandbox_fault(args, guards, 100.0)


def _sandbox_memory(args: Args, guards: Guards) -> None:
    if not 16 <= strict(args.get("memory_mb", 64), int, "memory_mb") <= 65_536:
        raise SafetyError(f"memory_mb {args.get('memory_mb')} must be 16-65536")
    _sandbox_fault(args, guards, 100.0)


def _sandbox_dependency(args: Args, guards: Guards) -> None:
    _choice(args, "dependency", None, ("database", "external"))
    _choice(args, "mode", "failing", ("slow", "failing", "unreachable"))
    if (args.get("mode", "failing") == "slow") != (args.get("delay_ms") is not None):
        raise SafetyError("delay_ms is required for mode slow, and only for it")
    if args.get("delay_ms") is not None:
        _number(args, "delay_ms", 0, high=120_000)
    _sandbox_fault(args, guards, 100.0)


def _sandbox_kill(args: Args, guards: Guards) -> None:
    _version(args, guards)
    if strict(args.get("count", 1), int, "count") < 1:
        raise SafetyError(f"count {args.get('count')} must be at least 1")
    longest = min(MAX_RESTART_AFTER_S, guards.max_fault_s)
    restart = _number(args, "restart_after_s", 2.0, inclusive=True)
    if restart > longest:
        raise SafetyError(f"restart_after_s {restart:g} is longer than loadkit can wait to see the pod back "
                          f"({longest:g}s)", hint=f"give restart_after_s at most {longest:g}")
    _admin_url(args, guards)


def _sandbox_read(args: Args, guards: Guards) -> None:
    _version(args, guards, default=None)
    _wait(args, "timeout_s", guards)
    _admin_url(args, guards)


def _kill_qty(args: Args, mode: Any) -> None:
    if mode not in ("fixed", "percentage"):
        raise SafetyError(f"mode {mode!r} is not fixed or percentage")
    if mode == "fixed":
        if strict(args.get("qty", 1), int, "qty") < 1:
            raise SafetyError(f"qty {args.get('qty')} must be at least 1 pod")
    else:
        _number(args, "qty", 1, high=100.0)


def _canary_kill(args: Args, guards: Guards) -> None:
    _name_ns(args, guards)
    _kill_qty(args, args.get("mode", "fixed"))
    strict(args.get("grace_period", 0), int, "grace_period")


def _canary_wait(args: Args, guards: Guards) -> None:
    _name_ns(args, guards)
    if args.get("count") is not None:
        strict(args["count"], int, "count")
    _wait(args, "timeout_s", guards)


def _canary_fault(args: Args, guards: Guards) -> None:
    name = _name_ns(args, guards)
    if args.get("host") is not None:
        check_canary_host(args["host"], name, str(args["ns"]))
    _percentage(args, 100.0)
    _duration(args, "expires_in", "15m", guards)


def _canary_delay(args: Args, guards: Guards) -> None:
    _canary_fault(args, guards)
    _duration(args, "delay", "600ms", guards)


def _canary_abort(args: Args, guards: Guards) -> None:
    _canary_fault(args, guards)
    _http_status(args)


def _dependency_abort(args: Args, guards: Guards) -> None:
    name = _name_ns(args, guards)
    check_dependency_host(args.get("host"), name, str(args["ns"]), guards)
    _http_status(args)
    _percentage(args, 10.0)
    _duration(args, "expires_in", "15m", guards)


def _dependency_delay(args: Args, guards: Guards) -> None:
    name = _name_ns(args, guards)
    check_dependency_host(args.get("host"), name, str(args["ns"]), guards)
    _duration(args, "delay", "500ms", guards)
    _percentage(args, 100.0)
    _duration(args, "expires_in", "15m", guards)


def _int_in(args: Args, key: str, default: int, low: int, high: int) -> int:
    value = int(strict(args.get(key, default), int, key))
    if not low <= value <= high:
        raise SafetyError(f"{key} {value} must be {low}-{high}")
    return value


def _chaos_common(args: Args, guards: Guards) -> str:
    name = _name_ns(args, guards)
    _number(args, "pods_pct", 100.0, high=100.0)
    _duration(args, "duration", "60s", guards)
    return name


def _canary_network(args: Args, guards: Guards) -> None:
    name = _chaos_common(args, guards)
    _choice(args, "action", "loss", ("loss", "delay", "partition"))
    _choice(args, "direction", "to", ("to", "from", "both"))
    _number(args, "loss_pct", 10.0, high=100.0)
    for key, default in (("latency", "200ms"), ("jitter", None)):
        if args.get(key, default) is None:
            continue
        text = strict(args.get(key, default), str, key)
        try:
            parse_duration(text)
        except ValueError as exc:
            raise SafetyError(f"{key}: {exc}") from None
    target = args.get("target_app")
    if target is not None:
        if not DNS_LABEL.fullmatch(strict(target, str, "target_app")) or target == name:
            raise SafetyError(f"target_app {target!r} is not another app's label (a Kubernetes name)")
        guards.check_not_primary(str(target))
    elif args.get("action") == "partition":
        raise SafetyError("a partition needs target_app: the app label of the pods to cut the canary off from")


def _canary_stress(args: Args, guards: Guards) -> None:
    _chaos_common(args, guards)
    cpu = _int_in(args, "cpu_workers", 1, 0, 16)
    _int_in(args, "cpu_load", 80, 1, 100)
    memory = _int_in(args, "memory_workers", 0, 0, 16)
    size = strict(args.get("memory_size", "256MB"), str, "memory_size")
    if not re.fullmatch(r"[1-9][0-9]*(KB|MB|GB|%)", size):
        raise SafetyError(f"memory_size {size!r} is not a size like 256MB or 50%")
    if not cpu and not memory:
        raise SafetyError("no stressor: give cpu_workers or memory_workers above 0")


def _namespaced(args: Args, guards: Guards) -> None:
    guards.check_namespace(args.get("ns"))
    if args.get("name") is not None:
        guards.check_not_primary(str(strict(args["name"], str, "name")))


def _terminate_pods(args: Args, guards: Guards) -> None:
    check_selector(args.get("label_selector"), args.get("name_pattern"))
    if strict(args.get("all", False), bool, "all"):
        raise SafetyError("all: true kills every matching pod")
    strict(args.get("rand", False), bool, "rand")
    mode = args.get("mode", "fixed")
    _kill_qty(args, mode)
    if mode == "percentage" and float(args.get("qty", 1)) > guards.max_kill_share * 100:
        raise SafetyError(f"{args.get('qty')} % of the pods is over the cap ({guards.max_kill_share:.0%})")
    if args.get("order", "alphabetic") not in ("alphabetic", "oldest"):
        raise SafetyError(f"order {args.get('order')!r} is not alphabetic or oldest")
    strict(args.get("grace_period", -1), int, "grace_period")
    if args.get("name_pattern") is not None:
        try:
            re.compile(strict(args["name_pattern"], str, "name_pattern"))
        except re.error as exc:
            raise SafetyError(f"name_pattern is not a regular expression: {exc}") from None
    guards.check_namespace(args.get("ns"))
    guards.check_not_primary(str(args.get("label_selector")) + " " + str(args.get("name_pattern") or ""))


def _read_only(args: Args, guards: Guards) -> None:
    guards.check_namespace(args.get("ns"))


def _load_probe(args: Args, guards: Guards) -> None:
    for key in ("window_s", "wait_s"):
        _wait(args, key, guards)
    if "min_samples" in args and strict(args["min_samples"], int, "min_samples") < 1:
        raise SafetyError(f"min_samples {args['min_samples']} must be at least 1")


def _nothing(_args: Args, _guards: Guards) -> None:
    """Read-only, with no argument that points anywhere."""


# -- live checks: against today's pods and Services ------------------------------------------------

def _live_sandbox_kill(args: Args, guards: Guards, configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import sandbox

    available = sandbox.running_pods(str(args.get("version", "canary")), args.get("admin_url"), dict(configuration))
    guards.kill_quantity(int(args.get("count", 1)), available)


def _live_selected(pods: list[Any], what: str, guards: Guards) -> None:
    primary = [p.metadata.name for p in pods if is_primary_pod(p)]
    if primary and not guards.allow_primary:
        raise SafetyError(f"{what} matches primary pods ({', '.join(primary[:3])})", hint="select the canary only")


def _live_canary_kill(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import k8s

    k8s.kill_plan(f"app={args['name']}", str(args["ns"]), None, args.get("qty", 1), str(args.get("mode", "fixed")),
                  guards)


def _live_terminate_pods(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import k8s

    k8s.kill_plan(str(args["label_selector"]), str(args["ns"]), args.get("name_pattern"), args.get("qty", 1),
                  str(args.get("mode", "fixed")), guards)


def _live_canary_service(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    """The canary Service exists and selects no primary pod (a Service named like a canary is not one)."""
    from loadkit.chaos import k8s

    name, ns = str(args["name"]), str(args["ns"])
    selector = k8s.service_selector(f"{name}-canary", ns)
    if not selector:
        raise SafetyError(f"Service {name}-canary in {ns} selects no pods: it is not a canary Service")
    _live_selected(k8s.running_pods(selector, ns), f"Service {name}-canary (selector {selector})", guards)


def _live_canary_pods(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import k8s

    pods = k8s.running_pods(f"app={args['name']}", str(args["ns"]))
    if not pods:
        raise SafetyError(f"no running pods labelled app={args['name']} in {args['ns']}: nothing to fault")
    _live_selected(pods, f"app={args['name']}", guards)


# -- is the fault in place? -------------------------------------------------------------------------

def _sandbox_fault_seen(result: Any, args: Args, configuration: Mapping[str, Any]) -> str | None:
    from loadkit.chaos import sandbox

    fault_id = result.get("id") if isinstance(result, Mapping) else None
    if fault_id and sandbox.fault_present(str(fault_id), args.get("admin_url"), dict(configuration)):
        return f"sandbox {result.get('kind')} fault {fault_id} on the {result.get('version')}"
    return None


def _sandbox_pods_killed(result: Any, args: Args, _configuration: Mapping[str, Any]) -> str | None:
    return f"sandbox pods killed: {', '.join(map(str, result))}" if isinstance(result, list) and result else None


def _k8s_fault_seen(result: Any, args: Args, _configuration: Mapping[str, Any]) -> str | None:
    from loadkit.chaos import k8s

    ns = str(args.get("ns"))
    if isinstance(result, str) and k8s.fault_exists(result, ns):
        return f"VirtualService {ns}/{result}"
    return None


def _chaos_mesh_seen(kind: str) -> Observe:
    def seen(result: Any, args: Args, _configuration: Mapping[str, Any]) -> str | None:
        from loadkit.chaos import k8s

        ns = str(args.get("ns"))
        if isinstance(result, str) and k8s.chaos_object_exists(kind, result, ns):
            return f"{kind} {ns}/{result}"
        return None

    return seen


def _k8s_pods_killed(result: Any, args: Args, _configuration: Mapping[str, Any]) -> str | None:
    from loadkit.chaos import k8s

    names = [str(n) for n in result] if isinstance(result, list) else []
    gone = k8s.pods_going(names, str(args.get("ns")))
    return f"pods killed in {args.get('ns')}: {', '.join(gone)}" if gone else None


ALLOWED: dict[tuple[str, str], Entry] = {
    (SANDBOX, "add_delay"): Entry(Kind.FAULT, _sandbox_delay, observe=_sandbox_fault_seen),
    (SANDBOX, "add_abort"): Entry(Kind.FAULT, _sandbox_abort, observe=_sandbox_fault_seen),
    (SANDBOX, "add_packet_loss"): Entry(Kind.FAULT, _sandbox_net, observe=_sandbox_fault_seen),
    (SANDBOX, "add_partition"): Entry(Kind.FAULT, _sandbox_net, observe=_sandbox_fault_seen),
    (SANDBOX, "add_cpu_stress"): Entry(Kind.FAULT, _sandbox_cpu, observe=_sandbox_fault_seen),
    (SANDBOX, "add_memory_limit"): Entry(Kind.FAULT, _sandbox_memory, observe=_sandbox_fault_seen),
    (SANDBOX, "add_dependency_fault"): Entry(Kind.FAULT, _sandbox_dependency, observe=_sandbox_fault_seen),
    (SANDBOX, "kill_pods"): Entry(Kind.FAULT, _sandbox_kill, _live_sandbox_kill, _sandbox_pods_killed),
    (SANDBOX, "remove_faults"): Entry(Kind.RESTORE, _sandbox_read),
    (SANDBOX, "list_faults"): Entry(Kind.READ, _sandbox_read),
    (SANDBOX, "wait_for_pods"): Entry(Kind.READ, _sandbox_read),
    (K8S, "kill_canary_pods"): Entry(Kind.FAULT, _canary_kill, _live_canary_kill, _k8s_pods_killed),
    (K8S, "wait_for_canary_pods"): Entry(Kind.READ, _canary_wait),
    (K8S, "add_canary_delay"): Entry(Kind.FAULT, _canary_delay, _live_canary_service, _k8s_fault_seen),
    (K8S, "add_canary_abort"): Entry(Kind.FAULT, _canary_abort, _live_canary_service, _k8s_fault_seen),
    (K8S, "add_dependency_abort"): Entry(Kind.FAULT, _dependency_abort, _live_canary_pods, _k8s_fault_seen),
    (K8S, "add_dependency_delay"): Entry(Kind.FAULT, _dependency_delay, _live_canary_pods, _k8s_fault_seen),
    (K8S, "add_canary_network_fault"): Entry(Kind.FAULT, _canary_network, _live_canary_pods,
                                             _chaos_mesh_seen("NetworkChaos")),
    (K8S, "add_canary_stress"): Entry(Kind.FAULT, _canary_stress, _live_canary_pods, _chaos_mesh_seen("StressChaos")),
    (K8S, "remove_faults"): Entry(Kind.RESTORE, _namespaced),
    (K8S, "list_faults"): Entry(Kind.READ, _namespaced),
    **{(PROBES, func): Entry(Kind.READ, _load_probe, measures=True) for func in (
        "error_rate", "p95_ms", "p99_ms", "rps", "success_rate", "thresholds_met")},
    CHAOSK8S_KILL: Entry(Kind.FAULT, _terminate_pods, _live_terminate_pods, _k8s_pods_killed,
                         redirect=(K8S, "terminate_pods")),
    **{("chaosk8s.pod.probes", func): Entry(Kind.READ, _read_only) for func in (
        "pods_in_phase", "pods_not_in_phase", "count_pods", "count_min_pods", "pods_in_conditions")},
    **{("chaosk8s.deployment.probes", func): Entry(Kind.READ, _read_only) for func in (
        "deployment_available_and_healthy", "deployment_fully_available", "deployment_not_fully_available",
        "deployment_partially_available")},
    **{("chaosprometheus.probes", func): Entry(Kind.READ, _nothing, measures=True) for func in (
        "query", "query_interval")},
}
HINTS = {
    "chaosistio": "chaosistio patches Flagger's VirtualService, which Flagger rewrites and which routes primary "
                  "traffic too: use loadkit.chaos.k8s.add_canary_delay / add_canary_abort",
    "chaosk8s.node": "node actions hit every workload on the node, not just the canary",
    "chaosk8s.chaosmesh": "chaosk8s's Chaos Mesh wrappers set no labels, no expiry and (for NetworkChaos) no "
                          "duration, so nothing could find or restore what they leave: use "
                          "loadkit.chaos.k8s.add_canary_network_fault / add_canary_stress",
}


def entry_of(activity: Mapping[str, Any]) -> tuple[str, Entry | None]:
    """(`module.func`, its allow-list entry or None) for a python activity."""
    provider = activity.get("provider") or {}
    module, func = str(provider.get("module")), str(provider.get("func"))
    return f"{module}.{func}", (ALLOWED.get((module, func)) if provider.get("type") == "python" else None)


def arguments(activity: Mapping[str, Any], configuration: Mapping[str, Any],
              secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A python provider's arguments as chaoslib will pass them (`${var}` substituted, typed)."""
    provider = activity.get("provider") or {}
    raw = provider.get("arguments") or {}
    if not isinstance(raw, Mapping):
        return {}
    return dict(substitute(dict(raw), dict(configuration), dict(secrets or {})))


def check_entry(entry: Entry, module: str, func: str, args: Args, guards: Guards) -> None:
    """The arguments fit the function (a typo is named as a typo) and pass the entry's checks."""
    _bind(module, func, args)
    entry.check(args, guards)


def _bind(module: str, func: str, args: Args) -> None:
    """The arguments fit the function, as chaoslib will check: an allow-listed module is safe to import."""
    import importlib
    import inspect

    try:
        target = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise SafetyError(f"{module}.{func} cannot be loaded: {exc}") from None
    parameters = inspect.signature(target).parameters
    if "secrets" in args:
        raise SafetyError(SECRETS_REFUSED, hint=SECRETS_HINT)
    if "configuration" in args:
        raise SafetyError("argument 'configuration': Chaos Toolkit passes it itself; an experiment may not set it",
                          hint="drop configuration from the arguments")
    unknown = sorted(set(args) - set(parameters))
    if unknown:
        valid = ", ".join(p for p in parameters if p not in ("configuration", "secrets"))
        raise SafetyError(f"unknown argument(s) {', '.join(unknown)} (valid: {valid})")
    missing = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in args
               and name not in ("configuration", "secrets")]
    if missing:
        raise SafetyError(f"required argument {missing[0]!r} is missing")
