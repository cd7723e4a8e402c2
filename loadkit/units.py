"""Parse the flexible inputs users type once, at the edge: durations and headers.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_header("x-canary: insider")
    ('x-canary', 'insider')
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

DURATION_HINT = "use a number with a unit, e.g. 30s, 5m, 1h30m (a bare number means seconds)"
HEADER_HINT = "write headers as 'Name: value', e.g. --header 'x-canary: insider'"


def parse_duration(value: str | int | float) -> float:
    """Return seconds for `30s`, `5m`, `1h30m`, `250ms` or a bare number of seconds.

    Raises ValueError with a message that says how to write it.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: {DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"bad duration {value!r}: {DURATION_HINT}")
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"bad duration {value!r}: it must be longer than 0 ({DURATION_HINT})")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way users write them: 90 -> '1m30s', 0.5 -> '500ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return out or "0s"


def parse_header(text: str) -> tuple[str, str]:
    """Split 'Name: value' into a (name, value) pair; raise ValueError if malformed."""
    name, sep, value = text.partition(":")
    if "\n" in value or "\r" in value:
        raise ValueError(f"bad header {text!r}: a header value cannot contain a line break")
    name, value = name.strip(), value.strip()
    if not sep or not name or not _HEADER_NAME.match(name):
        raise ValueError(f"bad header {text!r}: {HEADER_HINT}")
    return name, value
