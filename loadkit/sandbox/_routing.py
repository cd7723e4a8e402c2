"""Which version answers a request: the VirtualService a Flagger + Istio user typically has.

Rules, first match wins, as Istio evaluates `http:` routes top to bottom:

    1. path `/canary` or `/canary/...`  -> canary, prefix rewritten away (`/canary/about` -> `/about`)
    2. header `x-canary: insider`       -> canary (Flagger's A/B `headers: {x-canary: {exact: insider}}`)
    3. everything else                  -> weighted: `canary_weight` percent canary, the rest primary

Pure: the random draw is passed in, so the rules are tested with tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loadkit.sandbox._spec import CANARY_HEADER, CANARY_HEADER_VALUE, CANARY_PREFIX, Version

# RFC 9110 §7.6.1 connection-specific headers, which a proxy must not forward, plus the framing
# headers the proxy recomputes because it re-frames the body.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True)
class Route:
    version: Version
    path: str  # the path (and query) the upstream pod sees
    rule: str  # which rule matched, for logs and debugging


def choose_route(raw_path: str, headers: Mapping[str, str], canary_weight: int, draw: float) -> Route:
    """Apply the rules to one request; `draw` is uniform in [0, 100).

    `raw_path` is the request target as sent (path plus optional `?query`), `headers` must look up
    case-insensitively (aiohttp's CIMultiDict does).
    """
    path, sep, query = raw_path.partition("?")
    if path == CANARY_PREFIX or path.startswith(CANARY_PREFIX + "/"):
        stripped = path[len(CANARY_PREFIX) :] or "/"
        return Route(Version.CANARY, stripped + sep + query, "prefix")
    if headers.get(CANARY_HEADER) == CANARY_HEADER_VALUE:
        return Route(Version.CANARY, raw_path, "header")
    version = Version.CANARY if draw < canary_weight else Version.PRIMARY
    return Route(version, raw_path, "weight")


def end_to_end_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, including any named in `Connection:` itself; keep duplicates."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(name, value) for name, value in pairs if name.lower() not in HOP_BY_HOP | named]
