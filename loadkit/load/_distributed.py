"""The master's side of a distributed run: hand the plan to workers, hold users until they hold it,
notice the ones that are lost, and collect every live one's final window.

Only the Locust master uses this module (through locust_plugin.py), yet it imports neither locust
nor gevent (only the plugin does): the plugin hands it the runner, gevent's sleep and Locust's name
for a missing worker. Locust (2.47) itself only notices a dead worker by its missing heartbeats
(~3 s) and fires no event for it; without `--enable-rebalancing` that worker's users are simply gone. loadkit does not
re-balance either (the profile's users per worker stay as dispatched): it reports the loss, so a
result never passes silently on a part of its load.

Records written to the parent's stream (beside the plugin's snapshots):

    {"type": "worker", "event": "joined", "node": ID, "index": 0, "at_s": 0.0}
    {"type": "worker", "event": "lost", "node": ID, "index": 1, "at_s": 2.1, "detected_s": 5.0,
     "requests": 812, "reason": "no heartbeat for 3 s (the process died or its network is gone)"}
    {"type": "worker", "event": "refused", "node": ID, "reason": "..."}
    {"type": "fatal", "message": "...", "hint": "..."}  (the run cannot start: too few workers)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadkit import __version__

HELLO, PLAN, REFUSED, STOP = "loadkit_hello", "loadkit_plan", "loadkit_refused", "loadkit_stop"
logger = logging.getLogger("loadkit")


@dataclass
class _Node:
    index: int
    requests: int = 0
    last_s: float = 0.0  # when its last window arrived (seconds into the run)
    final: bool = False
    lost: bool = False


class Workers:
    """The master's view of its loadkit workers: who holds the plan, who is lost, who is done."""

    def __init__(self, runner: Any, plan: dict[str, Any], expected: int, wait_s: float,
                 write: Callable[[dict[str, Any]], None], elapsed: Callable[[], float],
                 on_lost: Callable[[str], object], *, sleep: Callable[[float], None], missing: str) -> None:
        """`runner`: Locust's MasterRunner; `sleep`: gevent's; `missing`: Locust's STATE_MISSING."""
        self.runner = runner
        self.sleep = sleep
        self.missing = missing
        self.plan = plan
        self.expected = expected
        self.wait_s = wait_s
        self.write = write
        self.elapsed = elapsed
        self.on_lost = on_lost
        self.nodes: dict[str, _Node] = {}
        self.stopping = False
        self.opened = False

    def register(self) -> None:
        self.runner.register_message(HELLO, self.on_hello)

    def on_hello(self, environment: Any, msg: Any, **_kw: Any) -> None:
        node = str(msg.node_id)
        version = (msg.data or {}).get("version")
        if version != __version__:
            reason = (f"worker {node} runs loadkit {version}, this master runs loadkit {__version__}: "
                      "run the same loadkit version (image) on the master and on every worker")
            logger.error("loadkit: refusing %s", reason)
            self.runner.send_message(REFUSED, {"reason": reason}, client_id=node)
            # Forget it now: Locust would count it ready, and its "quit" as the last worker leaving
            # (which ends a headless master's run before the right workers have come).
            if node in self.runner.clients:
                del self.runner.clients[node]
            self.write({"type": "worker", "event": "refused", "node": node, "reason": reason})
            return
        index = self.runner.get_worker_index(node)
        self.runner.send_message(PLAN, {**self.plan, "index": index, "workers": self.expected}, client_id=node)
        if node not in self.nodes:
            self.nodes[node] = _Node(index)
            self.write({"type": "worker", "event": "joined", "node": node, "index": index,
                        "at_s": round(self.elapsed(), 3)})

    def on_window(self, node: str, requests: int, final: bool) -> None:
        state = self.nodes.get(node)
        if state is None:
            return
        state.requests += requests
        state.last_s = self.elapsed()
        state.final = state.final or final

    # -- before the run: the shape's gate -------------------------------------------------------------

    def _live(self) -> list[str]:
        return [c.id for c in self.runner.clients.all if c.state != self.missing]

    def ready(self) -> bool:
        """Every connected worker holds the plan (none would get users without it), and enough do."""
        live = self._live()
        return len(live) >= self.expected and all(node in self.nodes for node in live)

    def wait(self) -> bool:
        """Block the shape until the workers are ready; False (and a fatal record) after wait_s."""
        deadline = time.monotonic() + self.wait_s
        while not self.ready():
            if time.monotonic() > deadline:
                have = sum(node in self.nodes for node in self._live())
                self.write({"type": "fatal",
                            "message": f"only {have} of {self.expected} loadkit workers were ready within "
                                       f"{self.wait_s:g}s",
                            "hint": "start the missing workers with `loadkit worker --master HOST:PORT` (a plain "
                                    "`locust --worker` never gets loadkit's plan), or ask for fewer with --workers, "
                                    "or wait longer with --workers-wait"})
                return False
            self.sleep(0.1)
        self.opened = True
        return True

    # -- during the run ------------------------------------------------------------------------------

    def check(self) -> None:
        """Mark workers lost: missing (no heartbeat), gone without a final window, or done early."""
        for node, state in self.nodes.items():
            if state.lost or (state.final and self.stopping):
                continue
            client = self.runner.clients.get(node)
            if state.final:
                reason = "it stopped before the end of the run (its process was asked to stop)"
            elif client is None:
                reason = "it disconnected from the master"
            elif client.state == self.missing:
                reason = "no heartbeat for 3 s (its process died, or its network is gone)"
            else:
                continue
            self._lose(node, state, reason)

    def _lose(self, node: str, state: _Node, reason: str) -> None:
        state.lost = True
        logger.warning("loadkit: worker %s (index %s) lost: %s", node, state.index, reason)
        self.on_lost(node)
        self.write({"type": "worker", "event": "lost", "node": node, "index": state.index,
                    "at_s": round(state.last_s, 3), "detected_s": round(self.elapsed(), 3),
                    "requests": state.requests, "reason": reason})

    def flush(self, timeout_s: float) -> None:
        """At the end: stop every live worker's users and wait for each one's final window (a worker
        that dies meanwhile is lost, found by its missing heartbeats, not waited for)."""
        self.stopping = True
        for node, state in self.nodes.items():
            if not state.lost and not state.final:
                self.runner.send_message(STOP, None, client_id=node)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if all(s.final or s.lost for s in self.nodes.values()):
                return
            self.sleep(0.05)
        for node, state in self.nodes.items():
            if not state.final and not state.lost:
                self._lose(node, state, f"it sent no final window within {timeout_s:g}s of the stop")
