"""Fault injection that tests can count on: the pods' error rate and the router's Istio faults.

A random 10% error rate makes every assertion statistical. The sandbox is the ground truth for
loadkit's own tests, so its faults are deterministic instead: an `ErrorInjector` with rate F fails
exactly floor(i * F) of its first i calls, spread as evenly as possible (an accumulator, like
Bresenham's line algorithm). With round-robin routing over pods that each hold one injector, a
run of requests sees the configured rate to within one error per pod.

Router faults are Istio's VirtualService `fault:` block, per version: a `RouterFault` delays or
aborts `percentage` % of that version's requests, each fault counting with its own injector, so
a 10% abort answers exactly floor(n / 10) of the n requests that reach the version while it is
active. `FaultTable.decide` takes every fault's decision when a request arrives, like the pods do,
so concurrency cannot change the counts. Pure: ids, clocks and timers belong to the caller.

A fault may carry a `FaultOwner` (the chaos run that added it, its pid, host and start time), so
that after a `kill -9` of that run anyone can tell whose fault it is, and a run's rollback removes
its own faults only (`FaultTable.clear(run=...)`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from loadkit.sandbox._spec import Version

# Floating-point sums of e.g. 0.1 drift just below 1.0 (ten times 0.1 is 0.9999999999999999).
_EPSILON = 1e-9

ABORT_BODY = "fault filter abort"  # what Envoy's fault filter answers, byte for byte
DELAY_FLAG, ABORT_FLAG = "DI", "FI"  # Envoy's response flags for injected delays and aborts


class ErrorInjector:
    """Decides, call by call, whether to fail so that exactly floor(i * rate) of i calls fail.

    >>> injector = ErrorInjector(0.25)
    >>> [injector.should_fail() for _ in range(8)]
    [False, False, False, True, False, False, False, True]
    """

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self._accumulated = 0.0

    def should_fail(self) -> bool:
        self._accumulated += self.rate
        if self._accumulated >= 1.0 - _EPSILON:
            self._accumulated -= 1.0
            return True
        return False


class FaultKind(enum.StrEnum):
    """Istio's two HTTP fault kinds (the router's), and the host and dependency faults of
    `_hostfaults` (packet loss and partition with nftables, CPU and memory limits with cgroups,
    a dependency slow, failing or unreachable at its proxy)."""

    DELAY = "delay"
    ABORT = "abort"
    LOSS = "loss"
    PARTITION = "partition"
    CPU = "cpu"
    MEMORY = "memory"
    DEPENDENCY_SLOW = "dependency-slow"
    DEPENDENCY_FAILING = "dependency-failing"
    DEPENDENCY_UNREACHABLE = "dependency-unreachable"

    @property
    def at_router(self) -> bool:
        return self in (FaultKind.DELAY, FaultKind.ABORT)


class Dependency(enum.StrEnum):
    """The sample app's dependencies (`loadkit sandbox up --deps`)."""

    DATABASE = "database"
    EXTERNAL = "external"


@dataclass(frozen=True)
class FaultOwner:
    """Who added a fault, as the client said: enough for a later run to tell if it is still alive."""

    run: str | None = None
    pid: int | None = None
    host: str | None = None
    started: float | None = None  # unix time the owning process started
    command: str | None = None

    def describe(self) -> str:
        """For the log, e.g. "run chaos-1a2b (pid 4242 on ci-7, 'chaos run')"."""
        pid = f"pid {self.pid}" if self.pid is not None else ""
        host = f"on {self.host}" if self.host else ""
        command = repr(self.command) if self.command else ""
        details = ", ".join(part for part in (" ".join(p for p in (pid, host) if p), command) if part)
        return f"run {self.run or '?'}" + (f" ({details})" if details else "")


@dataclass
class RouterFault:
    """One fault on one version's traffic, like a VirtualService `fault:` with a percentage.

    A delay fault carries `delay_ms`, an abort fault `http_status`; the caller validates that.
    """

    id: str
    version: Version
    kind: FaultKind
    percentage: float
    created_at: datetime
    expires_at: datetime
    delay_ms: int | None = None
    http_status: int | None = None
    owner: FaultOwner | None = None
    dependency: Dependency | None = None
    cpu_pct: float | None = None
    memory_mb: int | None = None
    mechanism: str | None = None
    detail: str | None = None  # what a host fault put in place (an nft table, a cgroup), set when applied
    _injector: ErrorInjector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._injector = ErrorInjector(self.percentage / 100)

    def hits(self) -> bool:
        """Whether this request is one of the `percentage` % this fault applies to."""
        return self._injector.should_fail()

    def describe(self) -> str:
        """For the log, e.g. "abort 503 on 10% of canary requests"."""
        by = f", owned by {self.owner.describe()}" if self.owner else ""
        if not self.kind.at_router:
            on = f"the {self.version.value}" + (f"'s {self.dependency.value}" if self.dependency else "")
            return f"{self.kind.value} on {on}{f' ({self.detail})' if self.detail else ''}{by}"
        what = f"delay {self.delay_ms} ms" if self.kind is FaultKind.DELAY else f"abort {self.http_status}"
        return f"{what} on {self.percentage:g}% of {self.version.value} requests{by}"

    def matches(self, version: Version | None = None, run: str | None = None) -> bool:
        """Whether the fault is of `version` and owned by `run` (None matches anything)."""
        if version is not None and self.version is not version:
            return False
        return run is None or (self.owner is not None and self.owner.run == run)


@dataclass(frozen=True)
class FaultDecision:
    """What the router does to one request: wait `delay_ms`, then maybe answer `abort_status`."""

    delay_ms: int = 0
    abort_status: int | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return ((DELAY_FLAG,) if self.delay_ms else ()) + ((ABORT_FLAG,) if self.abort_status else ())


NO_FAULT = FaultDecision()


class FaultTable:
    """The active router faults, oldest first. Example: `table.add(fault); table.decide(version)`."""

    def __init__(self) -> None:
        self._faults: dict[str, RouterFault] = {}

    def __iter__(self) -> Iterator[RouterFault]:
        return iter(list(self._faults.values()))

    def __len__(self) -> int:
        return len(self._faults)

    def add(self, fault: RouterFault) -> None:
        if fault.id in self._faults:
            raise ValueError(f"a fault with id {fault.id!r} already exists")
        self._faults[fault.id] = fault

    def remove(self, fault_id: str) -> RouterFault | None:
        return self._faults.pop(fault_id, None)

    def select(self, version: Version | None = None, run: str | None = None) -> list[RouterFault]:
        """The faults of `version` owned by `run`, oldest first; None matches anything."""
        return [f for f in self._faults.values() if f.matches(version, run)]

    def clear(self, version: Version | None = None, run: str | None = None) -> list[RouterFault]:
        """Remove every fault, or those of `version` and/or owned by `run`; returns the removed ones."""
        removed = self.select(version, run)
        for fault in removed:
            del self._faults[fault.id]
        return removed

    def decide(self, version: Version) -> FaultDecision:
        """Delays add up; the oldest abort that hits wins, as with several Envoy fault filters.

        Every fault of the version sees every request, so each one's count stays exact no matter
        which other faults are active.
        """
        delay_ms, abort_status = 0, None
        for fault in self._faults.values():
            if fault.version is not version or not fault.kind.at_router or not fault.hits():
                continue
            if fault.kind is FaultKind.DELAY:
                delay_ms += fault.delay_ms or 0
            elif abort_status is None:
                abort_status = fault.http_status
        return FaultDecision(delay_ms, abort_status)
