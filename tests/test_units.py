from __future__ import annotations

import pytest

from loadkit.units import format_duration, parse_duration, parse_header, parse_host_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("90", 90), ("1.5m", 90), (" 2M ", 120), (7, 7)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-5s", "0s", "1h-5m", "abc", "5 m", "s"])
def test_bad_durations_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 30s, 5m, 1h30m"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(90, "1m30s"), (0.5, "500ms"), (3600, "1h"), (20, "20s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_parse_header() -> None:
    assert parse_header("x-canary: insider") == ("x-canary", "insider")
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")


@pytest.mark.parametrize("text", ["x-canary insider", ": v", "bad name: v", "x:\nv"])
def test_bad_headers(text: str) -> None:
    with pytest.raises(ValueError, match="bad header"):
        parse_header(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("0.0.0.0:5557", ("0.0.0.0", 5557)),
    ("loadkit-master.loadkit:5557", ("loadkit-master.loadkit", 5557)),
    ("[::1]:5557", ("::1", 5557)),
    (" 10.0.0.5:1 ", ("10.0.0.5", 1)),
], ids=["any", "service", "ipv6", "spaces"])
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["nowhere", "host:", ":5557", "host:0", "host:65536", "host:x", "http://h:1",
                                  "a b:1"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_host_port(text)
