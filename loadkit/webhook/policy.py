"""From a Flagger payload to a validated request: metadata keys, named profiles and threshold sets,
the canary's names, and the safety rules (allowed namespaces and targets). Nothing here names a
command or a file.

The target policy is an allow-list. By default a run may load only the payload's own Services,
the ones Flagger manages for that Canary: `<service>-canary`, `<service>-primary` and `<service>`
in the payload's namespace (`.svc` or `.svc.cluster.local`, any port). Anything wider needs an
explicit server setting (`--allow-target`, `server.allow_targets`). Namespaces of the platform
itself (kube-system, istio-system, flux-system, ..., and loadkit's own) are refused unless
`--allow-namespace` names them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from loadkit.analysis import client_compares, prometheus_checks
from loadkit.config import Config, RollbackOn
from loadkit.errors import ConfigError, PayloadError, SafetyError, UsageError
from loadkit.load.preflight import validate_target
from loadkit.load.profiles import Profile, get_profile
from loadkit.models.specs import Threshold
from loadkit.safety import API_SERVER_HOSTS, is_system_namespace
from loadkit.units import parse_duration, parse_header
from loadkit.webhook.models import DNS_LABEL, FlaggerPayload, GateMode, HookKind, MetadataKey

T = TypeVar("T")
CONTINUOUS = "analysis"  # metadata duration: load until the analysis ends


@dataclass(frozen=True)
class Policy:
    """What callers may ask for, beyond the defaults described in the module docstring."""

    allow_targets: Sequence[re.Pattern[str]] = ()
    allow_namespaces: Sequence[re.Pattern[str]] = ()
    own_namespace: str | None = field(default_factory=lambda: os.environ.get("POD_NAMESPACE") or None)

    def check_namespace(self, namespace: str) -> None:
        if self.allow_namespaces:
            if not any(p.fullmatch(namespace) for p in self.allow_namespaces):
                raise SafetyError(f"namespace {namespace!r} is not allowed by --allow-namespace")
            return
        if is_system_namespace(namespace) or namespace == self.own_namespace:
            what = "loadkit's own namespace" if namespace == self.own_namespace else "a system namespace"
            raise SafetyError(f"namespace {namespace!r} is {what}: no load is run for it",
                              hint="allow it explicitly with --allow-namespace REGEX if you mean it")

    def check_target(self, target: str, names: Names) -> None:
        host = (urlsplit(target).hostname or "").rstrip(".")
        if API_SERVER_HOSTS.fullmatch(host):
            raise SafetyError(f"target {target} is the Kubernetes API server: never a load target")
        service_ns = re.fullmatch(r"[^.]+\.([^.]+)(\.svc(\.cluster\.local)?)?", host)
        if service_ns and not re.fullmatch(r"\d+", service_ns.group(1)):
            self.check_namespace(service_ns.group(1))  # a Service of the platform, however wide --allow-target is
        if any(p.fullmatch(target) for p in self.allow_targets):
            return
        if host in names.own_hosts():
            return
        own = ", ".join(sorted(h for h in names.own_hosts() if h.endswith(".svc")))
        raise SafetyError(
            f"target {target} is not allowed: by default only the canary's own Services ({own}) may be loaded",
            hint="start loadkit serve with --allow-target REGEX (or set server.allow_targets) to allow it",
        )


@dataclass(frozen=True)
class Names:
    """The Canary's names as Flagger uses them: its own, its Services' (service.name) and its workload's
    (targetRef.name), which default to the Canary's name."""

    namespace: str
    name: str
    service: str
    workload: str

    def template_fields(self) -> dict[str, str]:
        return {"name": self.name, "namespace": self.namespace, "service": self.service, "workload": self.workload}

    def own_hosts(self) -> frozenset[str]:
        """The Services Flagger manages for this Canary, as in-cluster host names (`<svc>.<ns>` is
        loaded as `<svc>.<ns>.svc`, see in_cluster)."""
        bases = (f"{self.service}-canary", f"{self.service}-primary", self.service)
        suffixes = ("", ".svc", ".svc.cluster.local")
        return frozenset(f"{b}.{self.namespace}{suffix}" for b in bases for suffix in suffixes)


@dataclass(frozen=True)
class HookCall:
    """A validated hook call: who is asking and, for hooks that run load, what to run."""

    kind: HookKind
    payload: FlaggerPayload
    names: Names
    profile: Profile | None = None
    thresholds_name: str = "default"
    thresholds: list[Threshold] = field(default_factory=list)
    target: str = ""
    baseline: str | None = None  # the primary's URL, when a compare check runs load against it
    users: int | None = None
    spawn_rate: float | None = None
    rate: float | None = None  # open model: iterations per second
    duration_s: float | None = None
    continuous: bool = False  # metadata duration: analysis
    headers: dict[str, str] = field(default_factory=dict)
    gate: GateMode | None = None
    rollback_on: RollbackOn | None = None

    @property
    def namespace(self) -> str:
        return self.payload.namespace

    @property
    def name(self) -> str:
        return self.payload.name

    @property
    def checksum(self) -> str:
        return self.payload.checksum


RUN_HOOKS = (HookKind.PRE_ROLLOUT, HookKind.ROLLOUT)
GATED = (HookKind.CONFIRM_ROLLOUT, HookKind.CONFIRM_TRAFFIC_INCREASE, HookKind.CONFIRM_PROMOTION)
VALID_KEYS = tuple(k.value for k in MetadataKey)


def resolve(kind: HookKind, payload: FlaggerPayload, config: Config, policy: Policy) -> HookCall:
    """Validate everything about a call before any work starts; raise PayloadError/SafetyError."""
    policy.check_namespace(payload.namespace)
    meta = dict(payload.metadata or {})
    if kind is HookKind.EVENT:
        return HookCall(kind=kind, payload=payload, names=names_of(payload, {}, config))  # any user metadata
    unknown = sorted(set(meta) - set(VALID_KEYS))
    if unknown:
        raise PayloadError(f"unknown metadata key(s) {', '.join(map(repr, unknown))}; "
                           f"valid keys: {', '.join(VALID_KEYS)}")
    names = names_of(payload, meta, config)
    gate = _gate(meta, kind)
    rollback_on = _rollback_on(meta, kind)
    if kind not in RUN_HOOKS:
        profile = _profile(meta, config, kind) if MetadataKey.PROFILE in meta else None
        return HookCall(kind=kind, payload=payload, names=names, profile=profile, gate=gate, rollback_on=rollback_on)
    return _run_call(kind, payload, names, meta, config, policy)


def names_of(payload: FlaggerPayload, meta: dict[str, str], config: Config) -> Names:
    """service/workload from metadata, else `server.canaries["namespace/name"]`, else the Canary's name."""
    configured = config.server.canaries.get(f"{payload.namespace}/{payload.name}")
    values = {}
    for key in (MetadataKey.SERVICE, MetadataKey.WORKLOAD):
        value = meta.get(key) or (getattr(configured, key.value) if configured else None) or payload.name
        if not re.fullmatch(DNS_LABEL, value):
            raise PayloadError(f"metadata {key.value} {value[:64]!r} is not a Kubernetes name (a DNS label)")
        values[key.value] = value
    return Names(namespace=payload.namespace, name=payload.name, **values)


def _run_call(kind: HookKind, payload: FlaggerPayload, names: Names, meta: dict[str, str], config: Config,
              policy: Policy) -> HookCall:
    profile = _profile(meta, config, kind)
    target = _target(meta, names, config)
    policy.check_target(target, names)
    target = in_cluster(target, names)
    continuous = meta.get(MetadataKey.DURATION, "").strip().lower() == CONTINUOUS
    if continuous and kind is HookKind.PRE_ROLLOUT:
        raise PayloadError("metadata duration: analysis is for rollout hooks: pre-rollout blocks until its run ends, "
                           "so give it a duration (e.g. 30s)")
    duration = None if continuous else _parse(meta, MetadataKey.DURATION, parse_duration)
    users = _parse(meta, MetadataKey.USERS, _positive_int)
    try:
        thresholds = config.threshold_set(meta.get(MetadataKey.THRESHOLDS))
    except ConfigError as exc:
        raise PayloadError(f"metadata thresholds: {exc.message}; {exc.hint}") from None
    server_side = [t.name for t in thresholds if not t.is_client_range]
    if continuous and server_side:
        raise PayloadError(f"a continuous run (duration: analysis) is judged live on loadkit's own requests, but the "
                           f"threshold set has checks judged only when a run ends ({', '.join(server_side)}): give a "
                           "fixed duration, or put Prometheus checks in the Canary's analysis.metrics (Flagger runs "
                           "them every tick)")
    baseline = _baseline(thresholds, names, config, policy)
    return HookCall(
        kind=kind, payload=payload, names=names, profile=profile, thresholds=thresholds, baseline=baseline,
        thresholds_name=meta.get(MetadataKey.THRESHOLDS) or "default", target=target, users=users,
        spawn_rate=_parse(meta, MetadataKey.SPAWN_RATE, _positive_float), duration_s=duration,
        rate=_parse(meta, MetadataKey.RATE, _rate),
        continuous=continuous, headers=_parse(meta, MetadataKey.HEADERS, parse_headers) or {},
    )


def in_cluster(target: str, names: Names) -> str:
    """`http://<service>-canary.<namespace>` -> `...<namespace>.svc`: the same Service inside the cluster,
    but it can never resolve to a public host (a namespace named like a TLD)."""
    parts = urlsplit(target)
    short = {h for h in names.own_hosts() if not h.endswith((".svc", ".cluster.local"))}
    if parts.hostname in short:
        netloc = f"{parts.hostname}.svc" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return target


def _baseline(thresholds: list[Threshold], names: Names, config: Config, policy: Policy) -> str | None:
    """Checks this server cannot measure are refused now, not after the load; the primary's URL for compares."""
    if prometheus_checks(thresholds) and config.prometheus.url is None:
        listed = ", ".join(t.name for t in prometheus_checks(thresholds))
        raise PayloadError(f"the threshold set has Prometheus checks ({listed}) but this server has no Prometheus; "
                           "start loadkit serve with --prometheus URL (or set prometheus.url in its config)")
    compares = client_compares(thresholds)
    if not compares:
        return None
    raw = config.server.baseline_template.format(**names.template_fields())
    try:
        baseline = validate_target(raw)
    except UsageError as exc:
        raise PayloadError(f"server.baseline_template gives a bad URL: {exc.message}") from None
    for url in [baseline, *(t.compare.baseline for t in compares if t.compare and "://" in t.compare.baseline)]:
        policy.check_target(url, names)
    return in_cluster(baseline, names)


def _profile(meta: dict[str, str], config: Config, kind: HookKind) -> Profile:
    name = meta.get(MetadataKey.PROFILE) or config.server.default_profiles.get(kind, "smoke")
    try:
        return get_profile(name, config.profiles)
    except ConfigError as exc:
        raise PayloadError(f"metadata profile: {exc.message}; {exc.hint}") from None


def _target(meta: dict[str, str], names: Names, config: Config) -> str:
    raw = meta.get(MetadataKey.TARGET) or config.server.target_template.format(**names.template_fields())
    try:
        return validate_target(raw)
    except UsageError as exc:
        raise PayloadError(f"metadata target: {exc.message}") from None


def _gate(meta: dict[str, str], kind: HookKind) -> GateMode | None:
    if MetadataKey.GATE not in meta:
        return None
    if kind not in GATED:
        raise PayloadError(f"metadata gate applies to {', '.join(k.value for k in GATED)}, not to {kind.value}")
    try:
        mode = GateMode(meta[MetadataKey.GATE].strip())
    except ValueError:
        valid = ", ".join(m.value for m in GateMode)
        raise PayloadError(f"metadata gate {meta[MetadataKey.GATE][:64]!r}: use one of {valid}") from None
    if kind is HookKind.CONFIRM_ROLLOUT and mode is not GateMode.MANUAL:
        raise PayloadError("confirm-rollout runs before any load, so it has nothing to gate on but an approval: "
                           "use metadata gate: manual")
    return mode


def _rollback_on(meta: dict[str, str], kind: HookKind) -> RollbackOn | None:
    if MetadataKey.ROLLBACK_ON not in meta:
        return None
    if kind is not HookKind.ROLLBACK:
        raise PayloadError(f"metadata rollback_on applies to the rollback hook, not to {kind.value}")
    try:
        return RollbackOn(meta[MetadataKey.ROLLBACK_ON].strip())
    except ValueError:
        valid = ", ".join(m.value for m in RollbackOn)
        raise PayloadError(f"metadata rollback_on {meta[MetadataKey.ROLLBACK_ON][:64]!r}: use one of {valid}") \
            from None


def _parse(meta: dict[str, str], key: MetadataKey, parse: Callable[[str], T]) -> T | None:
    if key not in meta:
        return None
    try:
        return parse(meta[key])
    except (ValueError, TypeError) as exc:
        hint = f", or '{CONTINUOUS}' to load until the analysis ends" if key is MetadataKey.DURATION else ""
        raise PayloadError(f"metadata {key.value}: {exc}{hint}") from None


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value < 1:
        raise ValueError(f"{text!r} must be a whole number of at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text.strip())
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r} must be a finite number above 0")
    return value


_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
MIN_RATE = 0.01  # iterations per second: below, a run of minutes starts nothing


def _rate(text: str) -> float:
    """A rate as Flagger metadata writes one: a plain decimal number (no exponent, underscore or
    non-ASCII digit, which float() would take), at least 0.01 iterations per second."""
    stripped = text.strip()
    if not _PLAIN_DECIMAL.fullmatch(stripped):
        raise ValueError(f"{text!r} is not a plain decimal number of iterations per second, e.g. 100 or 2.5")
    value = float(stripped)
    if value < MIN_RATE:
        raise ValueError(f"{text!r} is below the least rate loadkit runs ({MIN_RATE:g} iterations per second)")
    return value


# Headers that would change where or how the request goes, not what the canary sees.
_REFUSED_HEADERS = frozenset({"host", "connection", "content-length", "transfer-encoding", "te", "upgrade",
                              "proxy-authorization", "keep-alive", "trailer"})


def parse_headers(text: str) -> dict[str, str]:
    """`{"x-canary": "insider"}` (JSON, as Flagger metadata is strings) or `Name: value` lines."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("the JSON headers object is nested too deeply") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("a JSON headers object must map names to string values")
        headers = dict(parse_header(f"{k}: {v}") for k, v in data.items())
    else:
        headers = dict(parse_header(line) for line in text.splitlines() if line.strip())
    refused = sorted(name for name in headers if name.lower() in _REFUSED_HEADERS)
    if refused:
        raise ValueError(f"header(s) {', '.join(refused)} cannot be set: they change where the request goes")
    return headers
