"""The sample app's dependencies (`loadkit sandbox up --deps`): a real PostgreSQL it reads stock
from, and an external HTTP service ("shipping") it asks for quotes, each behind one TCP proxy per
version, the way a sidecar sits between a pod and what it calls.

- `Postgres`: `initdb` into the sandbox's state dir, `postgres` on a free 127.0.0.1 port (as the
  `postgres` user when the sandbox runs as root: PostgreSQL refuses to run as root), seeded with a
  `stock` table, stopped with the sandbox. It dies with the supervisor even after a `kill -9`
  (PR_SET_PDEATHSIG). `Postgres.missing()` says why it cannot run (no binaries): the app then runs
  without it and its stock pages answer 503 saying so.
- `ShippingService`: a small aiohttp app on its own port.
- `DependencyProxy`: what the pods of one version connect to. The dependency faults act here, so a
  fault on the canary's database leaves the primary's calls alone (Istio's `sourceLabels`):
  slow (each answer held `delay_ms`), failing (every connection cut, new ones closed at once),
  unreachable (a black hole: connections accepted, nothing forwarded, the client times out).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aiohttp import web

from loadkit.errors import TargetError
from loadkit.sandbox._pods import Log
from loadkit.sandbox._shop import PRODUCTS

DB_NAME, DB_USER = "bruno", "loadkit"
_PG_START_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
_CHUNK = 65_536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM when the supervisor dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Postgres:
    """A throw-away PostgreSQL. Example: `db = Postgres(state, log); port = await db.start()`."""

    def __init__(self, state_dir: Path, log: Log) -> None:
        self.state_dir = state_dir
        self._log = log
        self.port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    @staticmethod
    def missing() -> str | None:
        """Why no PostgreSQL can run here (None: it can)."""
        absent = [name for name in ("initdb", "postgres") if shutil.which(name) is None]
        if absent:
            return f"PostgreSQL is not installed ({', '.join(absent)} not on PATH)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user to run PostgreSQL as"
        return None

    async def start(self) -> int:
        data = self.state_dir / "pgdata"
        if self._user:
            shutil.chown(self.state_dir, self._user)
        await asyncio.to_thread(self._initdb, data)
        self.port = free_port()
        log_file = (self.state_dir / "postgres.log").open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                "postgres", "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.state_dir),
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, user=self._user,
                preexec_fn=die_with_parent, start_new_session=True)
        finally:
            log_file.close()
        await self._seed()
        self._log(f"database: PostgreSQL on 127.0.0.1:{self.port} (data in {data})")
        return self.port

    def _initdb(self, data: Path) -> None:
        out = subprocess.run(["initdb", "-D", str(data), "-U", DB_USER, "-A", "trust", "-E", "UTF8", "--no-sync"],
                             capture_output=True, text=True, user=self._user, check=False, timeout=60)
        if out.returncode != 0:
            raise TargetError(f"sandbox database: initdb failed: {out.stderr.strip()[-500:]}",
                              hint="run the sandbox without --deps, or fix the PostgreSQL install")

    async def _seed(self) -> None:
        import asyncpg

        deadline = time.monotonic() + _PG_START_TIMEOUT_S
        while True:
            try:
                conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=DB_USER, database="postgres",
                                             timeout=2)
                break
            except (OSError, asyncpg.PostgresError) as exc:
                if (self._process is not None and self._process.returncode is not None) or time.monotonic() > deadline:
                    tail = (self.state_dir / "postgres.log").read_text(errors="replace")[-500:]
                    raise TargetError(f"sandbox database did not start: {exc}\n{tail}") from None
                await asyncio.sleep(0.1)
        try:
            await conn.execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=DB_USER, database=DB_NAME, timeout=5)
        try:
            await conn.execute("CREATE TABLE stock (product_id int PRIMARY KEY, name text NOT NULL, "
                               "quantity int NOT NULL)")
            await conn.executemany("INSERT INTO stock VALUES ($1, $2, $3)",
                                   [(p.id, p.name, 10 * p.id) for p in PRODUCTS])
        finally:
            await conn.close()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def make_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="loadkit-sandbox-"))


def remove_state_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def shipping_app() -> web.Application:
    """The external service: `GET /quote/{id}` -> `{"product_id": 3, "shipping_cents": 529, "days": 2}`."""

    async def quote(request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit():
            return web.json_response({"error": f"product id {raw!r} is not a number"}, status=400)
        product = int(raw)
        return web.json_response({"product_id": product, "shipping_cents": 499 + 10 * product, "days": 2})

    app = web.Application()
    app.add_routes([web.get("/quote/{id}", quote), web.get("/healthz", lambda r: _ok())])
    return app


async def _ok() -> web.Response:
    return web.Response(text="ok")


class DependencyProxy:
    """A TCP proxy from one version's pods to one dependency; the dependency faults act here."""

    def __init__(self, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.port: int | None = None
        self.slow: dict[str, int] = {}  # fault id -> delay_ms (delays add up)
        self.failing: set[str] = set()
        self.unreachable: set[str] = set()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def set_failing(self, fault_id: str) -> None:
        """Cut every open connection now; new ones are closed as they come."""
        self.failing.add(fault_id)
        for writer in list(self._open):
            writer.transport.abort()

    def clear(self, fault_id: str) -> None:
        self.slow.pop(fault_id, None)
        self.failing.discard(fault_id)
        self.unreachable.discard(fault_id)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.failing:
            writer.transport.abort()
            return
        self._open.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            while self.unreachable:  # a black hole: the connection is accepted, nothing ever answers
                await asyncio.sleep(0.05)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._open.add(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer, delay=False),
                                 self._pipe(upstream_reader, writer, delay=True))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._open.discard(w)
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool) -> None:
        while chunk := await reader.read(_CHUNK):
            while self.unreachable:
                await asyncio.sleep(0.05)
            if delay and self.slow:
                await asyncio.sleep(sum(self.slow.values()) / 1000)
            if self.failing:
                break
            writer.write(chunk)
            await writer.drain()
        writer.transport.abort()
