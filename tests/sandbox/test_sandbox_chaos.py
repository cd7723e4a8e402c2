"""The chaos endpoints of the admin API over real HTTP: router faults and pod kills.

Fault tests share one sandbox and remove every fault afterwards; kill tests share another and
each waits until every pod is back, so test order does not matter. Metric assertions compare
before/after deltas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import psutil
import pytest

from loadkit import httpcalls
from loadkit.sandbox import SandboxProcess

pytestmark = pytest.mark.slow

PRIMARY, CANARY = "bruno-site-primary", "bruno-site"
DELAY_MS = 300


@pytest.fixture(scope="module")
def sandbox(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=2)


@pytest.fixture(scope="module")
def kill_sandbox(start_sandbox: Callable[..., SandboxProcess]) -> SandboxProcess:
    return start_sandbox(pods=2)


@pytest.fixture()
def admin(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    """An admin client; every fault a test leaves behind is removed after it."""
    with httpx.Client(base_url=sandbox.admin_url, timeout=10) as client:
        yield client
        assert client.delete("/faults").status_code == 200


@pytest.fixture()
def traffic(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.traffic_url, timeout=10) as client:
        yield client


def _add(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    response = admin.post("/faults", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _timed(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - started


def _flag_count(scrape: Any, total: Any, sandbox: SandboxProcess, **labels: str) -> float:
    return float(total(scrape(sandbox.metrics_url), "istio_requests_total", **labels))


# -- router faults -----------------------------------------------------------------------------


def test_delay_fault_slows_canary_only_until_deleted(
    sandbox: SandboxProcess, admin: httpx.Client, traffic: httpx.Client, scrape: Any, total: Any, poll: Any
) -> None:
    delayed = {"destination_workload": CANARY, "response_flags": "DI"}
    before = _flag_count(scrape, total, sandbox, **delayed)
    fault = _add(admin, version="canary", kind="delay", delay_ms=DELAY_MS)
    assert fault | {"id": "", "created_at": "", "expires_at": ""} == {
        "id": "",
        "version": "canary",
        "kind": "delay",
        "delay_ms": DELAY_MS,
        "http_status": None,
        "percentage": 100.0,
        "created_at": "",
        "expires_at": "",
        "owner": None,  # added without one, as old clients do
        # the fields of the host-level and dependency faults, unset for a router delay
        "dependency": None, "cpu_pct": None, "memory_mb": None, "mechanism": None, "detail": None,
    }
    assert admin.get("/faults").json() == {"faults": [fault]}
    assert admin.get("/sandbox").json()["faults"] == [fault]

    for _ in range(3):
        response, elapsed = _timed(traffic, "/canary/about")
        assert (response.status_code, response.headers["X-Served-By"]) == (200, CANARY)
        assert elapsed >= DELAY_MS / 1000
        response, elapsed = _timed(traffic, "/about")
        assert (response.status_code, response.headers["X-Served-By"]) == (200, PRIMARY)
        assert elapsed < DELAY_MS / 1000
    poll(lambda: _flag_count(scrape, total, sandbox, **delayed) == before + 3, timeout=5)

    assert admin.delete(f"/faults/{fault['id']}").json() == {"removed": 1}
    assert admin.get("/faults").json() == {"faults": []}
    response, elapsed = _timed(traffic, "/canary/about")
    assert response.status_code == 200 and elapsed < DELAY_MS / 1000
    assert _flag_count(scrape, total, sandbox, **delayed) == before + 3


def test_abort_fault_answers_exactly_its_percentage(
    sandbox: SandboxProcess, admin: httpx.Client, traffic: httpx.Client, scrape: Any, total: Any, poll: Any
) -> None:
    canary = {"destination_workload": CANARY}
    aborted = {**canary, "response_code": "503", "response_flags": "FI"}
    before = (_flag_count(scrape, total, sandbox, **canary), _flag_count(scrape, total, sandbox, **aborted))
    _add(admin, version="canary", kind="abort", http_status=503, percentage=10)

    responses = [traffic.get("/canary/about") for _ in range(100)]
    failed = [i for i, r in enumerate(responses, start=1) if r.status_code == 503]
    assert failed == list(range(10, 101, 10))  # exactly floor(n * 10%), evenly spread
    for i in failed:
        response = responses[i - 1]
        assert response.text == "fault filter abort"
        assert response.headers["X-Served-By"] == CANARY
        assert "X-Pod" not in response.headers  # answered by the router, no pod was contacted
    assert {r.status_code for r in responses} == {200, 503}
    primary = [traffic.get("/about") for _ in range(20)]
    assert {(r.status_code, r.headers["X-Served-By"]) for r in primary} == {(200, PRIMARY)}

    def counted() -> bool:
        samples = scrape(sandbox.metrics_url)
        after = (total(samples, "istio_requests_total", **canary), total(samples, "istio_requests_total", **aborted))
        return after == (before[0] + 100, before[1] + 10)

    poll(counted, timeout=5)


def test_delay_and_abort_together_flag_both(
    sandbox: SandboxProcess, admin: httpx.Client, traffic: httpx.Client, scrape: Any, total: Any, poll: Any
) -> None:
    both = {"destination_workload": CANARY, "response_code": "418", "response_flags": "DI,FI"}
    before = _flag_count(scrape, total, sandbox, **both)
    _add(admin, version="canary", kind="abort", http_status=418)
    _add(admin, version="canary", kind="delay", delay_ms=100)
    response, elapsed = _timed(traffic, "/canary/")
    assert (response.status_code, response.text) == (418, "fault filter abort")
    assert elapsed >= 0.1  # delays come first, then the abort
    poll(lambda: _flag_count(scrape, total, sandbox, **both) == before + 1, timeout=5)


def test_probes_are_never_faulted(sandbox: SandboxProcess, admin: httpx.Client, traffic: httpx.Client) -> None:
    for version in ("canary", "primary"):
        _add(admin, version=version, kind="abort", http_status=500)
    assert traffic.get("/canary/").status_code == 500
    assert traffic.get("/").status_code == 500
    for path in ("/healthz", "/canary/healthz"):
        assert (traffic.get(path).status_code, traffic.get(path).text) == (200, "ok")
    assert admin.get("/healthz").text == "ok"


def test_fault_expires_after_its_ttl(
    sandbox: SandboxProcess, admin: httpx.Client, traffic: httpx.Client, poll: Any
) -> None:
    fault = _add(admin, version="canary", kind="abort", http_status=503, ttl_s=1.0, owner={"run": "chaos-ttl"})
    assert traffic.get("/canary/").status_code == 503
    poll(lambda: admin.get("/faults").json() == {"faults": []}, timeout=5)
    assert traffic.get("/canary/").status_code == 200
    assert admin.get("/sandbox").json()["faults"] == []
    expired = f"fault {fault['id']} expired after 1 s and was removed: abort 503 on 100% of canary requests, " \
        "owned by run chaos-ttl"
    poll(lambda: expired in sandbox.stderr_tail(50), timeout=5)


OWNER = {"run": "chaos-1a2b3c4d", "pid": 4242, "host": "ci-runner-7", "started": 1_900_000_000.25,
         "command": "loadkit chaos run experiments/kill.yaml"}


def test_a_fault_records_its_owner(sandbox: SandboxProcess, admin: httpx.Client, poll: Any) -> None:
    fault = _add(admin, version="canary", kind="abort", http_status=503, ttl_s=120, owner=OWNER)
    assert fault["owner"] == OWNER
    created, expires = (datetime.fromisoformat(fault[key]) for key in ("created_at", "expires_at"))
    assert expires - created == timedelta(seconds=120)
    assert admin.get("/faults").json() == {"faults": [fault]}
    assert admin.get("/sandbox").json()["faults"] == [fault]
    added = f"fault {fault['id']} added: abort 503 on 100% of canary requests, owned by run chaos-1a2b3c4d " \
        "(pid 4242 on ci-runner-7, 'loadkit chaos run experiments/kill.yaml'), for at most 120 s"
    poll(lambda: added in sandbox.stderr_tail(50), timeout=5)
    partial = _add(admin, version="canary", kind="delay", delay_ms=1, percentage=1, owner={"run": "r1"})
    assert partial["owner"] == {"run": "r1", "pid": None, "host": None, "started": None, "command": None}


def test_run_filter_lists_and_removes_only_that_runs_faults(admin: httpx.Client) -> None:
    def add(version: str, run: str | None) -> str:
        owner = {"owner": {**OWNER, "run": run}} if run else {}
        return str(_add(admin, version=version, kind="delay", delay_ms=1, percentage=1, **owner)["id"])

    a_canary, b_canary, nobody, a_primary = add("canary", "run-a"), add("canary", "run-b"), add("canary", None), \
        add("primary", "run-a")

    def listed(**query: str) -> list[str]:
        return [f["id"] for f in admin.get("/faults", params=query).json()["faults"]]

    assert listed(run="run-a") == [a_canary, a_primary]
    assert listed(run="run-a", version="canary") == [a_canary]
    assert listed(run="run-c") == []
    assert listed(version="canary") == [a_canary, b_canary, nobody]
    assert admin.delete("/faults", params={"run": "run-a", "version": "primary"}).json() == {"removed": 1}
    assert admin.delete("/faults", params={"run": "run-a"}).json() == {"removed": 1}
    assert admin.delete("/faults", params={"run": "run-a"}).json() == {"removed": 0}  # a rollback may repeat
    assert listed() == [b_canary, nobody]  # another run's fault and an ownerless one are untouched
    assert admin.delete("/faults", params={"version": "canary"}).json() == {"removed": 2}  # as before


def test_ttl_above_an_hour_is_refused_naming_the_limit(admin: httpx.Client) -> None:
    response = admin.post("/faults", json={**ABORT, "ttl_s": 3600.5})
    assert response.status_code == 400
    problem = response.json()
    assert problem["field"] == "ttl_s"
    assert problem["error"].startswith("ttl_s: must be at most 3600 s (1 hour), got 3600.5")


def test_delete_removes_all_or_one_versions_faults(admin: httpx.Client, traffic: httpx.Client) -> None:
    ids = [
        _add(admin, version="canary", kind="delay", delay_ms=1, percentage=1)["id"],
        _add(admin, version="primary", kind="abort", http_status=502, percentage=1)["id"],
        _add(admin, version="canary", kind="abort", http_status=503, percentage=1)["id"],
    ]
    assert len(set(ids)) == 3
    assert [f["id"] for f in admin.get("/sandbox").json()["faults"]] == ids
    assert admin.delete("/faults", params={"version": "canary"}).json() == {"removed": 2}
    assert [f["id"] for f in admin.get("/faults").json()["faults"]] == [ids[1]]
    assert admin.delete("/faults").json() == {"removed": 1}
    assert admin.delete("/faults").json() == {"removed": 0}
    assert admin.get("/faults").json() == {"faults": []}


def test_unknown_fault_id_is_404(admin: httpx.Client) -> None:
    fault = _add(admin, version="canary", kind="delay", delay_ms=1, percentage=1)
    assert admin.delete(f"/faults/{fault['id']}").status_code == 200
    response = admin.delete(f"/faults/{fault['id']}")
    assert response.status_code == 404
    assert fault["id"] in response.json()["error"]


ABORT = {"version": "canary", "kind": "abort", "http_status": 503}
DELAY = {"version": "canary", "kind": "delay", "delay_ms": 100}
KILL = {"version": "canary", "count": 1}
BAD_INPUT = [
    # id, method, path, JSON body (bytes: sent raw), the field the 400 must name
    ("percentage-zero", "POST", "/faults", {**ABORT, "percentage": 0}, "percentage"),
    ("percentage-negative", "POST", "/faults", {**ABORT, "percentage": -5}, "percentage"),
    ("percentage-above-100", "POST", "/faults", {**ABORT, "percentage": 100.5}, "percentage"),
    ("percentage-string", "POST", "/faults", {**ABORT, "percentage": "10"}, "percentage"),
    ("ttl-zero", "POST", "/faults", {**ABORT, "ttl_s": 0}, "ttl_s"),
    ("ttl-above-an-hour", "POST", "/faults", {**ABORT, "ttl_s": 3601}, "ttl_s"),
    ("ttl-a-day", "POST", "/faults", {**ABORT, "ttl_s": 86400}, "ttl_s"),
    ("unknown-version", "POST", "/faults", {**ABORT, "version": "stable"}, "version"),
    ("missing-version", "POST", "/faults", {"kind": "abort", "http_status": 503}, "version"),
    ("unknown-kind", "POST", "/faults", {**ABORT, "kind": "slow"}, "kind"),
    ("delay-without-ms", "POST", "/faults", {"version": "canary", "kind": "delay"}, "delay_ms"),
    ("delay-ms-zero", "POST", "/faults", {**DELAY, "delay_ms": 0}, "delay_ms"),
    ("delay-ms-float", "POST", "/faults", {**DELAY, "delay_ms": 1.5}, "delay_ms"),
    ("delay-with-status", "POST", "/faults", {**DELAY, "http_status": 503}, "http_status"),
    ("abort-without-status", "POST", "/faults", {"version": "canary", "kind": "abort"}, "http_status"),
    ("abort-status-399", "POST", "/faults", {**ABORT, "http_status": 399}, "http_status"),
    ("abort-status-600", "POST", "/faults", {**ABORT, "http_status": 600}, "http_status"),
    ("abort-with-delay", "POST", "/faults", {**ABORT, "delay_ms": 100}, "delay_ms"),
    ("typo", "POST", "/faults", {**ABORT, "percent": 10}, "percent"),
    ("not-json", "POST", "/faults", b"version=canary", "body"),
    ("empty-body", "POST", "/faults", b"", "body"),
    ("json-list", "POST", "/faults", [ABORT], "body"),
    ("owner-not-object", "POST", "/faults", {**ABORT, "owner": "chaos-1"}, "owner"),
    ("owner-unknown-key", "POST", "/faults", {**ABORT, "owner": {"run": "r", "user": "me"}}, "owner.user"),
    ("owner-run-empty", "POST", "/faults", {**ABORT, "owner": {"run": ""}}, "owner.run"),
    ("owner-run-space", "POST", "/faults", {**ABORT, "owner": {"run": "my run"}}, "owner.run"),
    ("owner-run-too-long", "POST", "/faults", {**ABORT, "owner": {"run": "r" * 129}}, "owner.run"),
    ("owner-run-number", "POST", "/faults", {**ABORT, "owner": {"run": 7}}, "owner.run"),
    ("owner-pid-string", "POST", "/faults", {**ABORT, "owner": {"pid": "4242"}}, "owner.pid"),
    ("owner-pid-bool", "POST", "/faults", {**ABORT, "owner": {"pid": True}}, "owner.pid"),
    ("owner-pid-zero", "POST", "/faults", {**ABORT, "owner": {"pid": 0}}, "owner.pid"),
    ("owner-host-newline", "POST", "/faults", {**ABORT, "owner": {"host": "a\nb"}}, "owner.host"),
    ("owner-host-too-long", "POST", "/faults", {**ABORT, "owner": {"host": "h" * 256}}, "owner.host"),
    ("owner-started-negative", "POST", "/faults", {**ABORT, "owner": {"started": -1.0}}, "owner.started"),
    ("owner-started-in-ms", "POST", "/faults", {**ABORT, "owner": {"started": 1.9e12}}, "owner.started"),
    ("owner-started-string", "POST", "/faults", {**ABORT, "owner": {"started": "1.5"}}, "owner.started"),
    ("owner-command-too-long", "POST", "/faults", {**ABORT, "owner": {"command": "c" * 201}}, "owner.command"),
    ("owner-command-escape", "POST", "/faults", {**ABORT, "owner": {"command": "x\x1b[2J"}}, "owner.command"),
    ("delete-bad-version", "DELETE", "/faults?version=stable", None, "version"),
    ("delete-unknown-param", "DELETE", "/faults?kind=delay", None, "kind"),
    ("delete-bad-run", "DELETE", "/faults?run=a%20b", None, "run"),
    ("delete-empty-run", "DELETE", "/faults?run=", None, "run"),
    ("list-bad-run", "GET", "/faults?run=" + "r" * 129, None, "run"),
    ("list-unknown-param", "GET", "/faults?owner=me", None, "owner"),
    ("kill-count-zero", "POST", "/pods/kill", {**KILL, "count": 0}, "count"),
    ("kill-count-string", "POST", "/pods/kill", {**KILL, "count": "1"}, "count"),
    ("kill-count-missing", "POST", "/pods/kill", {"version": "canary"}, "count"),
    ("kill-version", "POST", "/pods/kill", {**KILL, "version": "bruno-site"}, "version"),
    ("kill-restart-negative", "POST", "/pods/kill", {**KILL, "restart_after_s": -1}, "restart_after_s"),
    ("kill-restart-too-late", "POST", "/pods/kill", {**KILL, "restart_after_s": 301}, "restart_after_s"),
    ("kill-signal", "POST", "/pods/kill", {**KILL, "signal": "SIGINT"}, "signal"),
    ("kill-not-json", "POST", "/pods/kill", b"{", "body"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT]
)
def test_bad_input_is_400_naming_the_field(
    sandbox: SandboxProcess, admin: httpx.Client, method: str, path: str, body: object, field: str
) -> None:
    if isinstance(body, bytes):
        response = admin.request(method, path, content=body)
    else:
        response = admin.request(method, path, json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == field
    assert problem["error"].startswith(f"{field}: ")
    assert admin.get("/faults").json() == {"faults": []}
    pods = admin.get("/pods").json()["pods"]
    assert all(pod["alive"] and pod["restarts"] == 0 for pod in pods)  # nothing was killed


def test_percentage_boundaries_are_accepted(admin: httpx.Client) -> None:
    low = _add(admin, **ABORT, percentage=0.001, ttl_s=3600)
    high = _add(admin, **DELAY, percentage=100, ttl_s=0.5)
    assert (low["percentage"], high["percentage"]) == (0.001, 100.0)


# -- pod kills ---------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _pods(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    pods = httpcalls.get(f"{sandbox.admin_url}/pods", timeout=10).json()["pods"]
    return {pod["name"]: pod for pod in pods}


def _all_back(sandbox: SandboxProcess, before: dict[str, dict[str, Any]], killed: list[str]) -> bool:
    """Every killed pod runs again as a new process with one more restart; the others untouched."""
    now = _pods(sandbox)
    for name, old in before.items():
        pod = now[name]
        expected = (True, old["restarts"] + 1) if name in killed else (True, old["restarts"])
        if (pod["alive"], pod["restarts"]) != expected or (name in killed) != (pod["pid"] != old["pid"]):
            return False
    return True


def test_killing_one_canary_pod(kill_sandbox: SandboxProcess, poll: Any) -> None:
    before = _pods(kill_sandbox)
    assert set(before) == {"bruno-site-primary-0", "bruno-site-primary-1", "bruno-site-0", "bruno-site-1"}
    victim = before["bruno-site-0"]
    assert set(victim) == {"name", "version", "port", "pid", "alive", "restarts"}
    assert (victim["version"], victim["alive"]) == ("canary", True)
    killed_at = time.monotonic()
    answer = httpcalls.post(
        f"{kill_sandbox.admin_url}/pods/kill", json={"version": "canary", "count": 1, "restart_after_s": 1.5}
    )
    assert answer.json() == {"killed": ["bruno-site-0"], "restart_after_s": 1.5, "signal": "SIGKILL"}
    poll(lambda: _gone(victim["pid"]), timeout=5)

    with httpx.Client(base_url=kill_sandbox.traffic_url, timeout=10) as client:
        down = [client.get("/canary/about") for _ in range(6)]
    status = httpcalls.get(f"{kill_sandbox.admin_url}/sandbox", timeout=10).json()
    assert not status["workloads"]["canary"]["pods"][0]["alive"]  # so every request above saw it down
    assert all(r.status_code == 503 or r.headers["X-Pod"] == "bruno-site-1" for r in down)

    poll(lambda: _all_back(kill_sandbox, before, ["bruno-site-0"]), timeout=15)
    assert time.monotonic() - killed_at >= 1.5
    with httpx.Client(base_url=kill_sandbox.traffic_url, timeout=10) as client:
        up = [client.get("/canary/about") for _ in range(4)]
    assert {(r.status_code, r.headers["X-Pod"]) for r in up} == {(200, "bruno-site-0"), (200, "bruno-site-1")}
    assert "pod bruno-site-0 (pid" in kill_sandbox.stderr_tail(50)


def test_kill_more_than_alive_kills_all_and_all_come_back(kill_sandbox: SandboxProcess, poll: Any) -> None:
    poll(lambda: all(pod["alive"] for pod in _pods(kill_sandbox).values()), timeout=15)
    before = _pods(kill_sandbox)
    canary = ["bruno-site-0", "bruno-site-1"]
    answer = httpcalls.post(
        f"{kill_sandbox.admin_url}/pods/kill",
        json={"version": "canary", "count": 5, "restart_after_s": 0.5, "signal": "SIGTERM", "endpoint_lag_s": 0},
    )
    assert answer.json() == {"killed": canary, "restart_after_s": 0.5, "signal": "SIGTERM"}
    down = httpcalls.get(f"{kill_sandbox.traffic_url}/canary/", timeout=10)
    assert (down.status_code, down.text, down.headers["X-Served-By"]) == (503, "no healthy upstream", CANARY)
    poll(lambda: all(_gone(before[name]["pid"]) for name in canary), timeout=10)

    poll(lambda: _all_back(kill_sandbox, before, canary), timeout=15)
    assert httpcalls.get(f"{kill_sandbox.traffic_url}/canary/about", timeout=10).status_code == 200
    assert httpcalls.get(f"{kill_sandbox.traffic_url}/about", timeout=10).status_code == 200


def test_a_killed_pod_fails_requests_until_the_endpoints_catch_up(kill_sandbox: SandboxProcess,
                                                                  poll: Any) -> None:
    """Like a Service whose endpoints still list a dead pod: requests to it fail (503 UF) for
    endpoint_lag_s, then the router leaves it out until its replacement is ready."""
    poll(lambda: all(pod["alive"] for pod in _pods(kill_sandbox).values()), timeout=15)
    answer = httpcalls.post(f"{kill_sandbox.admin_url}/pods/kill",
                            json={"version": "canary", "count": 1, "restart_after_s": 3, "endpoint_lag_s": 1.0})
    assert answer.status_code == 200
    statuses = [httpcalls.get(f"{kill_sandbox.traffic_url}/canary/about", timeout=10) for _ in range(6)]
    failed = [r for r in statuses if r.status_code == 503]
    assert failed and all("upstream connect error" in r.text for r in failed)  # round-robin hits the dead pod
    poll(lambda: all(httpcalls.get(f"{kill_sandbox.traffic_url}/canary/about", timeout=10).status_code == 200
                     for _ in range(4)), timeout=10)  # endpoints caught up: only the live pod is picked
    poll(lambda: all(pod["alive"] for pod in _pods(kill_sandbox).values()), timeout=15)
