"""From a Flagger payload to a validated request: metadata keys, named profiles and threshold sets,
and the safety rules (allowed namespaces and targets). Nothing here names a command or a file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from loadkit.config import Config
from loadkit.errors import ConfigError, PayloadError, SafetyError, UsageError
from loadkit.load.preflight import validate_target
from loadkit.load.profiles import Profile, get_profile
from loadkit.models import Threshold
from loadkit.serverside import client_compares, prometheus_checks
from loadkit.units import parse_duration, parse_header
from loadkit.webhook.models import EVENT_KEYS, FlaggerPayload, HookKind, MetadataKey

T = TypeVar("T")
_SVC_HOST = r"https?://[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.svc(\.cluster\.local)?(:\d+)?(/.*)?"


@dataclass(frozen=True)
class Policy:
    """What callers may ask for. Empty lists mean the defaults described in docs/webhook.md."""

    allow_targets: Sequence[re.Pattern[str]] = ()
    allow_namespaces: Sequence[re.Pattern[str]] = ()

    def check_namespace(self, namespace: str) -> None:
        if self.allow_namespaces and not any(p.fullmatch(namespace) for p in self.allow_namespaces):
            raise SafetyError(f"namespace {namespace!r} is not allowed by --allow-namespace")

    def check_target(self, target: str, payload: FlaggerPayload) -> None:
        patterns = list(self.allow_targets) or default_target_patterns(payload)
        if not any(p.fullmatch(target) for p in patterns):
            raise SafetyError(
                f"target {target} is not allowed (allowed: {' | '.join(p.pattern for p in patterns)})",
                hint="start loadkit serve with --allow-target REGEX to allow it",
            )


def default_target_patterns(payload: FlaggerPayload) -> list[re.Pattern[str]]:
    """In-cluster services only: *.svc, *.svc.cluster.local and <name>-canary.<namespace>
    (which `in_cluster` turns into <name>-canary.<namespace>.svc before it is loaded)."""
    canary = rf"https?://{re.escape(payload.name)}-canary\.{re.escape(payload.namespace)}(:\d+)?(/.*)?"
    return [re.compile(_SVC_HOST), re.compile(canary)]


def in_cluster(target: str, payload: FlaggerPayload) -> str:
    """`http://<name>-canary.<namespace>` -> `http://<name>-canary.<namespace>.svc`: the same Service
    inside the cluster, but it can never resolve to a public host (a namespace named like a TLD)."""
    parts = urlsplit(target)
    if parts.hostname == f"{payload.name}-canary.{payload.namespace}":
        netloc = f"{parts.hostname}.svc" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return target


@dataclass(frozen=True)
class HookCall:
    """A validated hook call: who is asking and, for hooks that run load, what to run."""

    kind: HookKind
    payload: FlaggerPayload
    profile: Profile | None = None
    thresholds_name: str = "default"
    thresholds: list[Threshold] = field(default_factory=list)
    target: str = ""
    baseline: str | None = None  # the primary's URL, when a compare check runs load against it
    users: int | None = None
    spawn_rate: float | None = None
    duration_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

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
VALID_KEYS = tuple(k.value for k in MetadataKey)


def resolve(kind: HookKind, payload: FlaggerPayload, config: Config, policy: Policy) -> HookCall:
    """Validate everything about a call before any work starts; raise PayloadError/SafetyError."""
    policy.check_namespace(payload.namespace)
    meta = dict(payload.metadata or {})
    allowed = set(VALID_KEYS) | (EVENT_KEYS if kind is HookKind.EVENT else set())
    unknown = sorted(set(meta) - allowed)
    if unknown:
        raise PayloadError(f"unknown metadata key(s) {', '.join(map(repr, unknown))}; "
                           f"valid keys: {', '.join(VALID_KEYS)}")
    if kind not in RUN_HOOKS and kind is not HookKind.EVENT:
        return HookCall(kind=kind, payload=payload,
                        profile=_profile(meta, config, kind) if MetadataKey.PROFILE in meta else None)
    if kind is HookKind.EVENT:
        return HookCall(kind=kind, payload=payload)
    return _run_call(kind, payload, meta, config, policy)


def _run_call(kind: HookKind, payload: FlaggerPayload, meta: dict[str, str], config: Config,
              policy: Policy) -> HookCall:
    profile = _profile(meta, config, kind)
    target = _target(meta, payload, config)
    policy.check_target(target, payload)
    target = in_cluster(target, payload)
    limits = config.server
    duration = _parse(meta, MetadataKey.DURATION, parse_duration)
    if duration is not None and duration > limits.max_duration:
        raise PayloadError(f"metadata duration {meta[MetadataKey.DURATION]!r} is longer than this server's "
                           f"max_duration ({limits.max_duration:g}s)")
    users = _parse(meta, MetadataKey.USERS, _positive_int)
    if users is not None and users > limits.max_users:
        raise PayloadError(f"metadata users {users} is more than this server's max_users ({limits.max_users})")
    try:
        thresholds = config.threshold_set(meta.get(MetadataKey.THRESHOLDS))
    except ConfigError as exc:
        raise PayloadError(f"metadata thresholds: {exc.message}; {exc.hint}") from None
    baseline = _baseline(thresholds, payload, config, policy)
    return HookCall(
        kind=kind, payload=payload, profile=profile, thresholds=thresholds, baseline=baseline,
        thresholds_name=meta.get(MetadataKey.THRESHOLDS) or "default", target=target, users=users,
        spawn_rate=_parse(meta, MetadataKey.SPAWN_RATE, _positive_float), duration_s=duration,
        headers=_parse(meta, MetadataKey.HEADERS, parse_headers) or {},
    )


def _baseline(thresholds: list[Threshold], payload: FlaggerPayload, config: Config, policy: Policy) -> str | None:
    """Checks this server cannot measure are refused now, not after the load; the primary's URL for compares."""
    if prometheus_checks(thresholds) and config.prometheus.url is None:
        names = ", ".join(t.name for t in prometheus_checks(thresholds))
        raise PayloadError(f"the threshold set has Prometheus checks ({names}) but this server has no Prometheus; "
                           "start loadkit serve with --prometheus URL (or set prometheus.url in its config)")
    if not client_compares(thresholds):
        return None
    raw = config.server.baseline_template.format(name=payload.name, namespace=payload.namespace)
    try:
        baseline = validate_target(raw)
    except UsageError as exc:
        raise PayloadError(f"server.baseline_template gives a bad URL: {exc.message}") from None
    policy.check_target(baseline, payload)
    return baseline


def _profile(meta: dict[str, str], config: Config, kind: HookKind) -> Profile:
    name = meta.get(MetadataKey.PROFILE) or config.server.default_profiles.get(kind.value, "smoke")
    try:
        return get_profile(name, config.profiles)
    except ConfigError as exc:
        raise PayloadError(f"metadata profile: {exc.message}; {exc.hint}") from None


def _target(meta: dict[str, str], payload: FlaggerPayload, config: Config) -> str:
    raw = meta.get(MetadataKey.TARGET) or config.server.target_template.format(
        name=payload.name, namespace=payload.namespace)
    try:
        return validate_target(raw)
    except UsageError as exc:
        raise PayloadError(f"metadata target: {exc.message}") from None


def _parse(meta: dict[str, str], key: MetadataKey, parse: Callable[[str], T]) -> T | None:
    if key not in meta:
        return None
    try:
        return parse(meta[key])
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"metadata {key.value}: {exc}") from None


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
