"""A replay of Flagger's canary scheduler, calling webhooks exactly the way Flagger does.

Written against fluxcd/flagger at 15bd6ad5 (see ../shared/reference/flagger-and-canary-scoring.md, sections
1.1-1.5 and 3.1) so that tests can drive a real `loadkit serve` through the call sequences real Flagger makes.
Which Flagger function each part follows:

- `Canary` / `CanaryStatus`: the Canary object and its status (pkg/apis/flagger/v1beta1). `Canary.spec` is the
  revision the user applied (the target Deployment's pod template); `Canary.routes` is what the mesh router holds
  (`GetRoutes`/`SetRoutes`), which is *not* the same as `status.canary_weight` (`SetStatusPhase` zeroes the latter
  on WaitingPromotion/Finalising while the routes keep their weights).
- Status writes follow pkg/canary/status.go: `syncCanaryStatus` (`SyncStatus`: phase/weight/failedChecks/
  iterations as given, LastAppliedSpec = hash(current spec), TrackedConfigs = current configs, LastPromotedSpec too
  on Initialized), `setStatusPhase` (weight and iterations zeroed unless Progressing/Waiting/Promoting,
  iterations = analysis.iterations-1 on WaitingPromotion, LastPromotedSpec = LastAppliedSpec on Succeeded),
  `setStatusFailedChecks`, `setStatusWeight`, `setStatusIterations`.
- Change detection follows pkg/canary/spec.go `hasSpecChanged` (no LastAppliedSpec -> changed; the primary's
  spec (LastPromotedSpec) -> *not* changed, a manual rollback; otherwise differs from LastAppliedSpec) and
  config_tracker.go `HasConfigChanged`.
- `checksum`: webhook.go `canaryChecksum` = ComputeHash{TrackedConfigs, LastAppliedSpec}, with a deterministic
  FNV-32a + SafeEncodeString hash shaped like Flagger's (`compute_hash`); `checksum_of(spec)` is the value hooks see
  once Flagger has synced that spec. Like Flagger, the scheduler reads the Canary once per tick and uses that
  snapshot, so a status written during a tick shows in the payloads of the *next* tick, except where Flagger re-reads
  the Canary (checkCanaryStatus). So confirm-rollout sees the previously synced revision; pre-rollout and later the
  new one; post-rollout on rollback the tick's snapshot.
- `FlaggerLoop.tick()`: scheduler.go `advanceCanary`, in its order: setPhaseInitialized, shouldAdvance (the
  Failed phase syncs LastAppliedSpec first), checkCanaryStatus (confirm-rollout), hasCanaryRevisionChanged
  ("New revision detected! Restarting analysis": routes to primary, SyncStatus(Progressing), no hooks),
  shouldSkipAnalysis, rollback hooks, runPromotionTrafficShift (Promoting), the Finalising branch (Succeeded,
  post-rollout), the failedChecks threshold, pre-rollout hooks or runAnalysis (rollout hooks then `metric_check`),
  then runAB / runBlueGreen / confirm-traffic-increase + runCanary, and `rollback`. The primary and canary are
  always ready (IsPrimaryReady/IsCanaryReady are not simulated, nor is the progress deadline or the Kubernetes
  provider); Promote is recorded in `Canary.primary_spec`.
- Hook runners: scheduler_hooks.go (runConfirmRolloutHooks, runConfirmTrafficIncreaseHooks,
  runConfirmPromotionHooks, runPreRolloutHooks, runPostRolloutHooks, runRollbackHooks) and runAnalysis: hooks of a
  type run in spec order, the first failure stops the rest; for rollback hooks the first *success* rolls back.
- Transport: webhook.go `CallWebhook` / `CallEventWebhook` / `callWebhook` with go-retryablehttp v0.7.8
  (`DefaultRetryPolicy`, `DefaultBackoff`, `Client.Do`): one POST of compact JSON {name, namespace, phase, checksum,
  metadata?}, success only for 200-202, a connection error or timeout is a failure, `timeout` per attempt (default
  10s), `retries` retried on connection errors, 429 and >= 500 except 501 with backoff 1s, 2s, 4s ... (max 30s) or
  the Retry-After of a 429/503; the error text (the response body, or "POST <url> giving up after N attempt(s)")
  is what Flagger puts into its events. `FlaggerLoop(backoff_scale=...)` shrinks the waits for tests.
- Events: events.go `recordEvent*` / `sendEventToWebhook`: every event is kept in `FlaggerLoop.events` and POSTed
  to each `event` hook (or the `event_webhook` standing in for Flagger's -event-webhook flag when there is none).
- `FlaggerLoop.run()`: job.go `CanaryJob.Start`: one tick at once, then a Go ticker (a tick that overruns the
  interval is followed by one tick at once; further missed ticks are dropped).

Not simulated: alerts, metric providers (a `metric_check` callback stands in), canary/primary readiness,
`interval` < 10s being raised to 10s (tests use short intervals on purpose), Go's client timeout covering the whole
exchange (httpx applies `timeout` to connect, write and each read).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

INITIALIZING = "Initializing"
INITIALIZED = "Initialized"
WAITING = "Waiting"
PROGRESSING = "Progressing"
WAITING_PROMOTION = "WaitingPromotion"
PROMOTING = "Promoting"
FINALISING = "Finalising"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

CANARY, AB_TESTING, BLUE_GREEN = "canary", "ab-testing", "blue-green"  # Canary.DeploymentStrategy()
HOOK_TYPES = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
              "post-rollout", "rollback", "event")
NORMAL, WARNING = "Normal", "Warning"
TOTAL_WEIGHT = 100


# --- hashing: pkg/canary/spec.go ComputeHash, pkg/controller/webhook.go canaryChecksum ---------------------------

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString


def compute_hash(value: object) -> str:
    """A short, deterministic hash shaped like Flagger's ComputeHash (FNV-32a, then SafeEncodeString)."""
    digest = 0x811C9DC5
    for byte in _canonical(value).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHANUMS[ord(ch) % len(_SAFE_ALPHANUMS)] for ch in str(digest))


def _canonical(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_canonical(k)}:{_canonical(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, tuple | list):
        return "{" + ", ".join(_canonical(v) for v in value) + "}"
    return json.dumps(value)


def spec_hash(spec: str) -> str:
    """What Flagger stores as LastAppliedSpec/LastPromotedSpec for a pod template (here: a revision string)."""
    return compute_hash(("spec", spec))


def status_checksum(tracked_configs: Mapping[str, str] | None, last_applied_spec: str) -> str:
    return compute_hash(("checksum", tracked_configs, last_applied_spec))


def checksum_of(spec: str, configs: Mapping[str, str] | None = None) -> str:
    """The checksum webhooks receive once Flagger has synced `spec` (and `configs`) into the Canary status."""
    return status_checksum(dict(configs or {}), spec_hash(spec))


# --- the Canary resource -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """One entry of `analysis.webhooks` (CanaryWebhook)."""

    type: str  # one of HOOK_TYPES; "" is treated as "rollout", like Flagger
    name: str = ""  # defaults to the type
    url: str = ""  # defaults to f"{FlaggerLoop.url}/flagger/{type}"
    metadata: Mapping[str, str] | None = None
    timeout: str | float = ""  # a Go duration ("10s", "250ms") or seconds; "" (or 1 character) is 10s
    retries: int = 0
    mute_alert: bool = False
    disable_tls: bool = False

    @property
    def kind(self) -> str:
        return self.type or "rollout"

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass
class Analysis:
    """`spec.analysis` (CanaryAnalysis). Zero values mean what they mean to Flagger (threshold 0 -> 1,
    max_weight 0 -> 100 or the last step_weights entry, step_weight 0 with no step_weights -> never advances),
    except that `step_weight` left as None becomes 10, or 0 when `step_weights` is given."""

    hooks: Sequence[Hook] = ()
    interval_s: float = 1.0
    threshold: int = 5
    step_weight: int | None = None
    max_weight: int = 50
    step_weights: Sequence[int] = ()
    step_weight_promotion: int = 0
    iterations: int = 0
    match: Sequence[Mapping[str, Any]] = ()  # non-empty with iterations > 0 selects A/B testing
    mirror: bool = False
    skip_analysis: bool = False  # spec.skipAnalysis

    def __post_init__(self) -> None:
        if self.step_weight is None:
            self.step_weight = 0 if self.step_weights else 10

    @property
    def strategy(self) -> str:
        if self.match and self.iterations > 0:
            return AB_TESTING
        return BLUE_GREEN if self.iterations > 0 else CANARY

    @property
    def effective_threshold(self) -> int:
        return self.threshold if self.threshold > 0 else 1

    @property
    def effective_max_weight(self) -> int:
        if self.step_weights:
            return min(TOTAL_WEIGHT, self.step_weights[-1])
        return self.max_weight if self.max_weight > 0 else TOTAL_WEIGHT

    def next_step_weight(self, canary_weight: int) -> int:
        step = self.step_weight or 0
        if step > 0 or not self.step_weights:
            return step
        max_step = TOTAL_WEIGHT - canary_weight
        if max_step == 0:
            return 1
        if canary_weight == 0:
            return min(max_step, self.step_weights[0])
        for current, following in zip(self.step_weights, self.step_weights[1:], strict=False):
            if current == canary_weight:
                return min(max_step, following - canary_weight)
        return max_step


@dataclass
class CanaryStatus:
    """CanaryStatus, the fields the scheduler reads and writes."""

    phase: str = ""  # "" until Flagger initialises the canary
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0
    last_applied_spec: str = ""
    last_promoted_spec: str = ""
    tracked_configs: dict[str, str] | None = None

    @property
    def checksum(self) -> str:
        return status_checksum(self.tracked_configs, self.last_applied_spec)

    def copy(self, **changes: Any) -> CanaryStatus:
        configs = changes.pop("tracked_configs", self.tracked_configs)
        return replace(self, tracked_configs=None if configs is None else dict(configs), **changes)


@dataclass(frozen=True)
class Routes:
    """What the mesh router holds (GetRoutes/SetRoutes)."""

    primary: int = TOTAL_WEIGHT
    canary: int = 0
    mirrored: bool = False


class Canary:
    """A Canary and its target. `spec` is the applied revision; `apply()` may be called from any thread.

    Without `primary` the canary starts un-initialised and the first tick initialises it with `spec` (no hooks, no
    analysis). With `primary` it starts as Flagger leaves it after initialising with `primary` (phase Initialized,
    LastAppliedSpec = LastPromotedSpec = hash(primary)), so a different `spec` starts an analysis on the first tick.
    """

    def __init__(self, name: str, namespace: str, spec: str, *, analysis: Analysis | None = None,
                 configs: Mapping[str, str] | None = None, target: str | None = None,
                 primary: str | None = None) -> None:
        self.name, self.namespace, self.target = name, namespace, target or name
        self.analysis = analysis or Analysis()
        self._lock = threading.Lock()
        self._spec, self._configs = spec, dict(configs or {})
        self.status = CanaryStatus()
        self.routes = Routes()
        self.primary_spec = primary
        if primary is not None:
            digest = spec_hash(primary)
            self.status = CanaryStatus(phase=INITIALIZED, last_applied_spec=digest, last_promoted_spec=digest,
                                       tracked_configs=dict(self._configs))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | str | Path, spec: str, *, base_url: str | None = None,
                      primary: str | None = None, interval_s: float | None = None,
                      configs: Mapping[str, str] | None = None) -> Canary:
        """A Canary from a flagger.app/v1beta1 manifest (a dict, YAML text or a path). `base_url` replaces the
        scheme and host of each webhook URL (keeping its path); `interval_s` overrides `analysis.interval`."""
        if isinstance(manifest, Path) or (isinstance(manifest, str) and "\n" not in manifest):
            manifest = Path(manifest).read_text()
        if isinstance(manifest, str):
            import yaml

            manifest = yaml.safe_load(manifest)
        assert isinstance(manifest, Mapping)
        meta, body = manifest.get("metadata", {}), manifest.get("spec", {})
        raw = body.get("analysis") or body.get("canaryAnalysis") or {}
        hooks = []
        for item in raw.get("webhooks", []):
            url = str(item.get("url", ""))
            if base_url:
                parts = urlsplit(url)
                url = base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
            metadata = item.get("metadata")
            hooks.append(Hook(type=str(item.get("type", "")), name=str(item.get("name", "")), url=url,
                              metadata=None if metadata is None else {str(k): str(v) for k, v in metadata.items()},
                              timeout=str(item.get("timeout", "")), retries=int(item.get("retries", 0)),
                              mute_alert=bool(item.get("muteAlert", False)),
                              disable_tls=bool(item.get("disableTLS", False))))
        interval = interval_s if interval_s is not None else parse_go_duration(str(raw.get("interval") or "60s"))
        analysis = Analysis(hooks=hooks, interval_s=interval, threshold=int(raw.get("threshold", 0)),
                            step_weight=int(raw.get("stepWeight", 0)), max_weight=int(raw.get("maxWeight", 0)),
                            step_weights=tuple(raw.get("stepWeights", ())),
                            step_weight_promotion=int(raw.get("stepWeightPromotion", 0)),
                            iterations=int(raw.get("iterations", 0)), match=tuple(raw.get("match") or ()),
                            mirror=bool(raw.get("mirror", False)), skip_analysis=bool(body.get("skipAnalysis")))
        return cls(str(meta["name"]), str(meta.get("namespace", "default")), spec, analysis=analysis,
                   configs=configs, target=(body.get("targetRef") or {}).get("name"), primary=primary)

    def apply(self, spec: str, configs: Mapping[str, str] | None = None) -> None:
        """`kubectl apply` a new revision of the target (and, if given, of its tracked ConfigMaps/Secrets)."""
        with self._lock:
            self._spec = spec
            if configs is not None:
                self._configs = dict(configs)

    @property
    def spec(self) -> str:
        with self._lock:
            return self._spec

    def current(self) -> tuple[str, dict[str, str]]:
        """The target as the Kubernetes API has it now: (pod template, tracked config checksums)."""
        with self._lock:
            return self._spec, dict(self._configs)

    @property
    def checksum(self) -> str:
        """The checksum a hook would get now (from the stored status)."""
        return self.status.checksum

    def snapshot(self) -> CanaryStatus:
        """The status as a GET of the Canary returns it."""
        return self.status.copy()


# --- records -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One CallWebhook / CallEventWebhook (all its retries)."""

    t: float  # seconds since the FlaggerLoop was created, when the call started
    tick: int  # FlaggerLoop.tick_count of the tick that made it
    type: str  # hook type ("rollout" for type "")
    name: str
    url: str
    phase: str  # the payload's phase
    checksum: str | None  # the payload's checksum (None when send_checksum=False)
    status: int  # the last HTTP status; 0 when there was no answer (connection error, timeout)
    ok: bool  # Flagger's verdict: status 200-202 on the final attempt
    attempts: tuple[int, ...]  # the status of each attempt (0 = no answer)
    error: str | None  # the error text Flagger logs/puts into events
    payload: dict[str, Any]
    body: str  # the final response body ("" when there was none)
    duration_s: float


@dataclass(frozen=True)
class Event:
    """A Kubernetes event Flagger records (recordEventInfof/Warningf)."""

    t: float
    tick: int
    type: str  # "Normal" or "Warning"
    message: str
    phase: str  # the phase of the Canary object the event was recorded on (sent to event hooks)


@dataclass(frozen=True)
class TickRecord:
    tick: int
    t: float
    phase_before: str
    phase: str
    canary_weight: int  # the routes' canary weight after the tick
    status_weight: int  # status.canaryWeight after the tick
    iterations: int
    failed_checks: int
    hooks: tuple[str, ...]  # hook types called during the tick, in order, event hooks left out
    events: tuple[str, ...]


@dataclass
class Outcome:
    result: str  # "promoted", "rolled back", "stopped" (`until` met) or "timed out"
    reason: str  # the event that decided it ("Rolling back ...", "Promotion completed! ...") or why it stopped
    phase: str
    ticks: int  # ticks run by this run()
    failed_checks: int  # failedChecks when the outcome was decided (SyncStatus(Failed) then resets it to 0)
    peak_weight: int  # the highest canary weight the routes reached during this run
    checksum: str  # the Canary's checksum at the end
    status: CanaryStatus
    calls: list[Call]  # the calls made by this run()
    events: list[Event]

    def calls_of(self, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if kind is None or c.type == kind]


# --- transport: pkg/controller/webhook.go callWebhook + go-retryablehttp v0.7.8 ----------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    sign, rest = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if rest == "0":
        return 0.0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(rest):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if rest and pos == len(rest):
        return sign * total
    if re.fullmatch(r"\d+\.?\d*|\.\d+", rest[pos:]):
        raise ValueError(f'time: missing unit in duration "{text}"')
    raise ValueError(f'time: invalid duration "{text}"')


def go_json(payload: Mapping[str, Any]) -> bytes:
    """encoding/json.Marshal: compact, <, > and & escaped."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode()


@dataclass(frozen=True)
class _Answer:
    status: int
    ok: bool
    attempts: tuple[int, ...]
    error: str | None
    body: str


def _retry_after(response: httpx.Response) -> float | None:
    values = response.headers.get_list("retry-after")
    if not values or not values[0]:
        return None
    header = values[0]
    if re.fullmatch(r"[+-]?\d+", header):
        seconds = int(header)
        return float(seconds) if seconds >= 0 else None
    try:
        when = datetime.strptime(header, "%a, %d %b %Y %H:%M:%S %Z").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _backoff(attempt: int, response: httpx.Response | None) -> float:
    """DefaultBackoff(1s, 30s, attempt, resp): Retry-After on 429/503, else 2^attempt seconds, at most 30."""
    if response is not None and response.status_code in (429, 503):
        wait = _retry_after(response)
        if wait is not None:
            return wait
    return min(30.0, 2.0**attempt)


def _transport_error(url: str, exc: Exception) -> tuple[str, bool]:
    """Go's error text for a failed attempt, and whether DefaultRetryPolicy retries it."""
    if isinstance(exc, httpx.TooManyRedirects):
        return f'Post "{url}": stopped after 10 redirects', False
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f'Post "{url}": unsupported protocol scheme "{urlsplit(url).scheme}"', False
    if isinstance(exc, httpx.TimeoutException):
        return f'Post "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)', True
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f'Post "{url}": tls: failed to verify certificate: {cause}', False
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.LocalProtocolError | httpx.InvalidURL):
        return f'Post "{url}": {exc}', False
    return f'Post "{url}": {str(exc) or type(exc).__name__}', True


_TLS: dict[bool, ssl.SSLContext] = {}


def _tls(verify: bool) -> ssl.SSLContext:
    """A TLS context per verify setting, made once: building one costs ~70 ms, which would slow every call."""
    if verify not in _TLS:
        _TLS[verify] = httpx.create_ssl_context(verify=verify)
    return _TLS[verify]


def post_webhook(url: str, body: bytes, *, timeout: str, retries: int, disable_tls: bool = False,
                 backoff_scale: float = 1.0) -> _Answer:
    """callWebhook: POST `body`; retry like go-retryablehttp; ok only for a final 200-202."""
    try:
        timeout_s = parse_go_duration(timeout or "10s")
    except ValueError as exc:
        return _Answer(0, False, (), str(exc), "")
    attempts: list[int] = []
    tls = _tls(not disable_tls)
    with httpx.Client(timeout=timeout_s, follow_redirects=True, max_redirects=10, verify=tls) as client:
        for default in ("accept", "connection"):  # Go's client sends neither
            client.headers.pop(default, None)
        client.headers["user-agent"] = "Go-http-client/1.1"
        client.headers["accept-encoding"] = "gzip"
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: str | None = None
            try:
                response = client.post(url, content=body, headers={"content-type": "application/json"})
                status = response.status_code
                retry = status == 429 or (status >= 500 and status != 501)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                status, (error, retry) = 0, _transport_error(url, exc)
            attempts.append(status)
            if not retry or retries - attempt <= 0:
                break
            time.sleep(_backoff(attempt, response) * backoff_scale)
            attempt += 1
    if response is not None and not retry:
        ok = status <= 202
        return _Answer(status, ok, tuple(attempts), None if ok else response.text, response.text)
    # DefaultRetryPolicy drops the reason for a retryable status, so only a transport error is appended.
    message = f"POST {url} giving up after {len(attempts)} attempt(s)" + (f": {error}" if error else "")
    return _Answer(status, False, tuple(attempts), message, "")


# --- the scheduler: pkg/controller/scheduler.go ------------------------------------------------------------------

MetricCheck = Callable[[Canary], "bool | str | None"]


class FlaggerLoop:
    """Flagger's scheduler for one Canary.

    `url`: the base URL for hooks without their own `url` (f"{url}/flagger/{type}"). `metric_check(canary)` runs
    after the rollout hooks in every analysis tick (runBuiltinMetricChecks/runMetricChecks): True or None passes,
    False or a message (used as the event text) is a failed check. `send_checksum=False` sends payloads without a
    checksum field, as Flagger before 1.34 did. `backoff_scale` multiplies every retry wait (Retry-After included).
    `event_webhook` is Flagger's -event-webhook flag, used when the Canary has no `event` hooks.
    """

    def __init__(self, canary: Canary, url: str = "", *, metric_check: MetricCheck | None = None,
                 send_checksum: bool = True, backoff_scale: float = 1.0, event_webhook: str | None = None) -> None:
        self.canary, self.url = canary, url.rstrip("/")
        self.metric_check = metric_check
        self.send_checksum, self.backoff_scale, self.event_webhook = send_checksum, backoff_scale, event_webhook
        self.started = time.monotonic()
        self.tick_count = 0
        self.calls: list[Call] = []
        self.events: list[Event] = []
        self.tick_log: list[TickRecord] = []
        self._peak = 0
        self._rollback_failed_checks: int | None = None

    # - the loop (job.go) -

    def run(self, until: str | Callable[[FlaggerLoop], bool] | None = None, *, timeout_s: float = 120.0,
            max_ticks: int | None = None, on_tick: Callable[[int, FlaggerLoop], None] | None = None) -> Outcome:
        """Tick at once, then every `analysis.interval_s` (read when run() starts), until the canary is promoted
        (phase Succeeded) or rolled back (Failed), `until` holds after a tick (a phase name, or a predicate on the
        loop), `max_ticks` ticks have run or `timeout_s` has passed. `on_tick(n, loop)` runs before tick n (n counts
        all ticks of this loop, so it matches `Call.tick` and `TickRecord.tick`)."""
        start = time.monotonic()
        first_call, first_event, first_tick = len(self.calls), len(self.events), self.tick_count
        self._peak, self._rollback_failed_checks = self.canary.routes.canary, None
        interval = self.canary.analysis.interval_s
        taken = 0  # the ticker fires at start + n * interval (n >= 1); the first tick runs at once, like job.go
        while True:
            if on_tick is not None:
                on_tick(self.tick_count + 1, self)
            before = self.canary.status.phase
            self.tick()
            after = self.canary.status.phase
            result, reason = "", ""
            if after != before and after in (SUCCEEDED, FAILED):
                result = "promoted" if after == SUCCEEDED else "rolled back"
                reason = self._deciding_event(after)
            elif isinstance(until, str) and after == until:
                result, reason = "stopped", f"phase {after}"
            elif callable(until) and until(self):
                result, reason = "stopped", "until() held"
            elif max_ticks is not None and self.tick_count - first_tick >= max_ticks:
                result, reason = "timed out", f"{max_ticks} ticks"
            elif time.monotonic() - start > timeout_s:
                result, reason = "timed out", f"{timeout_s}s"
            if result:
                failed = self._rollback_failed_checks if result == "rolled back" else None
                return Outcome(result, reason, after, self.tick_count - first_tick,
                               self.canary.status.failed_checks if failed is None else failed, self._peak,
                               self.canary.checksum, self.canary.snapshot(), self.calls[first_call:],
                               self.events[first_event:])
            if interval > 0:
                fired = int((time.monotonic() - start) // interval)  # the last time the ticker fired
                # A Go ticker buffers one tick: if it fired while this tick ran, the next one starts at once.
                taken = fired if fired > taken else max(taken, fired) + 1
                time.sleep(max(0.0, start + taken * interval - time.monotonic()))

    def _deciding_event(self, phase: str) -> str:
        mine = [e.message for e in self.events if e.tick == self.tick_count]
        prefix = "Promotion completed!" if phase == SUCCEEDED else "Rolling back"
        return next((m for m in mine if m.startswith(prefix)), mine[-1] if mine else phase)

    def tick(self) -> None:
        """One advanceCanary."""
        self.tick_count += 1
        t = round(time.monotonic() - self.started, 3)
        before, first_call, first_event = self.canary.status.phase, len(self.calls), len(self.events)
        self._advance()
        status, routes = self.canary.status, self.canary.routes
        self.tick_log.append(TickRecord(
            self.tick_count, t, before, status.phase, routes.canary, status.canary_weight, status.iterations,
            status.failed_checks, tuple(c.type for c in self.calls[first_call:] if c.type != "event"),
            tuple(e.message for e in self.events[first_event:])))

    def _advance(self) -> None:
        canary, analysis = self.canary, self.canary.analysis
        cd = canary.snapshot()  # advanceCanary reads the Canary once and works on that copy
        if cd.phase in ("", INITIALIZING):  # setPhaseInitialized
            self._sync_status(INITIALIZED)
            fresh = canary.snapshot()
            cd = cd.copy(phase=INITIALIZED, last_applied_spec=fresh.last_applied_spec,
                         tracked_configs=fresh.tracked_configs)
            self._event(cd, NORMAL, f"Initialization done! {canary.name}.{canary.namespace}")
        if not self._should_advance(cd):
            return
        max_weight = analysis.effective_max_weight
        routes = canary.routes
        if not self._check_canary_status(cd):
            return
        if self._has_canary_revision_changed(cd):
            self._event(cd, NORMAL, f"New revision detected! Restarting analysis for {self._target}")
            self._set_routes(TOTAL_WEIGHT, 0, False)
            self._sync_status(PROGRESSING)
            return
        if analysis.skip_analysis:
            self._skip_analysis(cd)
            return
        if cd.phase in (PROGRESSING, WAITING, WAITING_PROMOTION) and self._run_rollback_hooks(cd, cd.phase):
            self._event(cd, WARNING, f"Rolling back {self._name} manual webhook invoked")
            self._rollback(cd)
            return
        if cd.phase == PROMOTING:
            self._promotion_traffic_shift(cd, routes)
            return
        if cd.phase == FINALISING:
            self._finalise(cd)
            return
        if cd.phase in (PROGRESSING, WAITING_PROMOTION) and cd.failed_checks >= analysis.effective_threshold:
            self._rollback(cd)
            return
        if routes.canary == 0 and cd.iterations == 0 and not (analysis.mirror and routes.mirrored):
            self._event(cd, NORMAL, f"Starting canary analysis for {self._target}")
            if not self._run_hooks_until_failure(cd, "pre-rollout"):
                self._set_status(failed_checks=cd.failed_checks + 1)
                return
        elif not self._run_analysis(cd):
            self._set_status(failed_checks=cd.failed_checks + 1)
            return
        if analysis.strategy == AB_TESTING:
            self._run_ab(cd)
        elif analysis.strategy == BLUE_GREEN:
            self._run_blue_green(cd, routes)
        elif analysis.next_step_weight(routes.canary) > 0:
            if not routes.mirrored and cd.phase not in (PROMOTING, WAITING_PROMOTION, FINALISING) \
                    and not self._run_hooks_until_failure(cd, "confirm-traffic-increase"):
                return
            self._run_canary(cd, routes, max_weight)

    # - shouldAdvance, checkCanaryStatus, hasCanaryRevisionChanged -

    def _should_advance(self, cd: CanaryStatus) -> bool:
        if cd.phase in (PROGRESSING, WAITING, WAITING_PROMOTION, PROMOTING, FINALISING):
            return True
        if cd.phase == FAILED:  # "sync lastAppliedSpec even if the canary is in a failed state"
            self._sync_status(FAILED, cd.canary_weight, cd.failed_checks, cd.iterations)
        return self._has_target_changed(cd) or self._have_dependencies_changed(cd)

    def _check_canary_status(self, cd: CanaryStatus) -> bool:
        if cd.phase in (PROGRESSING, WAITING_PROMOTION, PROMOTING, FINALISING):
            return True
        fresh = self.canary.snapshot()  # checkCanaryStatus GETs the Canary again
        if not self._run_confirm_rollout_hooks(fresh):
            return False
        self._event(fresh.copy(phase=PROGRESSING), NORMAL, f"New revision detected! Scaling up {self._target}")
        self._sync_status(PROGRESSING)
        return False

    def _has_canary_revision_changed(self, cd: CanaryStatus) -> bool:
        return cd.phase in (PROGRESSING, WAITING_PROMOTION) and (
            self._has_target_changed(cd) or self._have_dependencies_changed(cd))

    def _has_target_changed(self, cd: CanaryStatus) -> bool:  # spec.go hasSpecChanged
        if not cd.last_applied_spec:
            return True
        digest = spec_hash(self.canary.current()[0])
        if cd.last_promoted_spec == digest:  # a manual rollback to the primary's spec starts nothing
            return False
        return cd.last_applied_spec != digest

    def _have_dependencies_changed(self, cd: CanaryStatus) -> bool:  # config_tracker.go HasConfigChanged
        configs = self.canary.current()[1]
        if not configs and cd.tracked_configs is None:
            return False
        if cd.tracked_configs is None or len(configs) != len(cd.tracked_configs):
            return True
        return any(cd.tracked_configs.get(name) != value for name, value in configs.items())

    # - strategies: runCanary, runAB, runBlueGreen, runPromotionTrafficShift, the Finalising branch -

    def _run_canary(self, cd: CanaryStatus, routes: Routes, max_weight: int) -> None:
        analysis = self.canary.analysis
        if routes.canary < max_weight:
            step = analysis.next_step_weight(routes.canary)
            primary, weight, mirrored = routes.primary, routes.canary, routes.mirrored
            if analysis.mirror and weight == 0:  # one mirrored step before shifting traffic
                primary, weight, mirrored = ((TOTAL_WEIGHT, 0, True) if not mirrored
                                             else (TOTAL_WEIGHT - step, step, False))
            else:
                primary, weight = max(0, primary - step), min(TOTAL_WEIGHT, weight + step)
            self._set_routes(primary, weight, mirrored)
            self._set_status(canary_weight=weight)
            self._event(cd, NORMAL, f"Advance {self._name} canary weight {weight}")
            return
        if not self._run_confirm_promotion_hooks(cd):
            return
        self._promote(cd)

    def _run_ab(self, cd: CanaryStatus) -> None:
        iterations = self.canary.analysis.iterations
        if iterations > cd.iterations:
            self._set_routes(0, TOTAL_WEIGHT, False)
            self._set_status(iterations=cd.iterations + 1)
            self._event(cd, NORMAL, f"Advance {self._name} canary iteration {cd.iterations + 1}/{iterations}")
            return
        if not self._run_confirm_promotion_hooks(cd):
            return
        if iterations == cd.iterations:
            self._promote(cd)

    def _run_blue_green(self, cd: CanaryStatus, routes: Routes) -> None:
        analysis = self.canary.analysis
        if analysis.iterations > cd.iterations:
            if analysis.mirror and not routes.mirrored:
                self._set_routes(TOTAL_WEIGHT, 0, True)
            self._set_status(iterations=cd.iterations + 1)
            self._event(cd, NORMAL,
                        f"Advance {self._name} canary iteration {cd.iterations + 1}/{analysis.iterations}")
            return
        if not self._run_confirm_promotion_hooks(cd):
            return
        if analysis.iterations == cd.iterations:
            self._event(cd, NORMAL, "Stop traffic mirroring and route all traffic to canary" if analysis.mirror
                        else "Routing all traffic to canary")
            self._set_routes(0, TOTAL_WEIGHT, False)
            self._set_status(iterations=cd.iterations + 1)
            return
        if analysis.iterations < cd.iterations:
            self._promote(cd)

    def _promote(self, cd: CanaryStatus) -> None:
        canary = self.canary
        self._event(cd, NORMAL, f"Copying {self._target} template spec to {canary.target}-primary.{canary.namespace}")
        canary.primary_spec = canary.current()[0]
        self._set_phase(PROMOTING)

    def _promotion_traffic_shift(self, cd: CanaryStatus, routes: Routes) -> None:
        step = self.canary.analysis.step_weight_promotion
        if step == 0:
            self._event(cd, NORMAL, "Routing all traffic to primary")
            self._set_routes(TOTAL_WEIGHT, 0, False)
            self._set_phase(FINALISING)
            return
        if routes.canary > 0:
            primary, weight = min(TOTAL_WEIGHT, routes.primary + step), max(0, routes.canary - step)
            self._set_routes(primary, weight, False)
            self._event(cd, NORMAL, f"Advance {self._name} primary weight {primary}")
            if primary == TOTAL_WEIGHT:
                self._set_phase(FINALISING)
            else:
                self._set_status(canary_weight=weight)

    def _finalise(self, cd: CanaryStatus) -> None:
        self._set_phase(SUCCEEDED)
        succeeded = cd.copy(phase=SUCCEEDED)
        self._run_hooks_until_failure(succeeded, "post-rollout", SUCCEEDED)
        self._event(succeeded, NORMAL, f"Promotion completed! Scaling down {self._target}")

    def _skip_analysis(self, cd: CanaryStatus) -> None:  # shouldSkipAnalysis
        canary = self.canary
        self._set_routes(TOTAL_WEIGHT, 0, False)
        self._event(cd, NORMAL, f"Copying {self._target} template spec to {canary.target}-primary.{canary.namespace}")
        canary.primary_spec = canary.current()[0]
        self._set_phase(SUCCEEDED)
        succeeded = cd.copy(phase=SUCCEEDED)
        self._run_hooks_until_failure(succeeded, "post-rollout", SUCCEEDED)
        self._event(succeeded, NORMAL, f"Promotion completed! Canary analysis was skipped for {self._target}")

    def _rollback(self, cd: CanaryStatus) -> None:
        self._rollback_failed_checks = cd.failed_checks
        if cd.failed_checks >= self.canary.analysis.effective_threshold:
            self._event(cd, WARNING, f"Rolling back {self._name} failed checks threshold reached {cd.failed_checks}")
        self._set_routes(TOTAL_WEIGHT, 0, False)
        self._event(cd.copy(phase=FAILED), WARNING, f"Canary failed! Scaling down {self._name}")
        self._sync_status(FAILED)
        self._run_hooks_until_failure(cd, "post-rollout", FAILED)

    # - hook runners: scheduler_hooks.go and runAnalysis -

    def _hooks(self, kind: str) -> list[Hook]:
        return [h for h in self.canary.analysis.hooks if h.kind == kind]

    def _run_hooks_until_failure(self, cd: CanaryStatus, kind: str, phase: str = PROGRESSING) -> bool:
        """runPreRolloutHooks, runConfirmTrafficIncreaseHooks, runPostRolloutHooks, the rollout part of
        runAnalysis: in order, stop at the first failure."""
        for hook in self._hooks(kind):
            answer = self._call(hook, cd, phase)
            if not answer.ok:
                halt = f"Halt {self._name} advancement"
                self._event(cd, WARNING, {
                    "pre-rollout": f"{halt} pre-rollout check {hook.label} failed {answer.error}",
                    "rollout": f"{halt} external check {hook.label} failed {answer.error}",
                    "confirm-traffic-increase": f"{halt} waiting for traffic increase approval {hook.label}",
                    "post-rollout": f"Post-rollout hook {hook.label} failed {answer.error}",
                }[kind])
                return False
            passed = {"pre-rollout": "Pre-rollout", "confirm-traffic-increase": "Confirm-traffic-increase",
                      "post-rollout": "Post-rollout"}.get(kind)
            if passed:
                self._event(cd, NORMAL, f"{passed} check {hook.label} passed")
        return True

    def _run_confirm_rollout_hooks(self, cd: CanaryStatus) -> bool:
        for hook in self._hooks("confirm-rollout"):
            if not self._call(hook, cd, cd.phase).ok:
                if cd.phase != WAITING:
                    self._set_phase(WAITING)
                    self._event(cd, WARNING, f"Halt {self._name} advancement waiting for approval {hook.label}")
                return False
            self._event(cd, NORMAL, f"Confirm-rollout check {hook.label} passed")
        return True

    def _run_confirm_promotion_hooks(self, cd: CanaryStatus) -> bool:
        for hook in self._hooks("confirm-promotion"):
            if not self._call(hook, cd, PROGRESSING).ok:
                if cd.phase != WAITING_PROMOTION:
                    self._set_phase(WAITING_PROMOTION)
                    self._event(cd, WARNING,
                                f"Halt {self._name} advancement waiting for promotion approval {hook.label}")
                else:
                    self._set_status(iterations=self.canary.analysis.iterations - 1)
                return False
            self._event(cd, NORMAL, f"Confirm-promotion check {hook.label} passed")
        return True

    def _run_rollback_hooks(self, cd: CanaryStatus, phase: str) -> bool:
        for hook in self._hooks("rollback"):
            if self._call(hook, cd, phase).ok:
                self._event(cd, WARNING, f"Rollback check {hook.label} passed")
                return True
            self._event(cd, NORMAL, f"Rollback hook {hook.label} not signaling a rollback")
        return False

    def _run_analysis(self, cd: CanaryStatus) -> bool:
        if not self._run_hooks_until_failure(cd, "rollout"):
            return False
        if self.metric_check is None:
            return True
        verdict = self.metric_check(self.canary)
        if verdict is True or verdict is None:
            return True
        self._event(cd, WARNING, verdict if isinstance(verdict, str)
                    else f"Halt {self._name} advancement metric check failed")
        return False

    # - status writes (pkg/canary/status.go) and routes -

    def _sync_status(self, phase: str, canary_weight: int = 0, failed_checks: int = 0, iterations: int = 0) -> None:
        spec, configs = self.canary.current()
        status = self.canary.status
        status.phase, status.canary_weight = phase, canary_weight
        status.failed_checks, status.iterations = failed_checks, iterations
        status.last_applied_spec, status.tracked_configs = spec_hash(spec), configs
        if phase == INITIALIZED:
            status.last_promoted_spec = status.last_applied_spec

    def _set_phase(self, phase: str) -> None:
        status = self.canary.status
        status.phase = phase
        if phase not in (PROGRESSING, WAITING, PROMOTING):
            status.canary_weight, status.iterations = 0, 0
            if phase == WAITING_PROMOTION:
                status.iterations = self.canary.analysis.iterations - 1
        if phase in (INITIALIZED, SUCCEEDED):
            status.last_promoted_spec = status.last_applied_spec

    def _set_status(self, **fields: int) -> None:
        for name, value in fields.items():
            setattr(self.canary.status, name, value)

    def _set_routes(self, primary: int, canary: int, mirrored: bool) -> None:
        self.canary.routes = Routes(primary, canary, mirrored)
        self._peak = max(self._peak, canary)

    # - webhook calls and events (webhook.go, events.go) -

    @property
    def _name(self) -> str:
        return f"{self.canary.name}.{self.canary.namespace}"

    @property
    def _target(self) -> str:
        return f"{self.canary.target}.{self.canary.namespace}"

    def _hook_url(self, hook: Hook) -> str:
        return hook.url or f"{self.url}/flagger/{hook.kind}"

    def _payload(self, cd: CanaryStatus, phase: str, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"name": self.canary.name, "namespace": self.canary.namespace, "phase": phase}
        if self.send_checksum:
            payload["checksum"] = cd.checksum
        if metadata:  # omitempty
            payload["metadata"] = dict(sorted(metadata.items()))  # Go marshals map keys sorted
        return payload

    def _call(self, hook: Hook, cd: CanaryStatus, phase: str) -> _Answer:
        """CallWebhook: the payload of `cd` with `phase`; a timeout shorter than 2 characters is 10s."""
        timeout = hook.timeout if isinstance(hook.timeout, str) else f"{hook.timeout}s"
        payload = self._payload(cd, phase, hook.metadata)
        return self._post(hook, hook.kind, payload, "10s" if len(timeout) < 2 else timeout)

    def _post(self, hook: Hook, kind: str, payload: dict[str, Any], timeout: str) -> _Answer:
        started = time.monotonic()
        url = self._hook_url(hook)
        answer = post_webhook(url, go_json(payload), timeout=timeout, retries=hook.retries,
                              disable_tls=hook.disable_tls, backoff_scale=self.backoff_scale)
        self.calls.append(Call(round(started - self.started, 3), self.tick_count, kind, hook.label, url,
                               payload["phase"], payload.get("checksum"), answer.status, answer.ok, answer.attempts,
                               answer.error, payload, answer.body, round(time.monotonic() - started, 3)))
        return answer

    def _event(self, cd: CanaryStatus, event_type: str, message: str) -> None:
        """recordEventInfof/Warningf + sendEventToWebhook (CallEventWebhook passes the timeout as is)."""
        self.events.append(Event(round(time.monotonic() - self.started, 3), self.tick_count, event_type, message,
                                 cd.phase))
        hooks = self._hooks("event")
        if not hooks and self.event_webhook:
            hooks = [Hook("event", name="events", url=self.event_webhook)]
        for hook in hooks:
            metadata = {"eventMessage": message, "eventType": event_type, "timestamp": str(time.time_ns() // 10**6)}
            for key, value in (hook.metadata or {}).items():
                metadata.setdefault(key, value)
            timeout = hook.timeout if isinstance(hook.timeout, str) else f"{hook.timeout}s"
            self._post(hook, "event", self._payload(cd, cd.phase, metadata), timeout)


__all__ = [
    "AB_TESTING", "BLUE_GREEN", "CANARY", "FAILED", "FINALISING", "HOOK_TYPES", "INITIALIZED", "PROGRESSING",
    "PROMOTING", "SUCCEEDED", "WAITING", "WAITING_PROMOTION", "Analysis", "Call", "Canary", "CanaryStatus", "Event",
    "FlaggerLoop", "Hook", "Outcome", "Routes", "TickRecord", "checksum_of", "compute_hash", "go_json",
    "parse_go_duration", "post_webhook", "spec_hash",
]
