"""pin_to_target: real Locust against a target that redirects elsewhere; the elsewhere counts what it got.

A answers every request `302 Location: http://127.0.0.1:<B>/landing`; B answers 200 and counts.
Pinned to A, not one request may reach B, whichever Locust client, redirect or absolute URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadkit.load.runner import LoadOutcome, LoadPlan, LocustDriver
from loadkit.load.shapes import Stage
from tests.http_servers import CountingServer, redirecting, serve_http

pytestmark = pytest.mark.slow

REFUSED = "outside the target"


@pytest.fixture
def elsewhere() -> Iterator[CountingServer]:
    """B: a host outside the target."""
    with serve_http("127.0.0.1", lambda _path: (200, {})) as server:
        yield server


@pytest.fixture
def target(elsewhere: CountingServer) -> Iterator[CountingServer]:
    """A: the allowed target, which redirects every request to B."""
    with redirecting("127.0.0.1", elsewhere) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours these; the Locust child inherits our environment.
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _locustfile(tmp_path: Path, user: str, extra_urls: tuple[str, ...] = ()) -> Path:
    """A one-task locustfile: GET /page, then each of `extra_urls` (absolute)."""
    module = "locust" if user == "HttpUser" else "locust.contrib.fasthttp"
    gets = "".join(f"        self.client.get({url!r}, name={url!r})\n" for url in extra_urls)
    path = tmp_path / f"{user.lower()}_journey.py"
    path.write_text(
        f"from locust import constant, task\nfrom {module} import {user}\n\n"
        f"class Visitor({user}):\n"
        "    wait_time = constant(0.05)\n\n"
        "    @task\n"
        "    def visit(self):\n"
        "        self.client.get('/page')\n"
        f"{gets}"
    )
    return path


def _run(target: str, locustfile: Path, *, pin: bool, processes: int = 1) -> LoadOutcome:
    plan = LoadPlan(target=target, locustfile=locustfile, stages=[Stage(duration_s=3, users=4, spawn_rate=4)],
                    processes=processes, pin_to_target=pin)
    return LocustDriver().run(plan)


def _assert_refused(outcome: LoadOutcome, elsewhere: CountingServer) -> None:
    """Every request failed as a refused connection, named in the error table, and B saw none."""
    stats = outcome.final
    assert elsewhere.requests == 0, elsewhere.paths
    assert stats.requests > 0
    assert stats.failures == stats.requests
    assert stats.failures_by_kind == {"refused": stats.requests}  # not the target's failures
    assert stats.status_codes == {"0": stats.requests}
    assert outcome.errors, "no error table"
    # Each names B as the refused destination: not one connection to the target itself was refused.
    assert all(f"connection to 127.0.0.1:{elsewhere.port}: {REFUSED} " in message
               for message, _count in outcome.errors), outcome.errors
    assert sum(count for _message, count in outcome.errors) == stats.failures


@pytest.mark.parametrize("user", ["FastHttpUser", "HttpUser"])
def test_pinned_run_sends_nothing_outside_the_target(user: str, target: CountingServer, elsewhere: CountingServer,
                                                       tmp_path: Path) -> None:
    absolute = f"http://127.0.0.1:{elsewhere.port}/absolute"
    outcome = _run(f"http://127.0.0.1:{target.port}", _locustfile(tmp_path, user, (absolute,)), pin=True)
    _assert_refused(outcome, elsewhere)
    assert target.paths["/page"] > 0
    assert target.requests == target.paths["/page"]  # the absolute URL never reached A either
    assert any(message.startswith(f"GET {absolute}: ConnectionRefusedError: loadkit refused a connection to "
                                  f"127.0.0.1:{elsewhere.port}: outside the target 127.0.0.1:{target.port} ")
               for message, _count in outcome.errors), outcome.errors


@pytest.mark.parametrize("user", ["FastHttpUser", "HttpUser"])
def test_unpinned_run_follows_the_redirect(user: str, target: CountingServer, elsewhere: CountingServer,
                                          tmp_path: Path) -> None:
    outcome = _run(f"http://127.0.0.1:{target.port}", _locustfile(tmp_path, user), pin=False)
    assert elsewhere.paths["/landing"] > 0
    assert outcome.final.failures == 0 and outcome.errors == []


def test_a_target_by_name_allows_its_addresses(target: CountingServer, elsewhere: CountingServer,
                                               tmp_path: Path) -> None:
    by_address = f"http://127.0.0.1:{target.port}/by-address"  # what localhost resolves to
    outcome = _run(f"http://localhost:{target.port}", _locustfile(tmp_path, "FastHttpUser", (by_address,)),
                   pin=True)
    _assert_refused(outcome, elsewhere)
    assert target.paths["/page"] > 0 and target.paths["/by-address"] > 0
    assert f"outside the target localhost:{target.port} " in outcome.errors[0][0]


def test_an_ipv6_target(elsewhere: CountingServer, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        try:
            target = stack.enter_context(redirecting("::1", elsewhere))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        outcome = _run(f"http://[::1]:{target.port}", _locustfile(tmp_path, "HttpUser"), pin=True)
    _assert_refused(outcome, elsewhere)
    assert target.paths["/page"] > 0
    assert f"outside the target [::1]:{target.port} " in outcome.errors[0][0]


def test_pinned_workers_send_nothing_outside_the_target(target: CountingServer, elsewhere: CountingServer,
                                                        tmp_path: Path) -> None:
    absolute = f"http://127.0.0.1:{elsewhere.port}/absolute"
    outcome = _run(f"http://127.0.0.1:{target.port}", _locustfile(tmp_path, "FastHttpUser", (absolute,)),
                   pin=True, processes=2)
    _assert_refused(outcome, elsewhere)
    assert target.paths["/page"] > 0
