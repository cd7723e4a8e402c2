"""What a chaos experiment may run: an allow-list, checked before anything runs.

Only activities loadkit knows how to guard run: loadkit's own actions and probes, and a short
list of chaosk8s / chaosprometheus functions. Each entry checks its arguments (strict types:
"false" is not false; namespaces; never the primary; fault lengths) and may check them against
the live system before the run (`live`: selectors resolved to pods, hosts to Services, kill
shares on today's pod counts). Everything else is refused with the reason: other Python
modules and functions (private helpers too), `process` and `http` providers, controls other than
loadkit's, dynamic configuration, probe tolerances, guard settings in the experiment file.
`--allow-unguarded` runs them anyway: loudly, and recorded in the result.

Experiments are code: a guarded activity can still hurt a system loadkit does not know about
(docs/chaos.md says what the guards cover and what they do not).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaoslib import substitute

from loadkit.chaos.guards import (
    GUARD_KEYS,
    Guards,
    check_canary_host,
    check_selector,
    is_primary_pod,
    strict,
)
from loadkit.errors import SafetyError
from loadkit.units import parse_duration

Args = Mapping[str, Any]
Check = Callable[[Args, Guards], None]
Live = Callable[[Args, Guards, Mapping[str, Any]], None]
NUMBER = (int, float)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
SANDBOX, K8S, PROBES = "loadkit.chaos.sandbox", "loadkit.chaos.k8s", "loadkit.chaos.probes"
CONTROL = "loadkit.chaos.control"


@dataclass(frozen=True)
class Entry:
    check: Check
    live: Live | None = None


@dataclass
class Scan:
    problems: list[str] = field(default_factory=list)
    unguarded: list[str] = field(default_factory=list)  # what --allow-unguarded let through

    def refuse(self, where: str, exc: SafetyError) -> None:
        self.problems.append(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))


# -- checks of arguments ---------------------------------------------------------------------------

def _number(args: Args, key: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
    value = float(strict(args.get(key, default), NUMBER, key))
    if value <= low or (high is not None and value > high):
        raise SafetyError(f"{key} {value:g} must be above {low:g}" + (f" and at most {high:g}" if high else ""))
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
        guards.check_sandbox_url(str(strict(args["admin_url"], str, "admin_url")))


def _name_ns(args: Args, guards: Guards) -> str:
    name = strict(args.get("name"), str, "name")
    if not DNS_LABEL.fullmatch(name):
        raise SafetyError(f"name {name!r} is not a Kubernetes name")
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


def _http_status(args: Args) -> None:
    status = strict(args.get("http_status", 503), int, "http_status")
    if not 400 <= status <= 599:
        raise SafetyError(f"http_status {status} is not an HTTP error (400-599)")


def _sandbox_kill(args: Args, guards: Guards) -> None:
    _version(args, guards)
    strict(args.get("count", 1), int, "count")
    guards.check_fault_length(_number(args, "restart_after_s", 2.0, low=-1.0), "restart_after_s")
    _admin_url(args, guards)


def _sandbox_read(args: Args, guards: Guards) -> None:
    _version(args, guards, default=None)
    _admin_url(args, guards)


def _canary_kill(args: Args, guards: Guards) -> None:
    _name_ns(args, guards)
    strict(args.get("qty", 1), int, "qty")
    if args.get("mode", "fixed") not in ("fixed", "percentage"):
        raise SafetyError(f"mode {args.get('mode')!r} is not fixed or percentage")
    strict(args.get("grace_period", 0), int, "grace_period")


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
    _name_ns(args, guards)
    host = strict(args.get("host"), str, "host")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", host):
        raise SafetyError(f"host {host!r} is not a service host name")
    _http_status(args)
    _percentage(args, 10.0)
    _duration(args, "expires_in", "15m", guards)


def _namespaced(args: Args, guards: Guards) -> None:
    guards.check_namespace(args.get("ns"))
    if args.get("name") is not None:
        guards.check_not_primary(str(strict(args["name"], str, "name")))


def _read_only(args: Args, guards: Guards) -> None:
    guards.check_namespace(args.get("ns", "default"))


def _terminate_pods(args: Args, guards: Guards) -> None:
    check_selector(args.get("label_selector"), args.get("name_pattern"))
    if strict(args.get("all", False), bool, "all"):
        raise SafetyError("all: true kills every matching pod")
    strict(args.get("rand", False), bool, "rand")
    mode = args.get("mode", "fixed")
    if mode not in ("fixed", "percentage"):
        raise SafetyError(f"mode {mode!r} is not fixed or percentage")
    qty = strict(args.get("qty", 1), NUMBER, "qty")
    if mode == "percentage" and qty > guards.max_kill_share * 100:
        raise SafetyError(f"{qty} % of the pods is over the cap ({guards.max_kill_share:.0%})")
    if args.get("order", "alphabetic") not in ("alphabetic", "oldest"):
        raise SafetyError(f"order {args.get('order')!r} is not alphabetic or oldest")
    if args.get("name_pattern") is not None:
        try:
            re.compile(strict(args["name_pattern"], str, "name_pattern"))
        except re.error as exc:
            raise SafetyError(f"name_pattern is not a regular expression: {exc}") from None
    guards.check_namespace(args.get("ns", "default"))
    guards.check_not_primary(str(args.get("label_selector")) + " " + str(args.get("name_pattern") or ""))


def _nothing(_args: Args, _guards: Guards) -> None:
    """Read-only, with no argument that points anywhere."""


# -- live checks: against today's pods and Services, before the run --------------------------------

def _live_sandbox_kill(args: Args, guards: Guards, configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import sandbox

    available = sandbox.running_pods(str(args.get("version", "canary")), args.get("admin_url"), dict(configuration))
    guards.kill_quantity(int(args.get("count", 1)), available)


def _live_selected(pods: Sequence[Any], what: str, guards: Guards) -> None:
    primary = [p.metadata.name for p in pods if is_primary_pod(p)]
    if primary and not guards.allow_primary:
        raise SafetyError(f"{what} matches primary pods ({', '.join(primary[:3])})", hint="select the canary only")


def _live_canary_kill(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import k8s

    pods = k8s.running_pods(f"app={args['name']}", str(args["ns"]))
    _live_selected(pods, f"app={args['name']}", guards)
    guards.kill_quantity(int(args.get("qty", 1)), len(pods), str(args.get("mode", "fixed")))


def _live_terminate_pods(args: Args, guards: Guards, _configuration: Mapping[str, Any]) -> None:
    from loadkit.chaos import k8s

    selector, pattern = str(args["label_selector"]), args.get("name_pattern")
    pods = k8s.running_pods(selector, str(args.get("ns", "default")), name_pattern=pattern)
    _live_selected(pods, f"label_selector {selector!r}" + (f" with name_pattern {pattern!r}" if pattern else ""),
                   guards)
    guards.kill_quantity(int(args.get("qty", 1)), len(pods), str(args.get("mode", "fixed")))


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


ALLOWED: dict[tuple[str, str], Entry] = {
    (SANDBOX, "add_delay"): Entry(_sandbox_delay),
    (SANDBOX, "add_abort"): Entry(_sandbox_abort),
    (SANDBOX, "kill_pods"): Entry(_sandbox_kill, _live_sandbox_kill),
    (SANDBOX, "remove_faults"): Entry(_sandbox_read),
    (SANDBOX, "list_faults"): Entry(_sandbox_read),
    (SANDBOX, "wait_for_pods"): Entry(_sandbox_read),
    (K8S, "kill_canary_pods"): Entry(_canary_kill, _live_canary_kill),
    (K8S, "wait_for_canary_pods"): Entry(_namespaced),
    (K8S, "add_canary_delay"): Entry(_canary_delay, _live_canary_service),
    (K8S, "add_canary_abort"): Entry(_canary_abort, _live_canary_service),
    (K8S, "add_dependency_abort"): Entry(_dependency_abort, _live_canary_pods),
    (K8S, "remove_faults"): Entry(_namespaced),
    (K8S, "list_faults"): Entry(_namespaced),
    **{(PROBES, func): Entry(_nothing) for func in ("error_rate", "p95_ms", "p99_ms", "rps", "success_rate",
                                                      "thresholds_met")},
    ("chaosk8s.pod.actions", "terminate_pods"): Entry(_terminate_pods, _live_terminate_pods),
    **{("chaosk8s.pod.probes", func): Entry(_read_only) for func in (
        "pods_in_phase", "pods_not_in_phase", "count_pods", "count_min_pods", "pods_in_conditions")},
    **{("chaosk8s.deployment.probes", func): Entry(_read_only) for func in (
        "deployment_available_and_healthy", "deployment_fully_available", "deployment_not_fully_available",
        "deployment_partially_available")},
    **{("chaosprometheus.probes", func): Entry(_nothing) for func in ("query", "query_interval")},
}
HINTS = {
    "chaosistio": "chaosistio patches Flagger's VirtualService, which Flagger rewrites and which routes primary "
                  "traffic too: use loadkit.chaos.k8s.add_canary_delay / add_canary_abort",
    "chaosk8s.node": "node actions hit every workload on the node, not just the canary",
}


# -- the scan --------------------------------------------------------------------------------------

def scan(experiment: Mapping[str, Any], configuration: Mapping[str, Any], guards: Guards) -> Scan:
    """Everything wrong with an experiment that can be seen without touching any system."""
    result = Scan()
    declared = experiment.get("configuration") or {}
    for key in sorted(GUARD_KEYS & set(declared)):
        result.problems.append(f"configuration {key}: guard settings come only from loadkit's flags, never from "
                               "the experiment (drop it; use --allow-primary, --allow-namespace, --max-kill-share)")
    for key, value in declared.items():
        if isinstance(value, Mapping) and value.get("type") not in (None, "env"):
            _unguarded(result, f"configuration {key}", f"dynamic configuration (type {value.get('type')!r}) runs "
                       "an activity before the experiment", guards)
    for where, control in _controls(experiment):
        module = (control.get("provider") or {}).get("module")
        if module != CONTROL:
            _unguarded(result, where, f"control {module!r} is not loadkit's ({CONTROL})", guards)
    for where, activity in all_activities(experiment):
        _scan_activity(result, where, activity, configuration, guards)
    return result


def live_problems(experiment: Mapping[str, Any], configuration: Mapping[str, Any], guards: Guards) -> list[str]:
    """The allow-listed activities' checks against the live system (pods, Services, pod counts)."""
    problems: list[str] = []
    for where, activity in all_activities(experiment):
        provider = activity.get("provider") or {}
        entry = ALLOWED.get((str(provider.get("module")), str(provider.get("func"))))
        if entry is None or entry.live is None:
            continue
        try:
            entry.live(arguments(activity, configuration), guards, configuration)
        except SafetyError as exc:
            problems.append(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:  # the system cannot be asked, so the check cannot be made: refuse
            problems.append(f"{where}: cannot check it against the live system ({type(exc).__name__}: {exc})")
    return problems


def arguments(activity: Mapping[str, Any], configuration: Mapping[str, Any]) -> dict[str, Any]:
    """A python provider's arguments as chaoslib will pass them (`${var}` substituted, typed)."""
    provider = activity.get("provider") or {}
    raw = provider.get("arguments") or {}
    if not isinstance(raw, Mapping):
        return {}
    return dict(substitute(dict(raw), dict(configuration), {}))


def modules(experiment: Mapping[str, Any]) -> set[str]:
    return {str((a.get("provider") or {}).get("module")) for _, a in all_activities(experiment)}


def _scan_activity(result: Scan, where: str, activity: Mapping[str, Any], configuration: Mapping[str, Any],
                   guards: Guards) -> None:
    provider = activity.get("provider") or {}
    kind = provider.get("type")
    if kind != "python":
        if provider or not activity.get("ref"):
            _unguarded(result, where, f"a {kind!r} provider runs outside loadkit's guards", guards)
        return
    module, func = str(provider.get("module")), str(provider.get("func"))
    entry = ALLOWED.get((module, func))
    if entry is None:
        hint = next((h for prefix, h in HINTS.items() if module.startswith(prefix)), "")
        reason = hint or f"{module}.{func} is not an activity loadkit can guard (see docs/chaos.md for the list)"
        _unguarded(result, where, reason, guards)
        return
    args = arguments(activity, configuration)
    try:
        _bind(module, func, args)
        entry.check(args, guards)
    except SafetyError as exc:
        result.refuse(where, exc)
    for pause in ("before", "after"):
        value = (activity.get("pauses") or {}).get(pause)
        if value is not None:
            try:
                seconds = float(strict(substitute(value, dict(configuration), {}), (int, float), f"pauses.{pause}"))
                guards.check_fault_length(seconds, f"pause {pause}")
            except SafetyError as exc:
                result.refuse(where, exc)


def _bind(module: str, func: str, args: Args) -> None:
    """The arguments fit the function (as chaoslib will check), so a typo is named as a typo: an
    allow-listed module is safe to import."""
    import importlib
    import inspect

    try:
        target = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise SafetyError(f"{module}.{func} cannot be loaded: {exc}") from None
    parameters = inspect.signature(target).parameters
    given = {k: v for k, v in args.items() if k not in ("configuration", "secrets")}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        valid = ", ".join(p for p in parameters if p not in ("configuration", "secrets"))
        raise SafetyError(f"unknown argument(s) {', '.join(unknown)} (valid: {valid})")
    missing = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in given
               and name not in ("configuration", "secrets")]
    if missing:
        raise SafetyError(f"required argument {missing[0]!r} is missing")


def _unguarded(result: Scan, where: str, reason: str, guards: Guards) -> None:
    if guards.allow_unguarded:
        result.unguarded.append(f"{where}: {reason}")
    else:
        result.problems.append(f"{where}: {reason}; refused (--allow-unguarded runs it anyway, outside the guards)")


def all_activities(experiment: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Every activity, with where it is: hypothesis probes, method, rollbacks, and probe tolerances."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found: list[tuple[str, Mapping[str, Any]]] = []
    for section, items in (("steady-state probe", hypothesis.get("probes")), ("method", experiment.get("method")),
                           ("rollback", experiment.get("rollbacks"))):
        for activity in items or []:
            if not isinstance(activity, Mapping):
                continue
            where = f"{section} {activity.get('name') or activity.get('ref') or '?'}"
            found.append((where, activity))
            tolerance = activity.get("tolerance")
            if isinstance(tolerance, Mapping) and tolerance.get("type") == "probe":
                found.append((f"{where}: its tolerance probe", tolerance))
    return found


def _controls(experiment: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found = [("experiment control", c) for c in experiment.get("controls") or []]
    found += [("hypothesis control", c) for c in hypothesis.get("controls") or []]
    for where, activity in all_activities(experiment):
        found += [(f"{where}: control", c) for c in activity.get("controls") or []]
    return [(f"{where} {c.get('name', '?')}", c) for where, c in found if isinstance(c, Mapping)]
