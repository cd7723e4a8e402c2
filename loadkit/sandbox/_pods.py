"""Pods as OS processes, kept alive the way a Kubernetes ReplicaSet keeps its pods alive.

A `ReplicaSet` owns the pods of one version: it starts them in parallel, waits for each ready
line, and restarts a pod that dies unexpectedly after `RESTART_DELAY_S` (doubling while restarts
keep failing, like a crash-loop back-off). Restarted pods get a new port; the router asks `pick()`
per request, so it follows them. Pods run in their own session so a terminal Ctrl-C reaches only
the supervisor, which then stops them in order.

`ReplicaSet.kill` is `kubectl delete pod --grace-period 0` for chaos experiments: the pod leaves the
router's endpoints at once, its process gets SIGKILL (or SIGTERM), and a replacement starts
`restart_after_s` after the kill — like a new pod being scheduled, not the crash back-off. The
replacement keeps the pod's name and counts as a restart, so `restarts` shows what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import signal
import sys
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from loadkit.errors import TargetError
from loadkit.sandbox._spec import PodIdentity, VersionSpec

Log = Callable[[str], None]

READY_TIMEOUT_S = 20.0
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 15.0
STOP_GRACE_S = 3.0
_STDERR_TAIL_LINES = 20


class KillSignal(enum.StrEnum):
    """The signals a chaos action may send: no grace at all, or the pod's own graceful shutdown."""

    SIGKILL = "SIGKILL"
    SIGTERM = "SIGTERM"


class PodStartError(Exception):
    """A pod exited or stayed silent before printing its ready line."""


@dataclass
class Pod:
    identity: PodIdentity
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    ready: bool = False
    restarts: int = 0
    # Set by `ReplicaSet.kill`: when (loop time) the replacement may start, and which signal it got.
    restart_at: float | None = None
    killed_by: KillSignal | None = None
    endpoint_lag_s: float = 0.0  # how long the router still picks it after it died (set by kill)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_TAIL_LINES))
    _relays: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.ready and self.process is not None and self.process.returncode is None


def pod_argv(identity: PodIdentity, spec: VersionSpec) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loadkit.sandbox.pod",
        "--version",
        identity.version.value,
        "--index",
        str(identity.index),
        "--namespace",
        identity.namespace,
        "--error-rate",
        repr(spec.error_rate),
        "--latency-ms",
        str(spec.latency_ms),
    ]


class ReplicaSet:
    """The pods of one version. Example: `rs = ReplicaSet(spec, "bruno", log); await rs.start()`."""

    def __init__(self, spec: VersionSpec, namespace: str, log: Log) -> None:
        self.spec = spec
        self._log = log
        self.pods = [
            Pod(identity, pod_argv(identity, spec))
            for identity in (PodIdentity(namespace, spec.version, i) for i in range(spec.pods))
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._escalations: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._next = 0

    async def start(self) -> None:
        """Start every pod in parallel; raise TargetError naming the first pod that fails."""
        loop = asyncio.get_running_loop()
        first_ready = [loop.create_future() for _ in self.pods]
        self._tasks = [
            asyncio.create_task(self._lifecycle(pod, ready), name=f"pod {pod.name}")
            for pod, ready in zip(self.pods, first_ready, strict=True)
        ]
        # Wait for all, so no failure is left unretrieved; they start in parallel, so it costs nothing.
        outcomes = await asyncio.gather(*first_ready, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                by_hand = f"python -m loadkit.sandbox.pod --version {self.spec.version.value} --index 0"
                hint = f"run `{by_hand}` to see it fail on its own"
                raise TargetError(f"sandbox {outcome}", hint=hint) from outcome

    def pick(self, avoid: Collection[str] = ()) -> Pod | None:
        """Round-robin over the ready pods, as kube-proxy/Envoy spread requests over endpoints.

        A retry passes the pods it already tried in `avoid`; another ready pod is preferred when
        there is one, like Istio's `previous_hosts` retry predicate.
        """
        ready = [pod for pod in self.pods if pod.ready]
        if not ready:
            return None
        ready = [pod for pod in ready if pod.name not in avoid] or ready
        pod = ready[self._next % len(ready)]
        self._next += 1
        return pod

    def kill(self, count: int, sig: KillSignal, restart_after_s: float, endpoint_lag_s: float = 0.0) -> list[Pod]:
        """Kill the first `count` alive pods (all of them if fewer are alive); returns those killed.

        Like a Service's endpoints, the router keeps picking a killed pod for `endpoint_lag_s`
        after it died (those requests fail: 503 UF), then stops. A pod that ignores SIGTERM gets
        SIGKILL after STOP_GRACE_S, as the kubelet would do.
        """
        victims = [pod for pod in self.pods if pod.alive][:count]
        restart_at = asyncio.get_running_loop().time() + max(restart_after_s, endpoint_lag_s)
        for pod in victims:
            assert pod.process is not None  # alive implies a process
            if endpoint_lag_s <= 0:
                pod.ready = False
            pod.restart_at, pod.killed_by, pod.endpoint_lag_s = restart_at, sig, endpoint_lag_s
            if sig is KillSignal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    pod.process.send_signal(signal.SIGKILL)
            else:
                task = asyncio.create_task(_terminate(pod.process), name=f"terminate {pod.name}")
                self._escalations.add(task)
                task.add_done_callback(self._escalations.discard)
        return victims

    async def stop(self) -> None:
        """Stop restarting, then SIGTERM every pod and SIGKILL those that outstay STOP_GRACE_S."""
        self._stopping = True
        for task in [*self._tasks, *self._escalations]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(_terminate(pod.process) for pod in self.pods if pod.process))
        relays = [relay for pod in self.pods for relay in pod._relays]
        if relays:  # they end at EOF, right after their process; waiting keeps the last lines
            await asyncio.wait(relays, timeout=1.0)
        for pod in self.pods:
            pod.ready = False

    async def _lifecycle(self, pod: Pod, first_ready: asyncio.Future[None]) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._spawn(pod)
            except PodStartError as exc:
                if not first_ready.done():
                    first_ready.set_exception(exc)
                    return
                failures += 1
                self._log(f"{exc}; retrying")
            else:
                failures = 0
                if not first_ready.done():
                    first_ready.set_result(None)
                await self._watch(pod)
                if self._stopping:
                    return
            await asyncio.sleep(self._restart_delay(pod, failures))
            pod.restarts += 1

    def _restart_delay(self, pod: Pod, failures: int) -> float:
        """A killed pod's replacement comes when the kill said; a crashed pod's after the back-off."""
        if pod.restart_at is not None:
            delay = max(0.0, pod.restart_at - asyncio.get_running_loop().time())
            pod.restart_at = None
            return delay
        return min(RESTART_DELAY_S * 2**failures, MAX_RESTART_DELAY_S)

    async def _watch(self, pod: Pod) -> None:
        assert pod.process is not None
        code = await pod.process.wait()
        if pod.killed_by is not None and pod.endpoint_lag_s > 0:
            await asyncio.sleep(pod.endpoint_lag_s)  # the endpoints have not caught up yet
        pod.ready = False
        killed_by, pod.killed_by = pod.killed_by, None
        if self._stopping:
            return
        if killed_by is not None and pod.restart_at is not None:
            delay = max(0.0, pod.restart_at - asyncio.get_running_loop().time())
            self._log(f"pod {pod.name} (pid {pod.pid}) killed ({killed_by.value}); new one in {delay:.1f} s")
        else:
            self._log(f"pod {pod.name} (pid {pod.pid}) exited with code {code}; restarting it")

    async def _spawn(self, pod: Pod) -> None:
        pod.ready = False
        process = await asyncio.create_subprocess_exec(
            *pod.argv,
            stdin=asyncio.subprocess.PIPE,  # pods exit on EOF: they die with the supervisor
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        pod.process = process
        assert process.stdout is not None and process.stderr is not None
        pod._relays = [asyncio.create_task(self._relay(pod, process.stderr))]
        pod.port = await self._read_ready_line(pod, process)
        # Keep draining stdout too: a pod printing into a full pipe would block.
        pod._relays.append(asyncio.create_task(self._relay(pod, process.stdout)))
        pod.ready = True

    async def _read_ready_line(self, pod: Pod, process: asyncio.subprocess.Process) -> int:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
        except TimeoutError:
            await _terminate(process)
            message = f"pod {pod.name} did not become ready within {READY_TIMEOUT_S:.0f} s"
            raise PodStartError(message) from None
        if not line:
            code = await process.wait()
            await asyncio.wait(pod._relays, timeout=1.0)  # let the traceback reach the tail first
            tail = "\n".join(pod.stderr_tail)
            raise PodStartError(f"pod {pod.name} exited with code {code} before it was ready:\n{tail}")
        try:
            return int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError) as exc:
            await _terminate(process)
            raise PodStartError(f"pod {pod.name} printed {line!r} instead of its ready line") from exc

    async def _relay(self, pod: Pod, stream: asyncio.StreamReader) -> None:
        """Copy a pod's output to the supervisor's log, keeping a tail for error messages."""
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            pod.stderr_tail.append(line)
            self._log(f"[{pod.name}] {line}")


async def _terminate(process: asyncio.subprocess.Process | None, grace: float = STOP_GRACE_S) -> None:
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
