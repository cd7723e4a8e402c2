"""Fail in seconds, not after a whole run of connection errors, when the target is unreachable."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from loadkit.errors import TargetError, UsageError

TARGET_HINT = "check --target and that the service is up (`loadkit sandbox up` starts a local one)"


def validate_target(url: str, option: str = "--target") -> str:
    """Accept http(s)://host[:port][/prefix]; return it without a trailing slash. `option` names the
    field in the errors (e.g. --baseline).

    A target is shown everywhere (results, reports, JUnit, /ui, the history), so credentials in it
    (http://user:password@host) are refused, and never echoed: they belong in a header."""
    example = f"give a full URL, e.g. {option} http://127.0.0.1:8080/canary"
    bad = "bad target" if option == "--target" else f"bad {option}"
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        host = rest.split("/", 1)[0].rsplit("@", 1)[1]
        raise UsageError(f"{bad} {scheme}://***@{host}...: credentials in the URL would be shown in every "
                         "result, report and /ui page; give them as a header instead",
                         hint="--header 'Authorization: Basic <base64 of user:password>' (the webhook: metadata "
                              "headers)")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError(f"{bad} {url!r}: spaces, control and non-ASCII characters are not allowed",
                         hint="percent-encode them, e.g. %20 for a space")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise UsageError(f"{bad} {url!r}: {exc}", hint=example) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{bad} {url!r}", hint=example)
    if port == 0:
        raise UsageError(f"{bad} {url!r}: port 0", hint="use a port between 1 and 65535")
    if parts.query or parts.fragment:
        raise UsageError(f"{bad} {url!r}: no query or fragment allowed", hint="give the base URL only")
    return url.rstrip("/")


def preflight(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> int:
    """GET the target once. Any HTTP answer (even 404, 503 or a redirect, not followed) proves it is reachable.

    Returns the status code; raises TargetError when nothing answers.
    """
    import httpx  # here: `loadkit --help` does not pay for it

    # Like Locust's FastHttpUser (insecure=True): a canary with a self-signed cert is still reachable.
    try:
        with httpx.Client(verify=False, timeout=timeout_s, follow_redirects=False) as client, \
                client.stream("GET", url, headers=dict(headers or {})) as response:
            return response.status_code
    except httpx.TimeoutException as exc:
        raise TargetError(f"{url} did not answer within {timeout_s:g}s", hint=TARGET_HINT) from exc
    except httpx.HTTPError as exc:
        cause = _os_cause(exc)
        if isinstance(cause, socket.gaierror):
            raise TargetError(f"cannot resolve {urlsplit(url).hostname!r} ({url})", hint=TARGET_HINT) from exc
        reason = cause.strerror if cause is not None and cause.strerror else str(exc) or type(exc).__name__
        raise TargetError(f"cannot reach {url}: {reason}", hint=TARGET_HINT) from exc


def _os_cause(exc: BaseException) -> OSError | None:
    """The socket error under httpx's exception (it wraps httpcore's, which wraps the OSError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
