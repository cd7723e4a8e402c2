"""Istio-like retries and timeouts in the router, with real pods: what clients get, and what each
Istio reporter counts (destination: every try; source: every client request).

Each sandbox is shared by the module; metric assertions compare before/after deltas. The kill
tests stream requests from a thread while a canary pod is killed, and stop once it is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

pytestmark = pytest.mark.slow

PRIMARY, CANARY = "bruno-site-primary", "bruno-site"
ATTEMPTS = "x-envoy-attempt-count"
SLOW_MS = 1000


@pytest.fixture(scope="module")
def retrying(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """Two retries on connect-failure and 5xx; each primary pod fails every second request."""
    return start_sandbox(pods=2, retries=2, retry_on="connect-failure,5xx", primary_error_rate=0.5)


@pytest.fixture(scope="module")
def plain(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """The default route: no retries, no timeouts."""
    return start_sandbox(pods=2)


@pytest.fixture(scope="module")
def per_try(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """Two retries on 5xx, 100 ms per try, in front of a canary that takes a second to answer."""
    return start_sandbox(pods=2, retries=2, retry_on="5xx", per_try_timeout_s=0.1, canary_latency_ms=SLOW_MS)


@pytest.fixture(scope="module")
def route_timeout(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    """A 200 ms route timeout and no retries, in front of the same slow canary."""
    return start_sandbox(pods=1, timeout_s=0.2, canary_latency_ms=SLOW_MS)


class Counts:
    """`istio_requests_total` deltas: `seen = Counts(...)`, then `seen.take().delta("source", CANARY)`."""

    def __init__(self, sandbox: SandboxProcess, scrape: Any, total: Any) -> None:
        self._sandbox, self._scrape, self._total = sandbox, scrape, total
        self._before = self._after = scrape(sandbox.metrics_url)

    def take(self) -> Counts:
        """Scrape now; `delta` compares this scrape with the first."""
        self._after = self._scrape(self._sandbox.metrics_url)
        return self

    def delta(self, reporter: str, workload: str, code: str | None = None, flags: str | None = None) -> float:
        labels = {"reporter": reporter, "destination_workload": workload}
        labels |= {"response_code": code} if code else {}
        labels |= {"response_flags": flags} if flags else {}
        return float(self._total(self._after, "istio_requests_total", **labels)
                     - self._total(self._before, "istio_requests_total", **labels))


@pytest.fixture()
def counts(scrape: Any, total: Any) -> Callable[[SandboxProcess], Counts]:
    return lambda sandbox: Counts(sandbox, scrape, total)


def _timed(url: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpcalls.get(url, timeout=10)
    return response, time.perf_counter() - started


# -- pod kills under load ----------------------------------------------------------------------


class Stream:
    """GET /canary/about back to back from a thread; `answers` holds (status, attempts, body)."""

    def __init__(self, traffic_url: str) -> None:
        self.answers: list[tuple[int, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(traffic_url,), daemon=True)

    def _run(self, traffic_url: str) -> None:
        with httpx.Client(base_url=traffic_url, timeout=10) as client:
            while not self._stop.is_set():
                response = client.get("/canary/about")
                self.answers.append((response.status_code, int(response.headers[ATTEMPTS]), response.text))

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def _pods(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    return {pod["name"]: pod for pod in httpcalls.get(f"{sandbox.admin_url}/pods", timeout=10).json()["pods"]}


def _replaced(sandbox: SandboxProcess, name: str, restarts: int) -> bool:
    pod = _pods(sandbox)[name]
    return bool(pod["alive"] and pod["restarts"] == restarts + 1)


def _kill_one_canary_pod_under_load(sandbox: SandboxProcess, poll: Any) -> list[tuple[int, int, str]]:
    """Kill bruno-site-0 while requests flow: for 1 s of endpoint lag its tries fail, then only
    bruno-site-1 is picked until the replacement is up, a second after the kill. Every answer."""
    poll(lambda: all(pod["alive"] for pod in _pods(sandbox).values()), timeout=15)
    restarts = _pods(sandbox)["bruno-site-0"]["restarts"]
    with Stream(sandbox.traffic_url) as stream:
        poll(lambda: len(stream.answers) >= 20)
        kill = {"version": "canary", "count": 1, "restart_after_s": 1.0, "endpoint_lag_s": 1.0}
        assert httpcalls.post(f"{sandbox.admin_url}/pods/kill", json=kill).json()["killed"] == ["bruno-site-0"]
        poll(lambda: _replaced(sandbox, "bruno-site-0", restarts), timeout=15)
        sent = len(stream.answers)
        poll(lambda: len(stream.answers) >= sent + 20)  # the replacement takes traffic again
    return stream.answers


def test_killing_a_canary_pod_under_load_is_invisible_to_clients_with_retries(
    retrying: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(retrying)
    answers = _kill_one_canary_pod_under_load(retrying, poll)
    assert Counter(status for status, _, _ in answers) == {200: len(answers)}  # not one error
    retried = sum(attempts - 1 for _, attempts, _ in answers)
    assert retried > 0 and {attempts for _, attempts, _ in answers} <= {1, 2}  # the other pod answered

    def counted() -> tuple[float, ...]:
        seen.take()
        return (seen.delta("destination", CANARY), seen.delta("destination", CANARY, code="200"),
                seen.delta("source", CANARY), seen.delta("source", CANARY, code="200"))

    # The pods' side counts every try, the failed ones as 503; the clients' side only what they got.
    poll(lambda: counted() == (len(answers) + retried, len(answers), len(answers), len(answers)), timeout=5)
    assert seen.delta("destination", CANARY, code="503", flags="UF") > 0  # the dead pod's connect failures


def test_killing_a_canary_pod_under_load_fails_requests_without_retries(
    plain: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(plain)
    answers = _kill_one_canary_pod_under_load(plain, poll)
    failed = [(status, body) for status, _, body in answers if status != 200]
    assert failed and all(status == 503 and body.startswith("upstream connect error") for status, body in failed)
    assert {attempts for _, attempts, _ in answers} == {1}
    poll(lambda: seen.take().delta("destination", CANARY) == len(answers), timeout=5)
    assert seen.delta("destination", CANARY, code="503") == len(failed)
    assert seen.delta("source", CANARY) == 0  # no route policy: no source side, counts as they always were


# -- 5xx answers, aborts, delays -----------------------------------------------------------------


def test_5xx_answers_are_retried_on_the_other_pod_for_any_method(
    retrying: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(retrying)
    with httpx.Client(base_url=retrying.traffic_url, timeout=10) as client:
        answers = [client.get("/about") for _ in range(8)]
        answers += [client.post("/api/rating", json={"stars": 5}) for _ in range(4)]  # POST too: body buffered
    assert [r.status_code for r in answers] == [200] * 8 + [201] * 4
    attempts = [int(r.headers[ATTEMPTS]) for r in answers]
    assert set(attempts) == {1, 3}  # a pod's 503, the other pod's 503, then the first pod again
    tries = sum(attempts)
    poll(lambda: seen.take().delta("source", PRIMARY) == len(answers), timeout=5)
    assert seen.delta("destination", PRIMARY) == tries
    assert seen.delta("destination", PRIMARY, code="503") == tries - len(answers)
    assert seen.delta("source", PRIMARY, code="503") == 0


def test_aborts_are_answered_before_routing_and_never_retried(
    retrying: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any, scrape: Any, total: Any
) -> None:
    seen = counts(retrying)
    pod_requests = total(scrape(retrying.metrics_url), "http_requests_total", workload=CANARY)
    fault = {"version": "canary", "kind": "abort", "http_status": 503, "ttl_s": 60}
    fault_id = httpcalls.post(f"{retrying.admin_url}/faults", json=fault).json()["id"]
    try:
        response = httpcalls.get(f"{retrying.traffic_url}/canary/about", timeout=10)
    finally:
        httpcalls.delete(f"{retrying.admin_url}/faults/{fault_id}")
    assert (response.status_code, response.text) == (503, "fault filter abort")
    assert ATTEMPTS not in response.headers and "X-Pod" not in response.headers  # no try was made
    poll(lambda: seen.take().delta("source", CANARY, code="503", flags="FI") == 1, timeout=5)
    assert seen.delta("destination", CANARY) == seen.delta("destination", CANARY, code="503", flags="FI") == 1
    assert total(scrape(retrying.metrics_url), "http_requests_total", workload=CANARY) == pod_requests


def test_a_delay_fault_waits_once_before_the_tries(
    per_try: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(per_try)
    fault = {"version": "primary", "kind": "delay", "delay_ms": 250, "ttl_s": 60}
    fault_id = httpcalls.post(f"{per_try.admin_url}/faults", json=fault).json()["id"]
    try:
        response, elapsed = _timed(f"{per_try.traffic_url}/about")
    finally:
        httpcalls.delete(f"{per_try.admin_url}/faults/{fault_id}")
    # 250 ms of delay, yet no 100 ms per-try timeout: the fault filter sits in front of the router.
    assert (response.status_code, response.headers[ATTEMPTS], response.headers["X-Served-By"]) == (200, "1", PRIMARY)
    assert elapsed >= 0.25
    poll(lambda: seen.take().delta("source", PRIMARY, code="200", flags="DI") == 1, timeout=5)
    assert seen.delta("destination", PRIMARY, code="200", flags="DI") == 1


# -- timeouts ------------------------------------------------------------------------------------


def test_per_try_timeout_gives_504_ut_after_every_try(
    per_try: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(per_try)
    response, elapsed = _timed(f"{per_try.traffic_url}/canary/about")
    assert (response.status_code, response.text) == (504, "upstream request timeout")
    assert (response.headers[ATTEMPTS], response.headers["server"]) == ("3", "istio-envoy")
    # Three 100 ms tries and two back-offs (at most 25 + 75 ms): sooner than the pod's one answer.
    assert 0.3 <= elapsed < SLOW_MS / 1000
    poll(lambda: seen.take().delta("source", CANARY, code="504", flags="UT,URX") == 1, timeout=5)
    assert seen.delta("destination", CANARY) == seen.delta("destination", CANARY, code="504", flags="UT") == 3


def test_route_timeout_bounds_the_whole_request(
    route_timeout: SandboxProcess, counts: Callable[[SandboxProcess], Counts], poll: Any
) -> None:
    seen = counts(route_timeout)
    response, elapsed = _timed(f"{route_timeout.traffic_url}/canary/about")
    assert (response.status_code, response.text, response.headers[ATTEMPTS]) == (504, "upstream request timeout", "1")
    assert 0.2 <= elapsed < SLOW_MS / 1000
    poll(lambda: seen.take().delta("source", CANARY, code="504", flags="UT") == 1, timeout=5)
    assert seen.delta("destination", CANARY, code="504", flags="UT") == 1
    fast, _ = _timed(f"{route_timeout.traffic_url}/about")
    assert (fast.status_code, fast.headers[ATTEMPTS]) == (200, "1")


# -- status --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "retries", "timeout_s"),
    [
        ("retrying", {"attempts": 2, "retry_on": "connect-failure,5xx", "retriable_status_codes": [],
                      "per_try_timeout_s": None}, None),
        ("per_try", {"attempts": 2, "retry_on": "5xx", "retriable_status_codes": [], "per_try_timeout_s": 0.1}, None),
        ("route_timeout", {"attempts": 0, "retriable_status_codes": [503], "per_try_timeout_s": None,
                           "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"},
         0.2),
    ],
)
def test_status_shows_each_versions_route(
    request: pytest.FixtureRequest, which: str, retries: dict[str, Any], timeout_s: float | None
) -> None:
    sandbox: SandboxProcess = request.getfixturevalue(which)
    status = httpcalls.get(f"{sandbox.admin_url}/sandbox", timeout=10).json()
    for version in ("primary", "canary"):
        assert (status["workloads"][version]["retries"], status["workloads"][version]["timeout_s"]) == (
            retries, timeout_s)
        ready = sandbox.info["workloads"][version]
        assert ready["retries"] == {k: v for k, v in retries.items() if v is not None}
        assert ready.get("timeout_s") == timeout_s


def test_the_default_route_only_adds_the_attempt_count(plain: SandboxProcess) -> None:
    response = httpcalls.get(f"{plain.traffic_url}/canary/about", timeout=10)
    assert (response.status_code, response.headers[ATTEMPTS], response.headers["X-Served-By"]) == (200, "1", CANARY)
    status = httpcalls.get(f"{plain.admin_url}/sandbox", timeout=10).json()["workloads"]["canary"]
    assert (status["retries"]["attempts"], status["timeout_s"]) == (0, None)
