"""The /ui admin sessions: one random id per sign-in, revocable, with a hard expiry.

The cookie is `<id>.<expires>.<signature>`: the signature (HMAC-SHA256 keyed with the admin token)
covers the id and the expiry, so neither can be changed; the server also keeps each live session
(its expiry and its CSRF token) in memory, so signing out revokes it and 12 h after sign-in it is
refused whatever the browser sends. A restart signs everyone out; so does a new admin token.

    sessions = Sessions("the-admin-token")
    cookie, session = sessions.start()
    assert sessions.get(cookie) == session
    sessions.end(cookie)
    assert sessions.get(cookie) is None
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 256  # sign-ins kept at once; the oldest goes first (only token holders can sign in)


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str  # the token every form of this session carries (`csrf`), checked on each action
    expires_at: float  # Unix time


class Sessions:
    """The live sessions of one server process (`token`: the admin token, None: no sign-in)."""

    def __init__(self, token: str | None, ttl_s: float = SESSION_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._token, self._ttl_s, self._clock = token, ttl_s, clock
        self._live: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self) -> tuple[str, Session]:
        """A new session: (its cookie value, the session)."""
        if self._token is None:
            raise RuntimeError("no admin token: no session")
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                          expires_at=float(int(self._clock() + self._ttl_s)))
        with self._lock:
            self._prune()
            while len(self._live) >= MAX_SESSIONS:
                self._live.pop(next(iter(self._live)))
            self._live[session.id] = session
        return f"{session.id}.{int(session.expires_at)}.{self._sign(session.id, int(session.expires_at))}", session

    def get(self, cookie: str) -> Session | None:
        """The live session of a cookie value; None when it is forged, expired or signed out."""
        if self._token is None:
            return None
        sid, _, rest = cookie.partition(".")
        expires, _, signature = rest.partition(".")
        if not sid or not expires.isdigit() or not hmac.compare_digest(signature.encode(),
                                                                        self._sign(sid, int(expires)).encode()):
            return None
        with self._lock:
            session = self._live.get(sid)
            if session is None or int(session.expires_at) != int(expires):
                return None
            if session.expires_at <= self._clock():
                del self._live[sid]
                return None
            return session

    def end(self, cookie: str) -> None:
        """Sign out: the session is refused from now on, whoever still has the cookie."""
        session = self.get(cookie)
        if session is not None:
            with self._lock:
                self._live.pop(session.id, None)

    def _sign(self, sid: str, expires: int) -> str:
        assert self._token is not None
        return hmac.new(self._token.encode(), f"loadkit-ui-session.{sid}.{expires}".encode(),
                        hashlib.sha256).hexdigest()

    def _prune(self) -> None:
        now = self._clock()
        for sid in [s for s, session in self._live.items() if session.expires_at <= now]:
            del self._live[sid]
