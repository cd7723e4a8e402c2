"""Fail in seconds, not after a whole run of connection errors, when the target is unreachable."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from loadkit.errors import TargetError, UsageError

TARGET_HINT = "check --target and that the service is up (`loadkit sandbox up` starts a local one)"


def validate_target(url: str) -> str:
    """Accept http(s)://host[:port][/prefix]; return it without a trailing slash."""
    example = "give a full URL, e.g. --target http://127.0.0.1:8080/canary"
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError(f"bad target {url!r}: spaces, control and non-ASCII characters are not allowed",
                         hint="percent-encode them, e.g. %20 for a space")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise UsageError(f"bad target {url!r}: {exc}", hint=example) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad target {url!r}", hint=example)
    if port == 0:
        raise UsageError(f"bad target {url!r}: port 0", hint="use a port between 1 and 65535")
    if parts.query or parts.fragment:
        raise UsageError(f"bad target {url!r}: no query or fragment allowed", hint="give the base URL only")
    return url.rstrip("/")


def preflight(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> int:
    """GET the target once. Any HTTP answer (even 404 or 503) proves it is reachable.

    Returns the status code; raises TargetError when nothing answers.
    """
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        # Like Locust's FastHttpUser (insecure=True): a canary with a self-signed cert is still reachable.
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/", headers=dict(headers or {}))
        return conn.getresponse().status
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {parts.hostname!r} ({url})", hint=TARGET_HINT) from exc
    except TimeoutError as exc:
        raise TargetError(f"{url} did not answer within {timeout_s:g}s", hint=TARGET_HINT) from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise TargetError(f"cannot reach {url}: {reason}", hint=TARGET_HINT) from exc
    finally:
        conn.close()
