"""One-off HTTP calls (httpx's `get`, `request` ...) without a new TLS context for each.

`httpx.get()` builds a client for the one call, and with it an SSL context that loads the CA bundle:
~50 ms of CPU, against ~2 ms for the request itself. A probe polled every second (a game day's stop
condition, a chaos action's calls to the sandbox, a test waiting for a fault) paid it every time.
These are httpx's functions with the default verification context built once per process; a call
that passes its own `verify` keeps it. Each call is still its own connection, closed after it, as
with httpx's functions.

    >>> from loadkit import httpcalls
    >>> httpcalls.get("http://127.0.0.1:8081/faults", timeout=5).json()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls() -> ssl.SSLContext:
    """httpx's default verification context (certifi's bundle), built on first use, then shared."""
    return httpx.create_ssl_context()


def request(method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("verify", tls())
    return httpx.request(method, url, **kwargs)


def get(url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def delete(url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
