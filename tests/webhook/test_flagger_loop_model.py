"""The Flagger simulator itself, against a scripted in-process webhook server: the call sequences, payloads,
checksums and retries must be the ones fluxcd/flagger's scheduler.go / webhook.go produce."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.webhook.flagger_loop import (
    AB_TESTING,
    BLUE_GREEN,
    CANARY,
    FAILED,
    FINALISING,
    PROGRESSING,
    PROMOTING,
    SUCCEEDED,
    WAITING,
    WAITING_PROMOTION,
    Analysis,
    Canary,
    FlaggerLoop,
    Hook,
    checksum_of,
    post_webhook,
    spec_hash,
)

INTERVAL = 0.02
NAME, NAMESPACE = "bruno-site", "bruno"


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Script = int | Reply | Callable[[dict[str, Any]], "int | Reply"]


@dataclass(frozen=True)
class Received:
    t: float
    kind: str
    payload: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


class HookServer:
    """A webhook receiver on 127.0.0.1: POST /flagger/<kind> answers the next scripted reply for that kind (the
    last one repeats); unscripted kinds answer 200, except rollback which answers 404 (no rollback)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = self.path.removeprefix("/flagger/")
                payload = json.loads(raw) if raw else {}
                with owner._lock:
                    owner.received.append(Received(time.monotonic(), kind, payload, raw,
                                                   {k.lower(): v for k, v in self.headers.items()}))
                    script = owner._scripts.get(kind) or [404 if kind == "rollback" else 200]
                    step = script.pop(0) if len(script) > 1 else script[0]
                reply = step(payload) if callable(step) else step
                reply = reply if isinstance(reply, Reply) else Reply(reply)
                time.sleep(reply.delay)
                body = reply.body.encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that timed out and went away

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def script(self, kind: str, *replies: Script) -> None:
        with self._lock:
            self._scripts[kind] = list(replies)

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.close()


ALL = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback",
       "post-rollout")


def make_loop(server: HookServer, *wiring: str | Hook, spec: str = "rev-a", primary: str | None = "rev-0",
              **analysis: Any) -> FlaggerLoop:
    hooks = [h if isinstance(h, Hook) else Hook(h) for h in (wiring or ALL)]
    canary = Canary(NAME, NAMESPACE, spec, primary=primary,
                    analysis=Analysis(hooks=hooks, interval_s=analysis.pop("interval_s", INTERVAL), **analysis))
    return FlaggerLoop(canary, server.url, backoff_scale=0.01)


def per_tick(loop: FlaggerLoop) -> list[tuple[str, ...]]:
    return [record.hooks for record in loop.tick_log]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the canary strategy --------------------------------------------------------------------------------------------


def test_canary_strategy_steps_to_max_weight_then_promotes_over_the_right_ticks(hooks: HookServer) -> None:
    loop = make_loop(hooks, step_weight=10, max_weight=30)
    began = time.monotonic()
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert outcome.reason == f"Promotion completed! Scaling down {NAME}.{NAMESPACE}"
    assert per_tick(loop) == [
        ("confirm-rollout",),  # Initialized -> Progressing; the analysis starts next tick
        ("rollback", "pre-rollout", "confirm-traffic-increase"),  # weight 0 -> 10
        ("rollback", "rollout", "confirm-traffic-increase"),  # 20
        ("rollback", "rollout", "confirm-traffic-increase"),  # 30
        ("rollback", "rollout", "confirm-traffic-increase", "confirm-promotion"),  # at maxWeight: -> Promoting
        (),  # Promoting: all traffic to the primary -> Finalising
        ("post-rollout",),  # Finalising -> Succeeded
    ]
    assert [r.phase for r in loop.tick_log] == [PROGRESSING] * 4 + [PROMOTING, FINALISING, SUCCEEDED]
    assert [r.canary_weight for r in loop.tick_log] == [0, 10, 20, 30, 30, 0, 0]
    assert outcome.ticks == 7 and outcome.peak_weight == 30 and outcome.failed_checks == 0
    assert time.monotonic() - began >= 6 * INTERVAL * 0.9  # one tick at once, then one per interval
    assert [f"Advance {NAME}.{NAMESPACE} canary weight {w}" in [e.message for e in outcome.events]
            for w in (10, 20, 30)] == [True] * 3
    phases = {(c.type, c.phase) for c in outcome.calls}
    assert phases == {("confirm-rollout", "Initialized"), ("rollback", PROGRESSING), ("pre-rollout", PROGRESSING),
                      ("rollout", PROGRESSING), ("confirm-traffic-increase", PROGRESSING),
                      ("confirm-promotion", PROGRESSING), ("post-rollout", SUCCEEDED)}
    assert loop.canary.primary_spec == "rev-a"


def test_a_failing_pre_rollout_is_retried_each_tick_until_the_threshold_then_rolled_back(hooks: HookServer) -> None:
    hooks.script("pre-rollout", Reply(412, "smoke: p99 812ms > 500ms"))
    loop = make_loop(hooks, threshold=3)
    outcome = loop.run()
    assert outcome.result == "rolled back", outcome
    assert outcome.reason == f"Rolling back {NAME}.{NAMESPACE} failed checks threshold reached 3"
    assert per_tick(loop) == [("confirm-rollout",)] + [("rollback", "pre-rollout")] * 3 + [("rollback", "post-rollout")]
    assert [r.failed_checks for r in loop.tick_log] == [0, 1, 2, 3, 0]  # SyncStatus(Failed) resets it
    assert outcome.failed_checks == 3 and outcome.peak_weight == 0
    assert outcome.status.phase == FAILED and outcome.status.canary_weight == 0
    assert [c.phase for c in outcome.calls_of("post-rollout")] == [FAILED]
    halts = [e.message for e in outcome.events if e.message.startswith("Halt")]
    assert halts == [f"Halt {NAME}.{NAMESPACE} advancement pre-rollout check pre-rollout failed "
                     "smoke: p99 812ms > 500ms"] * 3
    assert [e.message for e in outcome.events][-2:] == [
        f"Canary failed! Scaling down {NAME}.{NAMESPACE}", "Post-rollout check post-rollout passed"]


def test_the_first_rollback_hook_that_answers_200_rolls_back_at_once(hooks: HookServer) -> None:
    hooks.script("rollback", 404, 404, 404, 404, 200)  # the 3rd Progressing tick's first hook answers 200
    loop = make_loop(hooks, "confirm-rollout", Hook("rollback", name="rb-1"), Hook("rollback", name="rb-2"),
                     "pre-rollout", "rollout", "post-rollout", threshold=10)
    outcome = loop.run()
    assert outcome.result == "rolled back", outcome
    assert outcome.reason == f"Rolling back {NAME}.{NAMESPACE} manual webhook invoked"
    assert [[c.name for c in outcome.calls if c.tick == tick and c.type == "rollback"] for tick in (2, 3, 4)] == [
        ["rb-1", "rb-2"], ["rb-1", "rb-2"], ["rb-1"]]
    assert per_tick(loop)[-1] == ("rollback", "post-rollout")
    assert outcome.peak_weight == 20 and outcome.status.canary_weight == 0


def test_confirm_promotion_failing_waits_without_traffic_increase_hooks(hooks: HookServer) -> None:
    hooks.script("confirm-promotion", 403, 403, 200)
    loop = make_loop(hooks, step_weight=25, max_weight=50)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert per_tick(loop) == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout", "confirm-traffic-increase"),
        ("rollback", "rollout", "confirm-traffic-increase"),
        ("rollback", "rollout", "confirm-traffic-increase", "confirm-promotion"),  # 403 -> WaitingPromotion
        ("rollback", "rollout", "confirm-promotion"),  # no confirm-traffic-increase while WaitingPromotion
        ("rollback", "rollout", "confirm-promotion"),  # 200 -> Promoting
        (),
        ("post-rollout",),
    ]
    waiting = loop.tick_log[3]
    assert waiting.phase == WAITING_PROMOTION
    # SetStatusPhase(WaitingPromotion) zeroes status.canaryWeight; the routes keep the traffic at maxWeight.
    assert (waiting.status_weight, waiting.canary_weight, waiting.iterations) == (0, 50, -1)
    assert [c.phase for c in outcome.calls_of("rollback")][-2:] == [WAITING_PROMOTION] * 2
    assert sum(e.message.startswith("Halt") for e in outcome.events) == 1  # the event only on the transition


def test_confirm_rollout_waits_without_penalty_and_sees_the_previous_revisions_checksum(hooks: HookServer) -> None:
    hooks.script("confirm-rollout", 403, 403, 200)
    loop = make_loop(hooks, step_weight=50, max_weight=50, threshold=1)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    gate = outcome.calls_of("confirm-rollout")
    assert [(c.phase, c.checksum) for c in gate] == [
        ("Initialized", checksum_of("rev-0")), (WAITING, checksum_of("rev-0")), (WAITING, checksum_of("rev-0"))]
    assert [r.phase for r in loop.tick_log[:3]] == [WAITING, WAITING, PROGRESSING]
    assert [r.failed_checks for r in loop.tick_log[:3]] == [0, 0, 0]
    assert {c.checksum for c in outcome.calls if c.type != "confirm-rollout"} == {checksum_of("rev-a")}
    assert sum(e.message.startswith("Halt") for e in outcome.events) == 1


# --- revisions and checksums ----------------------------------------------------------------------------------------


def test_a_new_revision_mid_analysis_restarts_without_hooks_and_resets_failed_checks(hooks: HookServer) -> None:
    hooks.script("rollout", 412, 200)
    loop = make_loop(hooks, step_weight=10, max_weight=20, threshold=5)

    def redeploy(tick: int, loop: FlaggerLoop) -> None:
        if tick == 4:
            loop.canary.apply("rev-b")

    outcome = loop.run(on_tick=redeploy)
    assert outcome.result == "promoted", outcome
    ticks = per_tick(loop)
    assert ticks[:5] == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout", "confirm-traffic-increase"),  # weight 10
        ("rollback", "rollout"),  # 412: failedChecks 1
        (),  # "New revision detected! Restarting analysis": no hooks, no post-rollout
        ("rollback", "pre-rollout", "confirm-traffic-increase"),  # from weight 0 again, no confirm-rollout
    ]
    restart = loop.tick_log[3]
    assert restart.events == (f"New revision detected! Restarting analysis for {NAME}.{NAMESPACE}",)
    assert (restart.phase, restart.failed_checks, restart.canary_weight, restart.iterations) == (PROGRESSING, 0, 0, 0)
    assert loop.tick_log[2].failed_checks == 1
    assert {c.checksum for c in outcome.calls if 1 < c.tick < 4} == {checksum_of("rev-a")}
    assert {c.checksum for c in outcome.calls if c.tick > 4} == {checksum_of("rev-b")}
    assert len(outcome.calls_of("confirm-rollout")) == 1 and len(outcome.calls_of("post-rollout")) == 1
    assert loop.canary.primary_spec == "rev-b"


def test_a_redeploy_from_another_thread_is_picked_up_on_the_next_tick(hooks: HookServer) -> None:
    loop = make_loop(hooks, step_weight=10, max_weight=30)

    def redeploy(payload: dict[str, Any]) -> int:
        loop.canary.apply("rev-b")
        return 200

    # The webhook server's own thread applies rev-b while answering the second rollout call.
    hooks.script("rollout", 200, redeploy, 200)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    restarts = [r.tick for r in loop.tick_log if any("Restarting analysis" in e for e in r.events)]
    assert restarts == [5]
    assert outcome.calls_of("post-rollout")[0].checksum == checksum_of("rev-b")


def test_a_b_a_repeats_the_checksum_of_a(hooks: HookServer) -> None:
    loop = make_loop(hooks, step_weight=50, max_weight=50)
    runs = []
    for spec in ("rev-a", "rev-b", "rev-a"):
        loop.canary.apply(spec)
        outcome = loop.run()
        assert outcome.result == "promoted", outcome
        runs.append(outcome)
    assert [(r.calls_of("confirm-rollout")[0].phase, r.calls_of("confirm-rollout")[0].checksum) for r in runs] == [
        ("Initialized", checksum_of("rev-0")), (SUCCEEDED, checksum_of("rev-a")), (SUCCEEDED, checksum_of("rev-b"))]
    pre = [r.calls_of("pre-rollout")[0].checksum for r in runs]
    assert pre == [checksum_of("rev-a"), checksum_of("rev-b"), checksum_of("rev-a")]
    assert len(set(pre)) == 2
    assert [r.calls_of("post-rollout")[0].checksum for r in runs] == pre
    assert loop.tick_log[0].tick == 1 and loop.tick_count == sum(r.ticks for r in runs)


def test_after_a_failure_confirm_rollout_already_sees_the_new_revision(hooks: HookServer) -> None:
    """shouldAdvance syncs LastAppliedSpec in the Failed phase, and checkCanaryStatus re-reads the Canary."""
    hooks.script("pre-rollout", 500)
    loop = make_loop(hooks, threshold=1)
    assert loop.run().result == "rolled back"
    hooks.script("pre-rollout", 200)
    loop.canary.apply("rev-b")
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    first = outcome.calls_of("confirm-rollout")[0]
    assert (first.phase, first.checksum) == (FAILED, checksum_of("rev-b"))


def test_reverting_to_the_primary_after_a_failure_starts_no_analysis(hooks: HookServer) -> None:
    hooks.script("pre-rollout", 412)
    loop = make_loop(hooks, threshold=1)
    assert loop.run().result == "rolled back"
    loop.canary.apply("rev-0")  # the primary's spec: hasSpecChanged treats it as a manual rollback
    outcome = loop.run(max_ticks=3)
    assert outcome.result == "timed out" and outcome.calls == [] and outcome.phase == FAILED
    assert loop.canary.status.last_applied_spec == spec_hash("rev-0")  # synced anyway


def test_a_new_canary_is_initialised_first_and_a_config_change_starts_an_analysis(hooks: HookServer) -> None:
    loop = make_loop(hooks, primary=None, step_weight=50, max_weight=50)
    loop.canary.apply("rev-a", configs={"configmap/bruno-site": "v1"})
    first = loop.run(max_ticks=2)
    assert first.result == "timed out" and first.calls == []
    assert [e.message for e in first.events] == [f"Initialization done! {NAME}.{NAMESPACE}"]
    loop.canary.apply("rev-a", configs={"configmap/bruno-site": "v2"})  # same pod spec, a tracked ConfigMap changed
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert outcome.calls_of("pre-rollout")[0].checksum == checksum_of("rev-a", {"configmap/bruno-site": "v2"})
    assert checksum_of("rev-a", {"configmap/bruno-site": "v2"}) != checksum_of("rev-a", {"configmap/bruno-site": "v1"})


# --- A/B testing and Blue/Green --------------------------------------------------------------------------------------


def test_ab_testing_runs_iterations_analysis_ticks_with_all_matched_traffic_on_the_canary(hooks: HookServer) -> None:
    loop = make_loop(hooks, iterations=3, match=[{"headers": {"x-canary": {"exact": "insider"}}}])
    assert loop.canary.analysis.strategy == AB_TESTING
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert per_tick(loop) == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout"),  # iteration 1
        ("rollback", "rollout"),  # 2
        ("rollback", "rollout"),  # 3
        ("rollback", "rollout", "confirm-promotion"),  # -> Promoting
        (),
        ("post-rollout",),
    ]
    assert [r.canary_weight for r in loop.tick_log] == [0, 100, 100, 100, 100, 0, 0]
    assert [e.message for e in outcome.events if "iteration" in e.message] == [
        f"Advance {NAME}.{NAMESPACE} canary iteration {i}/3" for i in (1, 2, 3)]


def test_ab_testing_waiting_for_promotion_asks_every_other_tick(hooks: HookServer) -> None:
    hooks.script("confirm-promotion", 403, 403, 200)
    loop = make_loop(hooks, iterations=2, match=[{"headers": {"x-canary": {"exact": "insider"}}}])
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    # A failed promotion gate sets iterations to analysis.iterations-1, so the next tick advances an iteration
    # and the one after asks again.
    assert [c.tick for c in outcome.calls_of("confirm-promotion")] == [4, 6, 8]
    assert [r.iterations for r in loop.tick_log[3:8]] == [1, 2, 1, 2, 2]
    assert [r.phase for r in loop.tick_log[3:8]] == [WAITING_PROMOTION] * 4 + [PROMOTING]
    assert outcome.ticks == 10


def test_blue_green_runs_iterations_plus_one_rollout_ticks(hooks: HookServer) -> None:
    loop = make_loop(hooks, iterations=3)
    assert loop.canary.analysis.strategy == BLUE_GREEN
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert per_tick(loop) == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout"),  # iteration 1
        ("rollback", "rollout"),  # 2
        ("rollback", "rollout"),  # 3
        ("rollback", "rollout", "confirm-promotion"),  # route all traffic to the canary
        ("rollback", "rollout", "confirm-promotion"),  # -> Promoting (fluxcd/flagger#963)
        (),
        ("post-rollout",),
    ]
    assert [r.canary_weight for r in loop.tick_log] == [0, 0, 0, 0, 100, 100, 0, 0]
    assert len(outcome.calls_of("rollout")) == 3 + 1


def test_blue_green_with_one_iteration_reruns_pre_rollout_while_waiting_for_promotion(hooks: HookServer) -> None:
    """SetStatusPhase(WaitingPromotion) sets iterations to analysis.iterations-1 = 0 and B/G keeps the canary
    weight at 0, so the next tick looks like the first analysis tick again."""
    hooks.script("confirm-promotion", 403, 200)
    loop = make_loop(hooks, iterations=1)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert per_tick(loop) == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout"),
        ("rollback", "rollout", "confirm-promotion"),  # 403 -> WaitingPromotion, iterations 0
        ("rollback", "pre-rollout"),  # "Starting canary analysis" again
        ("rollback", "rollout", "confirm-promotion"),  # route all traffic to the canary
        ("rollback", "rollout", "confirm-promotion"),  # -> Promoting
        (),
        ("post-rollout",),
    ]


def test_a_mirrored_canary_mirrors_one_step_before_shifting_traffic(hooks: HookServer) -> None:
    loop = make_loop(hooks, step_weight=20, max_weight=40, mirror=True)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert per_tick(loop) == [
        ("confirm-rollout",),
        ("rollback", "pre-rollout", "confirm-traffic-increase"),  # -> mirrored, weight 0
        ("rollback", "rollout"),  # mirrored: no confirm-traffic-increase; -> weight 20
        ("rollback", "rollout", "confirm-traffic-increase"),  # 40
        ("rollback", "rollout", "confirm-traffic-increase", "confirm-promotion"),
        (),
        ("post-rollout",),
    ]
    assert [r.canary_weight for r in loop.tick_log] == [0, 0, 20, 40, 40, 0, 0]


def test_step_weights_and_strategy_selection() -> None:
    ladder = Analysis(step_weights=[1, 2, 10, 80])
    assert ladder.strategy == CANARY and ladder.effective_max_weight == 80
    assert [ladder.next_step_weight(w) for w in (0, 1, 2, 10, 80)] == [1, 1, 8, 70, 20]
    assert Analysis(threshold=0).effective_threshold == 1
    assert Analysis(max_weight=0).effective_max_weight == 100


def test_skip_analysis_promotes_on_the_tick_after_confirm_rollout(hooks: HookServer) -> None:
    loop = make_loop(hooks, skip_analysis=True)
    outcome = loop.run()
    assert outcome.result == "promoted" and outcome.ticks == 2, outcome
    assert per_tick(loop) == [("confirm-rollout",), ("post-rollout",)]
    assert outcome.reason == f"Promotion completed! Canary analysis was skipped for {NAME}.{NAMESPACE}"


# --- the wire -------------------------------------------------------------------------------------------------------


def test_payloads_are_flaggers_json(hooks: HookServer) -> None:
    loop = make_loop(hooks, Hook("confirm-rollout", metadata={"b": "2", "a": "<1>"}), Hook("pre-rollout"),
                     step_weight=50, max_weight=50)
    loop.run()
    gate, pre = hooks.of("confirm-rollout")[0], hooks.of("pre-rollout")[0]
    assert gate.raw == (b'{"name":"bruno-site","namespace":"bruno","phase":"Initialized","checksum":"'
                        + checksum_of("rev-0").encode() + b'","metadata":{"a":"\\u003c1\\u003e","b":"2"}}')
    assert pre.payload == {"name": NAME, "namespace": NAMESPACE, "phase": PROGRESSING,
                           "checksum": checksum_of("rev-a")}  # no metadata key when there is none
    assert gate.headers["content-type"] == "application/json"
    assert gate.headers["user-agent"] == "Go-http-client/1.1" and "accept" not in gate.headers

    old = make_loop(hooks, "pre-rollout", step_weight=50, max_weight=50)
    old.send_checksum = False  # Flagger < 1.34
    old.run()
    assert hooks.of("pre-rollout")[-1].payload == {"name": NAME, "namespace": NAMESPACE, "phase": PROGRESSING}


def test_204_is_a_failure_for_every_hook_type(hooks: HookServer) -> None:
    hooks.script("pre-rollout", 204, 200)
    hooks.script("rollback", 204)  # not a rollback signal either
    loop = make_loop(hooks, threshold=5, step_weight=50, max_weight=50)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert [c.status for c in outcome.calls_of("pre-rollout")] == [204, 200]
    assert loop.tick_log[1].failed_checks == 1 and outcome.failed_checks == 1


def test_retries_honour_retry_after_on_503(hooks: HookServer) -> None:
    hooks.script("pre-rollout", Reply(503, headers={"Retry-After": "4"}), Reply(503, headers={"Retry-After": "0"}),
                 Reply(200))
    loop = make_loop(hooks, Hook("pre-rollout", retries=2), step_weight=50, max_weight=50)
    loop.backoff_scale = 0.1  # Retry-After 4s -> 0.4s and 0s -> 0s, where the exponential backoff is 0.1s, 0.2s
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    [call] = outcome.calls_of("pre-rollout")  # one CallWebhook, three attempts
    assert call.ok and call.attempts == (503, 503, 200) and call.status == 200
    times = [r.t for r in hooks.of("pre-rollout")]
    assert times[1] - times[0] >= 0.39 and times[2] - times[1] < 0.15


def test_transport_follows_go_retryablehttp(hooks: HookServer) -> None:
    url = f"{hooks.url}/flagger/rollout"

    def post(*replies: Script, retries: int = 0, timeout: str = "10s") -> Any:
        hooks.script("rollout", *replies)
        before = len(hooks.of("rollout"))
        answer = post_webhook(url, b"{}", timeout=timeout, retries=retries, backoff_scale=0.01)
        return answer, [r.t for r in hooks.of("rollout")[before:]]

    answer, times = post(500, 500, 500, retries=2)  # exponential: 1s then 2s (scaled)
    assert answer.attempts == (500, 500, 500) and not answer.ok
    assert answer.error == f"POST {url} giving up after 3 attempt(s)"  # the body is dropped
    assert times[1] - times[0] >= 0.01 and times[2] - times[1] >= 0.02
    answer, _ = post(Reply(500, "boom"))
    assert answer.error == f"POST {url} giving up after 1 attempt(s)"
    answer, _ = post(501, 200, retries=3)  # 501 is not retried
    assert answer.attempts == (501,) and answer.error == ""
    answer, _ = post(Reply(429, headers={"Retry-After": "0"}), 202, retries=1)
    assert answer.attempts == (429, 202) and answer.ok
    answer, _ = post(Reply(412, "p99 812ms > 500ms"), retries=3)  # 4xx: no retry, the body is the error
    assert answer.attempts == (412,) and answer.error == "p99 812ms > 500ms"
    answer, _ = post(Reply(201))
    assert answer.ok
    answer, _ = post(Reply(200, delay=0.5), timeout="100ms")
    assert not answer.ok and answer.status == 0 and "Client.Timeout exceeded" in str(answer.error)
    refused = f"http://127.0.0.1:{closed_port()}/flagger/rollback"
    answer = post_webhook(refused, b"{}", timeout="1s", retries=1, backoff_scale=0.01)
    assert answer.attempts == (0, 0) and str(answer.error).startswith(f"POST {refused} giving up after 2 attempt(s): ")
    answer = post_webhook(url, b"{}", timeout="5", retries=0)  # CallEventWebhook passes the timeout as it is
    assert answer.attempts == () and answer.error == 'time: missing unit in duration "5"'


def test_unreachable_and_slow_hooks_are_failures(hooks: HookServer) -> None:
    hooks.script("pre-rollout", Reply(200, delay=0.3), 200)
    unreachable = Hook("rollback", url=f"http://127.0.0.1:{closed_port()}/flagger/rollback")
    loop = make_loop(hooks, unreachable, Hook("pre-rollout", timeout="50ms"), step_weight=50, max_weight=50,
                     threshold=2)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome  # an unreachable rollback hook never rolls back
    assert {c.status for c in outcome.calls_of("rollback")} == {0}
    assert [c.ok for c in outcome.calls_of("pre-rollout")] == [False, True]
    assert outcome.failed_checks == 1


# --- events ---------------------------------------------------------------------------------------------------------


def test_event_hooks_get_every_event_with_flaggers_metadata(hooks: HookServer) -> None:
    event_hook = Hook("event", name="load-events", metadata={"eventType": "mine", "team": "web"})
    loop = make_loop(hooks, "pre-rollout", event_hook, step_weight=50, max_weight=50)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    got = [(r.payload["phase"], r.payload["metadata"]["eventMessage"]) for r in hooks.of("event")]
    assert got == [
        (PROGRESSING, f"New revision detected! Scaling up {NAME}.{NAMESPACE}"),  # on a Progressing copy
        (PROGRESSING, f"Starting canary analysis for {NAME}.{NAMESPACE}"),
        (PROGRESSING, "Pre-rollout check pre-rollout passed"),
        (PROGRESSING, f"Advance {NAME}.{NAMESPACE} canary weight 50"),
        (PROGRESSING, f"Copying {NAME}.{NAMESPACE} template spec to {NAME}-primary.{NAMESPACE}"),
        (PROMOTING, "Routing all traffic to primary"),
        (SUCCEEDED, f"Promotion completed! Scaling down {NAME}.{NAMESPACE}"),
    ]
    first = hooks.of("event")[0].payload
    assert first["checksum"] == checksum_of("rev-0")  # recorded before SyncStatus(Progressing)
    assert first["metadata"]["eventType"] == "Normal" and first["metadata"]["team"] == "web"
    assert first["metadata"]["timestamp"].isdigit()
    assert [e.message for e in outcome.events] == [m for _, m in got]


def test_failure_events_name_the_hook_and_carry_its_error(hooks: HookServer) -> None:
    hooks.script("rollout", Reply(412, "error rate 5.1% > 1%"))
    loop = make_loop(hooks, Hook("rollout", name="load-steady"), "event", step_weight=10, max_weight=50,
                     threshold=1)
    outcome = loop.run()
    assert outcome.result == "rolled back", outcome
    warnings = [(r.payload["phase"], r.payload["metadata"]["eventMessage"]) for r in hooks.of("event")
                if r.payload["metadata"]["eventType"] == "Warning"]
    assert warnings == [
        (PROGRESSING, f"Halt {NAME}.{NAMESPACE} advancement external check load-steady failed error rate 5.1% > 1%"),
        (PROGRESSING, f"Rolling back {NAME}.{NAMESPACE} failed checks threshold reached 1"),
        (FAILED, f"Canary failed! Scaling down {NAME}.{NAMESPACE}"),
    ]


def test_a_metric_check_failure_is_a_failed_check(hooks: HookServer) -> None:
    verdicts: Iterator[bool | str] = iter(
        [True, "Halt bruno-site.bruno advancement request-success-rate 97.20 < 99", True, True])
    loop = make_loop(hooks, "rollout", step_weight=25, max_weight=50, threshold=2)
    loop.metric_check = lambda canary: next(verdicts)
    outcome = loop.run()
    assert outcome.result == "promoted", outcome
    assert outcome.failed_checks == 1
    assert "Halt bruno-site.bruno advancement request-success-rate 97.20 < 99" in [e.message for e in outcome.events]


def test_a_canary_from_a_manifest() -> None:
    manifest = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: bruno-site, namespace: bruno}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: bruno-site}
  analysis:
    interval: 30s
    threshold: 10
    iterations: 10
    match: [{headers: {x-canary: {exact: insider}}}]
    webhooks:
      - {name: load-smoke, type: pre-rollout, url: "http://loadkit.loadkit/flagger/pre-rollout", timeout: 60s,
         retries: 2, metadata: {profile: smoke, users: 5}}
      - {name: load-gate, type: confirm-promotion, url: "http://loadkit.loadkit/flagger/confirm-promotion"}
"""
    canary = Canary.from_manifest(manifest, "rev-a", base_url="http://127.0.0.1:9", primary="rev-0")
    assert (canary.name, canary.namespace, canary.target) == (NAME, NAMESPACE, NAME)
    analysis = canary.analysis
    assert analysis.strategy == AB_TESTING and analysis.interval_s == 30 and analysis.threshold == 10
    assert analysis.hooks[0] == Hook("pre-rollout", name="load-smoke", url="http://127.0.0.1:9/flagger/pre-rollout",
                                     metadata={"profile": "smoke", "users": "5"}, timeout="60s", retries=2)
    assert canary.status.phase == "Initialized" and canary.checksum == checksum_of("rev-0")
