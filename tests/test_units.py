from __future__ import annotations

import pytest

from loadkit.units import format_duration, parse_duration, parse_header


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
