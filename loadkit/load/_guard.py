"""The Locust child's TCP guard: every new client connection passes one policy (the target's origin
only, or nothing until a distributed worker holds its plan). Imported only by the Locust plugin
(it patches gevent's socket class, which Locust has monkey-patched in).
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import gevent.event

from loadkit.load._window import REFUSED_MARKER

_RESOLVE_EVERY_S = 5.0  # a refused destination re-resolves the target at most this often (Service DNS moves)
_REFUSALS_LOGGED = 20  # distinct refused destinations named in the Locust log; the error table counts them all
logger = logging.getLogger("loadkit")

_V4_MAPPED = bytes(10) + b"\xff\xff"


def _ip(host: Any) -> bytes | None:
    """An IP literal packed (no scope id, IPv4-mapped IPv6 as IPv4); None for a name.

    inet_pton, not the ipaddress module: the same answer at a tenth of the cost, per connection.
    """
    if not isinstance(host, str):
        return None
    host = host.partition("%")[0]
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


def _host_port(host: Any, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Connections:
    """gevent's socket class, patched once: `policy` (None: allow) sees every new TCP connection.

    Locust has monkey-patched the process by now, so every client socket is gevent's socket class:
    FastHttpUser's (geventhttpclient), HttpUser's (requests/urllib3) and a locustfile's own. The
    patch wraps that class's connect and connect_ex, so a refused destination fails before a byte
    is sent, whichever client. Clients pool connections: this runs once per new connection, never
    per request. ZeroMQ (the master/worker link) has sockets of its own and is not affected.
    """

    _installed: Connections | None = None

    def __init__(self) -> None:
        self.policy: Any = None

    @classmethod
    def get(cls) -> Connections:
        if cls._installed is None:
            cls._installed = cls()
            cls._installed._patch()
        return cls._installed

    def _patch(self) -> None:
        cls = socket.socket  # gevent's class, patched in by Locust; SSL sockets call its connect too
        connect, connect_ex = cls.connect, cls.connect_ex

        def check(sock: Any, address: Any) -> Any:
            return address if self.policy is None else self.policy(sock, address)

        def guarded_connect(sock: Any, address: Any) -> None:
            connect(sock, check(sock, address))

        def guarded_connect_ex(sock: Any, address: Any) -> int:
            try:
                address = check(sock, address)
            except ConnectionRefusedError:
                return errno.ECONNREFUSED
            return int(connect_ex(sock, address))

        setattr(cls, "connect", guarded_connect)  # noqa: B010 - mypy rejects assigning a method
        setattr(cls, "connect_ex", guarded_connect_ex)  # noqa: B010


def refuse_until_planned(sock: Any, address: Any) -> Any:
    """A worker's policy until its master's plan arrives: no load goes anywhere without a plan."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type == socket.SOCK_DGRAM:
        return address
    raise ConnectionRefusedError(f"{REFUSED_MARKER}: this loadkit worker has no plan from its master yet")


class OriginGuard:
    """Refuses every TCP connection but those to the target's origin (the plan's pin_to_target),
    through `Connections`: a redirect or an absolute URL to another host or port fails before a
    byte is sent. It stops mistakes, not a hostile locustfile.
    """

    def __init__(self, host: str) -> None:
        url = urlsplit(host)
        if not url.hostname:
            raise ValueError(f"pin_to_target needs a target with a host, not {host!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.target = _host_port(self.host, self.port)
        self.allowed: frozenset[tuple[bytes, int]] = frozenset()
        self.resolved_at = -math.inf
        self.resolving: gevent.event.Event | None = None
        self.logged: set[str] = set()

    def install(self) -> None:
        Connections.get().policy = self.check

    def check(self, sock: Any, address: Any) -> Any:
        """The address to connect to, or ConnectionRefusedError when it is outside the target."""
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type != socket.SOCK_DGRAM
        if not inet or not isinstance(address, tuple):
            return address  # Unix sockets, UDP (DNS): not where load goes
        ip = _ip(address[0])
        if ip is None:
            # A name: resolve it here (as gevent would) and connect to what was checked.
            address = socket.getaddrinfo(address[0], address[1], sock.family, socket.SOCK_STREAM)[0][4]
            ip = _ip(address[0])
        dest = (ip, address[1])
        if dest in self.allowed or (self._resolve() and dest in self.allowed):
            return address
        where = _host_port(address[0], address[1])
        if where not in self.logged and len(self.logged) < _REFUSALS_LOGGED:
            self.logged.add(where)
            logger.warning("loadkit: refusing connections to %s: outside the target %s", where, self.target)
        if not self.allowed:
            raise ConnectionRefusedError(f"{REFUSED_MARKER} to {where}: the target {self.target} "
                                         "did not resolve, so where it may go is unknown")
        raise ConnectionRefusedError(f"{REFUSED_MARKER} to {where}: outside the target {self.target} "
                                     "(a redirect or an absolute URL left the allowed target)")

    def _resolve(self) -> bool:
        """Refresh the target's addresses, unless done within the last few seconds."""
        if self.resolving is not None:
            # getaddrinfo yields to other greenlets: their misses wait for its answer (the first
            # connections of a run all miss), rather than be refused against the old addresses.
            self.resolving.wait()
            return True
        if time.monotonic() - self.resolved_at < _RESOLVE_EVERY_S:
            return False
        self.resolving = gevent.event.Event()
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
            self.allowed = frozenset((ip, self.port) for *_, addr in infos if (ip := _ip(addr[0])) is not None)
        except OSError as exc:
            logger.warning("loadkit: cannot resolve the target %s (%s); keeping its last addresses", self.target, exc)
        finally:
            self.resolved_at = time.monotonic()
            done, self.resolving = self.resolving, None
            done.set()
        return True
