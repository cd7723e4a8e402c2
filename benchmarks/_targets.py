"""Local targets for benchmarks: nginx (Debian) for raw speed, an aiohttp server for a fixed delay."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
"""

DELAY_SERVER = """
import asyncio, sys
from aiohttp import web
delay = float(sys.argv[2])
async def handle(request):
    await asyncio.sleep(delay)
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

STALL_SERVER = """
import asyncio, sys, time
from aiohttp import web
every, stall = float(sys.argv[2]), float(sys.argv[3])
t0 = time.monotonic()
async def handle(request):
    phase = (time.monotonic() - t0) % every
    if phase < stall:
        await asyncio.sleep(stall - phase)
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

# Without nginx: a keep-alive HTTP/1.1 server on asyncio's Protocol (uvloop when installed) that answers
# every GET with the same bytes. It parses nothing beyond the end of each request's headers, which is
# all a GET without a body needs; several times faster than aiohttp, enough to keep Locust busy.
RAW_SERVER = """
import asyncio, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
REPLY = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: text/plain\\r\\n\\r\\nok"
class Ok(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        n = self.buffer.count(b"\\r\\n\\r\\n")
        if n:
            self.buffer = self.buffer[self.buffer.rfind(b"\\r\\n\\r\\n") + 4:]
            self.transport.write(REPLY * n)
async def main():
    server = await asyncio.get_running_loop().create_server(Ok, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


@contextmanager
def fast_target(core: int) -> Iterator[tuple[str, str]]:
    """nginx answering 'ok' if installed, else the aiohttp server with no delay."""
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    with tempfile.TemporaryDirectory() as tmp:
        if nginx:
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
            cmd, name = [*pin(core), nginx, "-c", str(conf), "-p", tmp], "nginx"
        else:
            cmd, name = [*pin(core), sys.executable, "-c", RAW_SERVER, str(port)], "asyncio (uvloop)"
        with subprocess.Popen(cmd, stderr=subprocess.DEVNULL) as proc:
            try:
                wait_for_port(port)
                yield f"http://127.0.0.1:{port}", name
            finally:
                proc.terminate()
                proc.wait(timeout=10)


@contextmanager
def delayed_target(core: int, delay_s: float) -> Iterator[str]:
    port = free_port()
    cmd = [*pin(core), sys.executable, "-c", DELAY_SERVER, str(port), str(delay_s)]
    with subprocess.Popen(cmd) as proc:
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def stalling_target(core: int, every_s: float, stall_s: float) -> Iterator[str]:
    """An aiohttp server that answers at once, except that every `every_s` it stalls for `stall_s`
    (a request arriving during a stall waits for its end): a GC pause, a lock, a full queue."""
    port = free_port()
    cmd = [*pin(core), sys.executable, "-c", STALL_SERVER, str(port), str(every_s), str(stall_s)]
    with subprocess.Popen(cmd) as proc:
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
