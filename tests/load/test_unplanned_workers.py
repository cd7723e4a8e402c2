"""`Workers._evict`'s had_users rule (134fac8): a stranger that was loading when the stop
began must end as `unplanned` (never a pass), whatever it sends. The master's side with a fake of
Locust's MasterRunner (Workers imports neither locust nor gevent: the plugin hands it the runner)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from loadkit.load import _distributed
from loadkit.load._distributed import Workers

MISSING = "missing"


class _Client:
    def __init__(self, node: str, users: int) -> None:
        self.id, self.state, self.user_classes_count = node, "running", {"WebsiteUser": users}

    @property
    def user_count(self) -> int:
        return sum(self.user_classes_count.values())


class _Clients(dict):  # type: ignore[type-arg]
    @property
    def all(self) -> list[_Client]:
        return list(self.values())


class _Runner:
    def __init__(self) -> None:
        self.clients = _Clients()
        self.sent: list[tuple[str, str | None]] = []

    def send_message(self, kind: str, data: Any, client_id: str | None = None) -> None:
        self.sent.append((kind, client_id))

    def get_worker_index(self, node: str) -> int:
        return len(self.clients)

    def register_message(self, *_a: Any) -> None:
        pass


def _workers(monkeypatch: pytest.MonkeyPatch) -> tuple[Workers, _Runner, list[dict[str, Any]]]:
    monkeypatch.setattr(_distributed, "_UNPLANNED_GRACE_S", 0.2)
    runner, records = _Runner(), []
    workers = Workers(runner, {"stages": []}, 1, 5.0, records.append, lambda: 10.0, lambda _n: None,
                      sleep=time.sleep, missing=MISSING, run_id="run1")
    runner.clients["planned"] = _Client("planned", 4)
    workers.on_hello(None, type("M", (), {"node_id": "planned", "data": {"version": _distributed.__version__}})())
    assert workers.wait()
    return workers, runner, records


def _events(records: list[dict[str, Any]], node: str) -> list[str]:
    return [r["event"] for r in records if r.get("node") == node]


def test_a_window_claiming_requests_after_the_stop_is_unplanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case 134fac8 fixes (control: passes)."""
    workers, runner, records = _workers(monkeypatch)
    runner.clients["stranger"] = _Client("stranger", 0)
    workers.stopping = True
    assert not workers.accepts("stranger", {"window": {"requests": 120}})
    assert _events(records, "stranger") == ["unplanned"]


def test_a_plain_locust_worker_loading_when_the_stop_began_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain `locust --worker` that joined less than the grace time before the stop and took users
    (Locust reports 3 users on it): it sends no loadkit window, and check() stops looking for strangers
    once stopping, so flush() ends with no event for it at all: its load on the target is uncounted and
    the run can pass."""
    workers, runner, records = _workers(monkeypatch)
    runner.clients["plain"] = _Client("plain", 3)
    workers.check()  # seen: its grace starts
    workers.stopping = True
    time.sleep(0.3)  # past the grace, during the stop's flush
    workers.on_window("planned", 100, final=True)
    workers.flush(1.0)
    assert _events(records, "plain") == ["unplanned"], records  # before: [] (nothing says it was there)
