"""Safety guards, enforced before any action runs (`loadkit chaos run` scans the experiment first)
and again inside every loadkit action (so plain `chaos run` is guarded too).

Settings come from the experiment's configuration (`loadkit chaos run` fills them from its flags):

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

SYSTEM_NAMESPACES = re.compile(r"kube-system|kube-public|kube-node-lease|istio-system|flagger-system|"
                               r"linkerd|cert-manager|monitoring")
DEFAULT_MAX_KILL_SHARE = 0.5


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
        is_primary = version == "primary" or workload.endswith("-primary")
        if is_primary and not self.allow_primary:
            raise SafetyError(f"{workload or version} is the primary workload, which serves users",
                              hint="pass --allow-primary (loadkit_allow_primary: true) if you mean it")

    def kill_quantity(self, requested: int, available: int, mode: str = "fixed") -> int:
        """How many pods a kill may take; refuses whole-workload kills and shares over the cap."""
        if requested < 1:
            raise SafetyError(f"pod kill quantity {requested} must be at least 1")
        count = math.ceil(requested * available / 100) if mode == "percentage" else requested
        cap = math.floor(available * self.max_kill_share)
        if available == 0:
            raise SafetyError("no pods match: nothing to kill (is the canary scaled up?)")
        if count > cap or count >= available:
            raise SafetyError(f"killing {count} of {available} pods is over the cap "
                              f"({self.max_kill_share:.0%} of the workload, never all of it)",
                              hint="kill fewer pods or raise loadkit_max_kill_share")
        return count


def check_selector(label_selector: str | None, name_pattern: str | None = None) -> None:
    if not (label_selector or "").strip() and not (name_pattern or "").strip():
        raise SafetyError("an empty label selector selects every pod in the namespace: refusing",
                          hint="select the canary, e.g. label_selector: app=bruno-site")


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


# -- scanning an experiment before it runs -----------------------------------------------------------

_TERMINATE = {("chaosk8s.pod.actions", "terminate_pods"), ("chaosk8s.pod.actions", "delete_pods")}


def scan_experiment(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> list[str]:
    """Problems with the experiment's actions, found without running anything."""
    guards = Guards.from_configuration(configuration)
    problems: list[str] = []
    for activity in _activities(experiment):
        provider = activity.get("provider") or {}
        if provider.get("type") != "python":
            continue
        args = {k: _resolve(v, configuration) for k, v in (provider.get("arguments") or {}).items()}
        where = f"{activity.get('name', '?')} ({provider.get('module')}.{provider.get('func')})"
        try:
            _check_call(str(provider.get("module")), str(provider.get("func")), args, guards)
        except SafetyError as exc:
            problems.append(f"{where}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
    return problems


def _check_call(module: str, func: str, args: dict[str, Any], guards: Guards) -> None:
    if (module, func) in _TERMINATE:
        check_selector(args.get("label_selector"), args.get("name_pattern"))
        if _truthy(args.get("all", False)):
            raise SafetyError("all: true kills every matching pod")
        guards.check_namespace(str(args.get("ns", "default")))
        guards.check_not_primary(str(args.get("label_selector", "")))
    elif module == "loadkit.chaos.k8s" and "ns" in args:
        guards.check_namespace(str(args["ns"]))
        if "name" in args:
            guards.check_not_primary(str(args["name"]))
    elif module == "loadkit.chaos.sandbox" and "version" in args:
        guards.check_not_primary("", str(args["version"]))


def _activities(experiment: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return [*(hypothesis.get("probes") or []), *(experiment.get("method") or []),
            *(experiment.get("rollbacks") or [])]


def _resolve(value: Any, configuration: Mapping[str, Any]) -> Any:
    """`${var}` -> its configuration value, as Chaos Toolkit substitutes it at run time."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if match and match.group(1) in configuration:
            return configuration[match.group(1)]
        return re.sub(r"\$\{(\w+)\}", lambda m: str(configuration.get(m.group(1), m.group(0))), value)
    return value
