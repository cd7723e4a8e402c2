"""A stand-in for Flagger's canary scheduler, calling webhooks the way Flagger does.

Follows fluxcd/flagger pkg/controller/scheduler.go for the canary (weighted) strategy, as
summarised in ../shared/reference/flagger-and-canary-scoring.md section 1.3:
- before progressing: confirm-rollout hooks; a failure means Waiting (retry next tick, no penalty);
- every tick while progressing: rollback hooks first (<= 202 means roll back now), then
  failedChecks >= threshold means roll back;
- weight 0: pre-rollout hooks (a failure is a failed check), then in the same tick
  confirm-traffic-increase and the first weight step;
- weight > 0: rollout hooks (a failure is a failed check and ends the tick), then
  confirm-traffic-increase (a failure holds the weight) and a weight step, or at maxWeight
  confirm-promotion (a failure waits) and promotion;
- afterwards: post-rollout hooks with phase Succeeded or Failed.
Hooks of one type run in order; the first failure stops the rest. Only HTTP 200-202 is success.
Metric checks (Prometheus) are not simulated: this exercises the webhooks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Hook:
    type: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    result: str  # "promoted" or "rolled back"
    reason: str
    failed_checks: int
    weight: int
    calls: list[tuple[float, str, int]]


class FlaggerLoop:
    def __init__(self, url: str, hooks: list[Hook], *, name: str, namespace: str, checksum: str,
                 interval_s: float = 1.0, threshold: int = 5, step_weight: int = 10, max_weight: int = 50,
                 timeout_s: float = 120.0) -> None:
        self.url, self.hooks = url, hooks
        self.name, self.namespace, self.checksum = name, namespace, checksum
        self.interval_s, self.threshold = interval_s, threshold
        self.step_weight, self.max_weight, self.timeout_s = step_weight, max_weight, timeout_s
        self.phase = "Initialized"
        self.weight = 0
        self.failed_checks = 0
        self.calls: list[tuple[float, str, int]] = []
        self.started = time.monotonic()

    def run(self) -> Outcome:
        while time.monotonic() - self.started < self.timeout_s:
            tick = time.monotonic()
            outcome = self.tick()
            if outcome is not None:
                self.call_all("post-rollout", "Succeeded" if outcome.result == "promoted" else "Failed")
                return outcome
            time.sleep(max(0.0, self.interval_s - (time.monotonic() - tick)))
        raise AssertionError(f"no promotion or rollback in {self.timeout_s}s: {self.calls}")

    def tick(self) -> Outcome | None:
        if self.phase in ("Initialized", "Waiting"):
            self.phase = "Progressing" if self.call_all("confirm-rollout", self.phase) else "Waiting"
            return None
        if self.call_any_success("rollback"):
            return self.done("rolled back", "a rollback hook signalled a rollback")
        if self.failed_checks >= self.threshold:
            return self.done("rolled back", f"failed checks reached the threshold ({self.threshold})")
        if self.weight == 0:
            if not self.call_all("pre-rollout", "Progressing"):
                self.failed_checks += 1
                return None
        elif not self.call_all("rollout", "Progressing"):
            self.failed_checks += 1
            return None
        if self.weight < self.max_weight:
            if self.call_all("confirm-traffic-increase", "Progressing"):
                self.weight = min(self.max_weight, self.weight + self.step_weight)
            return None
        if self.call_all("confirm-promotion", "Progressing"):
            return self.done("promoted", "confirm-promotion passed at max weight")
        self.phase = "WaitingPromotion"
        return None

    def done(self, result: str, reason: str) -> Outcome:
        return Outcome(result, reason, self.failed_checks, self.weight, self.calls)

    def call_all(self, hook_type: str, phase: str) -> bool:
        """Flagger's runXHooks: every hook of the type in order; the first failure returns False."""
        return all(self.call(hook, phase) <= 202 for hook in self.hooks if hook.type == hook_type)

    def call_any_success(self, hook_type: str) -> bool:
        return any(self.call(hook, self.phase) <= 202 for hook in self.hooks if hook.type == hook_type)

    def call(self, hook: Hook, phase: str) -> int:
        body = {"name": self.name, "namespace": self.namespace, "phase": phase, "checksum": self.checksum}
        if hook.metadata:
            body["metadata"] = hook.metadata  # type: ignore[assignment]
        try:
            status = httpx.post(f"{self.url}/flagger/{hook.type}", content=json.dumps(body), timeout=60).status_code
        except httpx.HTTPError:
            status = 0  # a timeout or a refused connection counts as a failure
        self.calls.append((round(time.monotonic() - self.started, 2), hook.type, status))
        return 200 if 200 <= status <= 202 else (status or 599)
