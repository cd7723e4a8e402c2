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
    {"type": "worker", "event": "rejoined", "node": ID, "index": 1, "at_s": 9.0}  (heartbeats again after lost)
    {"type": "worker", "event": "refused", "node": ID, "reason": "..."}
    {"type": "worker", "event": "unplanned", "node": ID, "at_s": 3.0, "reason": "..."}  (no plan: evicted)
    {"type": "worker", "event": "dropped", "node": ID, "requests": 10000, "reason": "..."}  (windows not merged)
    {"type": "fatal", "message": "...", "hint": "..."}  (the run cannot start: too few workers)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadkit import __version__

HELLO, PLAN, REFUSED, STOP = "loadkit_hello", "loadkit_plan", "loadkit_refused", "loadkit_stop"
logger = logging.getLogger("loadkit")
# The reason of a `lost` worker event for a forked process of --processes (its note says the rest)
FORKED_PROCESS_LOST = "forked process lost"
TOKEN_ENV = "LOADKIT_WORKER_TOKEN"  # a shared secret: a worker obeys only a master that proves it knows it
_UNPLANNED_GRACE_S = 3.0  # a connected worker that has not said hello this long is not loadkit's


def token() -> str:
    return os.environ.get(TOKEN_ENV, "")


def proof(secret: str, *parts: str) -> str:
    """HMAC-SHA256 of the parts under the shared token ("" without one)."""
    if not secret:
        return ""
    return hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def plan_proof(secret: str, nonce: str, plan: dict[str, Any]) -> str:
    """The master's proof over the plan it sends in answer to the worker's nonce."""
    body = {k: v for k, v in plan.items() if k != "proof"}
    return proof(secret, "plan", nonce, json.dumps(body, sort_keys=True, separators=(",", ":")))


def verify(expected: str, given: Any) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected, given)


@dataclass
class _Node:
    index: int
    requests: int = 0
    last_s: float = 0.0  # when its last window arrived (seconds into the run)
    final: bool = False
    lost: bool = False
    gone: bool = False  # disconnected: it cannot come back (its users were moved to the others)


class Workers:
    """The master's view of its loadkit workers: who holds the plan, who is lost, who is done."""

    def __init__(self, runner: Any, plan: dict[str, Any], expected: int, wait_s: float,
                 write: Callable[[dict[str, Any]], None], elapsed: Callable[[], float],
                 on_lost: Callable[[str], object], *, sleep: Callable[[float], None], missing: str,
                 redispatch: Callable[[], None] = lambda: None, run_id: str = "", secret: str = "") -> None:
        """`runner`: Locust's MasterRunner; `sleep`: gevent's; `missing`: Locust's STATE_MISSING;
        `redispatch`: spread the users again over the workers the dispatcher holds (after an eviction);
        `run_id`: this run's, in the plan and in every window; `secret`: the shared worker token."""
        self.runner = runner
        self.sleep = sleep
        self.missing = missing
        self.plan = plan
        self.expected = expected
        self.wait_s = wait_s
        self.write = write
        self.elapsed = elapsed
        self.on_lost = on_lost
        self.redispatch = redispatch
        self.run_id = run_id
        self.secret = secret
        self.nodes: dict[str, _Node] = {}
        self.stopping = False
        self.opened = False
        self.strangers: dict[str, float] = {}  # connected, no hello yet: since when (monotonic)
        self.evicted: set[str] = set()
        self.dropped: dict[str, list[Any]] = {}  # node -> [requests, reason]: windows not merged

    def accepts(self, node: str, data: dict[str, Any]) -> bool:
        """Merge a window only from a planned worker of this run; count the rest as dropped."""
        state = self.nodes.get(node)
        if state is not None and data.get("run") == self.run_id:
            return True
        why = ("it came from another run's worker (a run id that is not this run's)" if data.get("run")
               else "it came from a worker that never received this run's plan")
        try:
            requests = int((data.get("window") or {}).get("requests", 0))
        except (TypeError, ValueError, AttributeError):
            requests = 0
        first = node not in self.dropped
        entry = self.dropped.setdefault(node, [0, why])
        entry[0] += max(requests, 0)
        if first:
            logger.warning("loadkit: dropping windows of worker %s: %s", node, why)
        if state is None and node not in self.evicted:
            self._evict(node, f"it sent load windows without this run's plan: {why}")
        return False

    def report_dropped(self) -> None:
        for node, (requests, why) in self.dropped.items():
            self.write({"type": "worker", "event": "dropped", "node": node, "requests": requests,
                        "reason": f"its windows were not counted: {why}"})
        self.dropped = {}

    def _evict(self, node: str, reason: str, may_have_run: bool = False) -> None:
        """Take a worker that is not one of this run's planned ones out of the run: out of Locust's
        clients and users dispatcher (its users go back to the planned workers), and told to quit."""
        self.evicted.add(node)
        client = self.runner.clients.get(node)
        # It may have run users (and load on the target this run does not count) if it was connected while the
        # run was open: evicted before the stop, or reporting users, or sending windows that claim requests (its
        # first window can come after the stop began, on a busy machine): then never a pass. Only a worker turned
        # away before the run opened (or after it, with nothing to show) is merely refused.
        seen = self.strangers.pop(node, None) is not None  # connected while the run was open (see check)
        claimed = self.dropped.get(node, [0])[0] > 0
        had_users = self.opened and (claimed or may_have_run or (client is not None and (
            not self.stopping or seen or getattr(client, "user_count", 0) > 0)))
        if client is not None:
            del self.runner.clients[node]
            dispatcher = getattr(self.runner, "_users_dispatcher", None)
            if dispatcher is not None:
                dispatcher.remove_worker(client)
        self.runner.send_message("quit", None, client_id=node)
        logger.warning("loadkit: evicting worker %s: %s", node, reason)
        if had_users:
            self.redispatch()
        self.write({"type": "worker", "event": "unplanned" if had_users else "refused", "node": node,
                    "at_s": round(self.elapsed(), 3), "reason": reason})

    def register(self) -> None:
        self.runner.register_message(HELLO, self.on_hello)

    def on_hello(self, environment: Any, msg: Any, **_kw: Any) -> None:
        node = str(msg.node_id)
        if node in self.evicted:
            return  # already out of this run (and told to quit)
        data = msg.data if isinstance(msg.data, dict) else {}
        version = data.get("version")
        nonce = str(data.get("nonce", ""))
        reason = ""
        if version != __version__:
            reason = (f"worker {node} runs loadkit {version}, this master runs loadkit {__version__}: "
                      "run the same loadkit version (image) on the master and on every worker")
        elif self.secret and not verify(proof(self.secret, "hello", nonce, node), data.get("proof")):
            reason = (f"worker {node} did not prove it knows this master's {TOKEN_ENV}: give the master and "
                      f"every worker the same {TOKEN_ENV} (a Secret)")
        elif not self.secret and data.get("token"):
            reason = (f"worker {node} has a {TOKEN_ENV} and this master has none: set the same {TOKEN_ENV} "
                      "on the master")
        if reason:
            logger.error("loadkit: refusing %s", reason)
            self.runner.send_message(REFUSED, {"reason": reason}, client_id=node)
            self._forget(node)
            self.write({"type": "worker", "event": "refused", "node": node, "reason": reason})
            return
        self.strangers.pop(node, None)
        index = self.runner.get_worker_index(node)
        plan = {**self.plan, "index": index, "workers": self.expected, "run": self.run_id}
        if self.secret:
            plan["proof"] = plan_proof(self.secret, nonce, plan)
        self.runner.send_message(PLAN, plan, client_id=node)
        if node not in self.nodes:
            self.nodes[node] = _Node(index)
            self.write({"type": "worker", "event": "joined", "node": node, "index": index,
                        "at_s": round(self.elapsed(), 3)})

    def _forget(self, node: str) -> None:
        """A refused worker: out of Locust's clients (it would count it ready, and its "quit" as the last
        worker leaving) and out of the users dispatcher, where Locust's client_ready put it; if the
        users were already out, they go back to the planned workers."""
        self.evicted.add(node)
        self.strangers.pop(node, None)
        client = self.runner.clients.get(node)
        if client is None:
            return
        del self.runner.clients[node]
        dispatcher = getattr(self.runner, "_users_dispatcher", None)
        if dispatcher is not None:
            dispatcher.remove_worker(client)
            if self.opened and not self.stopping:
                self.redispatch()

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

    def _unplanned(self) -> None:
        """Evict a connected worker that has not said loadkit's hello within a grace time (a plain
        `locust --worker`): Locust gives it users, but its load would not be counted."""
        now = time.monotonic()
        for node in self._live():
            if node in self.nodes:
                continue
            since = self.strangers.setdefault(node, now)
            if now - since >= _UNPLANNED_GRACE_S:
                self._evict(node, "it never said loadkit's hello (a plain `locust --worker`, not "
                                  "`loadkit worker`): its load would not be counted")

    def ready(self) -> bool:
        """Every connected worker holds the plan (none would get users without it), and enough do."""
        live = self._live()
        return len(live) >= self.expected and all(node in self.nodes for node in live)

    def wait(self) -> bool:
        """Block the shape until the workers are ready; False (and a fatal record) after wait_s."""
        deadline = time.monotonic() + self.wait_s
        while not self.ready():
            self._unplanned()
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
        """Mark workers lost: missing (no heartbeat), gone without a final window, or done early;
        a lost one heard again "rejoined"; a connected worker without the plan is evicted."""
        if not self.stopping:
            self._unplanned()
        for node, state in self.nodes.items():
            client = self.runner.clients.get(node)
            if state.lost:
                if not state.gone and not state.final and client is not None and client.state != self.missing:
                    state.lost = False  # it heartbeats again: Locust gave it users back
                    logger.warning("loadkit: worker %s (index %s) rejoined", node, state.index)
                    self.write({"type": "worker", "event": "rejoined", "node": node, "index": state.index,
                                "at_s": round(self.elapsed(), 3)})
                continue
            if state.final and self.stopping:
                continue
            if state.final:
                state.gone = True
                reason = "it stopped before the end of the run (its process was asked to stop)"
            elif client is None:
                state.gone = True
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
                    "requests": state.requests, "reason": reason, "users_moved": state.gone})

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
                break
            self.sleep(0.05)
        for node, state in self.nodes.items():
            if not state.final and not state.lost:
                self._lose(node, state, f"it sent no final window within {timeout_s:g}s of the stop")
        # A worker without the plan still connected (a plain `locust --worker` that joined less than the
        # grace time before the stop): Locust gives a worker that joins a running test users at once, so
        # its load may be on the target and not in the result: unplanned, never a pass.
        for node in [n for n in self._live() if n not in self.nodes and n not in self.evicted]:
            self._evict(node, "it never said loadkit's hello (a plain `locust --worker`, not `loadkit worker`) "
                              "and was connected when the run stopped: its load is not counted", may_have_run=True)
