"""Numbers and units, both ways: parse what users type once, at the edge (durations, headers), and
write numbers the way people read them (the bottom layer, so scoring's reasons and every renderer
say a number the same way).

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_header("x-canary: insider")
    ('x-canary', 'insider')
    >>> with_unit(99.5, "%"), range_text(None, 500, "ms")
    ('99.5%', '<= 500 ms')
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# The most iterations per second one open-model run schedules (all its processes and workers together):
# a sanity bound on every way a rate comes in (CLI, config, webhook, game day, chaos control).
MAX_RATE = 100_000.0
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


def fmt(value: float) -> str:
    """Numbers as people read them: 99.0 -> '99', 97.014 -> '97.01'."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def with_unit(value: float | None, unit: str, *, against: float | None = None) -> str:
    """99.5, '%' -> '99.5%'; 412.3, 'ms' -> '412.3 ms'; None -> '-'.

    `against`: a bound the value is compared with; the value gets enough digits never to read the
    same as it (500.001 against 500 is '500.001 ms', not '500 ms').
    """
    if value is None:
        return "-"
    text = fmt(value)
    if against is not None and text == fmt(against):
        text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text + ("%" if unit == "%" else (f" {unit}" if unit else ""))


def range_text(lo: float | None, hi: float | None, unit: str) -> str:
    """A threshold as people write it: '>= 99%', '<= 500 ms', '10 .. 20 req/s'."""
    if lo is not None and hi is not None:
        return f"{with_unit(lo, unit)} .. {with_unit(hi, unit)}"
    if lo is not None:
        return f">= {with_unit(lo, unit)}"
    return f"<= {with_unit(hi, unit)}"


def host_port(host: str, port: int) -> str:
    """('::1', 5557) -> '[::1]:5557': an address as parse_host_port reads it back.

    >>> host_port("10.0.0.5", 5557), host_port("::1", 5557)
    ('10.0.0.5:5557', '[::1]:5557')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """'10.0.0.5:5557' -> ('10.0.0.5', 5557); '[::1]:5557' for IPv6; ':5557' takes `default_host`.

    >>> parse_host_port("loadkit-master.loadkit:5557")
    ('loadkit-master.loadkit', 5557)
    """
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host and all(c in "0123456789abcdefABCDEF:.%" for c in host):
        raise ValueError(f"{text!r} is ambiguous: an IPv6 address needs brackets, e.g. [{host}]:{port}")
    if not host and default_host is not None:
        host = default_host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c in host for c in "/ @"):
        raise ValueError(f"{text!r} is not HOST:PORT with a port 1-65535, e.g. 0.0.0.0:5557 or "
                         "loadkit-master.loadkit:5557")
    return host, int(port)
