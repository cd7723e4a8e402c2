"""The /ui sessions (loadkit/webhook/sessions.py): random per sign-in, signed, revocable, expiring."""

from __future__ import annotations

import pytest

from loadkit.webhook.sessions import SESSION_TTL_S, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_each_sign_in_is_its_own_session_and_signing_out_revokes_it() -> None:
    sessions = Sessions("token")
    first, one = sessions.start()
    second, two = sessions.start()
    assert first != second and one.csrf != two.csrf
    assert sessions.get(first) == one and sessions.get(second) == two
    sessions.end(first)
    assert sessions.get(first) is None and sessions.get(second) == two


def test_a_session_expires_after_12_hours_whatever_the_cookie_says() -> None:
    clock = Clock()
    sessions = Sessions("token", clock=clock)
    cookie, _ = sessions.start()
    clock.now += SESSION_TTL_S - 1
    assert sessions.get(cookie) is not None
    clock.now += 2
    assert sessions.get(cookie) is None
    assert SESSION_TTL_S == 12 * 3600


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda sid, exp, sig: f"{sid}.{int(exp) + 3600}.{sig}", id="later-expiry"),
    pytest.param(lambda sid, exp, sig: f"{sid[:-1]}A.{exp}.{sig}", id="other-id"),
    pytest.param(lambda sid, exp, sig: f"{sid}.{exp}.{'0' * len(sig)}", id="forged-signature"),
    pytest.param(lambda sid, exp, sig: "", id="empty"),
    pytest.param(lambda sid, exp, sig: f"{sid}.{exp}", id="no-signature"),
])
def test_a_changed_cookie_is_no_session(tamper) -> None:  # type: ignore[no-untyped-def]
    sessions = Sessions("token")
    cookie, _ = sessions.start()
    assert sessions.get(tamper(*cookie.split("."))) is None
    assert sessions.get(cookie) is not None


def test_another_token_or_a_restart_signs_everyone_out() -> None:
    cookie, _ = Sessions("token").start()
    assert Sessions("token").get(cookie) is None  # a new process: nothing in memory
    assert Sessions(None).get(cookie) is None
