"""Safety guards, enforced before any action runs and again inside every loadkit action.

`loadkit chaos run` scans the experiment statically (selectors, names, namespaces, hosts) and
then resolves every pod kill against the live pod counts (the share cap), all before the load or
the hypothesis start; `loadkit chaos validate` does the static part. Inside each loadkit action
the same rules run again, so a plain `chaos run` is guarded too.

Settings come from the experiment's configuration, which `loadkit chaos run` fills from its flags
(they cannot be set with --var):

    loadkit_allow_primary: false            # never touch the primary workload unless true
    loadkit_allowed_namespaces: [bruno]     # regexes; default: any but the system namespaces
    loadkit_max_kill_share: 0.5             # kill at most this share of a workload's pods
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadkit.errors import SafetyError
from loadkit.safety import SYSTEM_NAMESPACES

DEFAULT_MAX_KILL_SHARE = 0.5
GUARD_KEYS = frozenset({"loadkit_allow_primary", "loadkit_allowed_namespaces", "loadkit_max_kill_share",
                        "loadkit_run_id"})
PRIMARY_HINT = "pass --allow-primary (loadkit_allow_primary: true) if you mean it"


@dataclass(frozen=True)
class Guards:
    allow_primary: bool = False
    namespaces: tuple[re.Pattern[str], ...] = ()
    max_kill_share: float = DEFAULT_MAX_KILL_SHARE

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None) -> Guards:
        conf = configuration or {}
        raw = conf.get("loadkit_allowed_namespaces") or ()
        patterns = [p.strip() for p in (raw.split(",") if isinstance(raw, str) else raw) if str(p).strip()]
        share = float(conf.get("loadkit_max_kill_share", DEFAULT_MAX_KILL_SHARE))
        if not 0 < share <= 1:
            raise SafetyError(f"loadkit_max_kill_share {share} must be in (0, 1]")
        return cls(allow_primary=_truthy(conf.get("loadkit_allow_primary", False)),
                   namespaces=tuple(re.compile(str(p)) for p in patterns), max_kill_share=share)

    def check_namespace(self, namespace: str) -> None:
        if not namespace:
            raise SafetyError("no namespace given: refusing to act on a whole cluster")
        if self.namespaces:
            if not any(p.fullmatch(namespace) for p in self.namespaces):
                raise SafetyError(f"namespace {namespace!r} is not in the allow-list",
                                  hint="add it with --allow-namespace (loadkit_allowed_namespaces)")
        elif SYSTEM_NAMESPACES.fullmatch(namespace):
            raise SafetyError(f"namespace {namespace!r} is a system namespace",
                              hint="allow it explicitly with --allow-namespace (loadkit_allowed_namespaces)")

    def check_not_primary(self, workload: str, version: str | None = None) -> None:
        is_primary = version == "primary" or "primary" in workload
        if is_primary and not self.allow_primary:
            raise SafetyError(f"{workload or version} is (or may include) the primary workload, which serves users",
                              hint=PRIMARY_HINT)

    def check_selector_scope(self, label_selector: str) -> None:
        """A selector must pick the canary: no negations (they select everything else, primary too)."""
        if re.search(r"!=|\bnotin\b|(^|,)\s*!", label_selector) and not self.allow_primary:
            raise SafetyError(f"label selector {label_selector!r} selects by exclusion, which includes the primary",
                              hint="select the canary positively, e.g. app=bruno-site")
        self.check_not_primary(label_selector)

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


def check_selector(label_selector: str | None, name_pattern: str | None = None) -> None:
    if not (label_selector or "").strip():
        what = "a name pattern alone can match every pod" if (name_pattern or "").strip() else \
            "an empty label selector selects every pod in the namespace"
        raise SafetyError(f"{what}: refusing", hint="select the canary with label_selector, e.g. app=bruno-site")


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


# -- scanning an experiment before it runs -----------------------------------------------------------

KILLS = {("chaosk8s.pod.actions", "terminate_pods"), ("chaosk8s.pod.actions", "delete_pods"),
         ("loadkit.chaos.k8s", "kill_canary_pods"), ("loadkit.chaos.sandbox", "kill_pods")}


def scan_experiment(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> list[str]:
    """Problems with the experiment's activities, found without running anything."""
    guards = Guards.from_configuration(configuration)
    problems: list[str] = []
    for activity in activities(experiment):
        provider = activity.get("provider") or {}
        if provider.get("type") != "python":
            continue
        args = call_arguments(activity, configuration)
        where = f"{activity.get('name', '?')} ({provider.get('module')}.{provider.get('func')})"
        try:
            _check_call(str(provider.get("module")), str(provider.get("func")), args, guards)
        except SafetyError as exc:
            problems.append(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
    return problems


def _check_call(module: str, func: str, args: dict[str, Any], guards: Guards) -> None:
    if module.startswith("chaosk8s.node"):
        raise SafetyError("node actions hit every workload on the node, not just the canary")
    if module.startswith("chaosistio.fault") and not guards.allow_primary:
        raise SafetyError("chaosistio patches Flagger's VirtualService, which Flagger rewrites and which routes "
                          "primary traffic too", hint="use loadkit.chaos.k8s.add_canary_delay / add_canary_abort")
    if module.startswith(("chaosk8s", "chaosistio", "loadkit.chaos.k8s")):
        guards.check_namespace(str(args.get("ns", "default")))
    if (module, func) in {("chaosk8s.pod.actions", "terminate_pods"), ("chaosk8s.pod.actions", "delete_pods")}:
        check_selector(args.get("label_selector"), args.get("name_pattern"))
        if _truthy(args.get("all", False)):
            raise SafetyError("all: true kills every matching pod")
        guards.check_selector_scope(str(args.get("label_selector", "")))
        guards.check_not_primary(str(args.get("name_pattern") or ""))
        if str(args.get("mode", "fixed")) == "percentage" and float(args.get("qty", 1)) > guards.max_kill_share * 100:
            raise SafetyError(f"{args.get('qty')} % of the pods is over the cap ({guards.max_kill_share:.0%})")
    elif module.startswith("chaosk8s"):
        for key in ("name", "label_selector", "deployment_name"):
            if key in args:
                guards.check_not_primary(str(args[key]))
    elif module == "loadkit.chaos.k8s":
        if "name" in args:
            guards.check_not_primary(str(args["name"]))
        if func in ("add_canary_delay", "add_canary_abort") and args.get("host"):
            check_canary_host(str(args["host"]), str(args.get("name", "")), guards)
    elif module == "loadkit.chaos.sandbox" and "version" in args:
        guards.check_not_primary("", str(args["version"]))


def check_canary_host(host: str, name: str, guards: Guards) -> None:
    first = host.split(".")[0]
    if (first == name or first.endswith("-primary")) and not guards.allow_primary:
        raise SafetyError(f"host {host} is the apex or primary Service, which carries primary traffic",
                          hint=f"fault the canary Service ({name}-canary...) or {PRIMARY_HINT}")


def activities(experiment: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return [*(hypothesis.get("probes") or []), *(experiment.get("method") or []),
            *(experiment.get("rollbacks") or [])]


def call_arguments(activity: Mapping[str, Any], configuration: Mapping[str, Any]) -> dict[str, Any]:
    provider = activity.get("provider") or {}
    return {k: _resolve(v, configuration) for k, v in (provider.get("arguments") or {}).items()}


def _resolve(value: Any, configuration: Mapping[str, Any]) -> Any:
    """`${var}` -> its configuration value, as Chaos Toolkit substitutes it at run time."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if match and match.group(1) in configuration:
            return configuration[match.group(1)]
        return re.sub(r"\$\{(\w+)\}", lambda m: str(configuration.get(m.group(1), m.group(0))), value)
    return value
