"""Tiny real HTTP servers for tests: each answers by a function of the path and counts what it got."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# path -> (status, headers) or (status, headers, body)
Answer = Callable[[str], tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]]


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of new connections (an open-model run during a stall) is not refused

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client gone mid-answer (a run stopped) is not the test's business; stderr stays readable

    def __init__(self, host: str, answer: Answer) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.answer = answer
        self.paths: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__((host, 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def requests(self) -> int:
        with self.lock:
            return sum(self.paths.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients pool connections as against a real target
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK (~40 ms on Linux), a latency no real target has.
    disable_nagle_algorithm = True
    server: CountingServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths[self.path] += 1
        status, headers, *body = self.server.answer(self.path)
        content = body[0] if body else b""
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def serve_http(host: str, answer: Answer) -> Iterator[CountingServer]:
    """A CountingServer on `host`, port 0, in a thread, for the duration of the block."""
    server = CountingServer(host, answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def redirecting(host: str, to: CountingServer) -> contextlib.AbstractContextManager[CountingServer]:
    """A server that answers every request `302 Location: http://127.0.0.1:<to.port>/landing`."""
    return serve_http(host, lambda _path: (302, {"Location": f"http://127.0.0.1:{to.port}/landing"}))
