"""Rich consoles for stdout (the result) and stderr (progress, logs).

Piped or in CI there is no terminal width: nothing is wrapped (a log line is one line, however long),
unless COLUMNS asks for a width.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console

PIPE_WIDTH = 100_000  # "no wrapping": rich pads nothing to it (no expanding tables or rules here)


def stdout_console() -> Console:
    return Console(highlight=False, width=_width(sys.stdout))


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, width=_width(sys.stderr))


def _width(stream: TextIO) -> int | None:
    if stream.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return None  # rich reads the terminal's width, or COLUMNS
    return PIPE_WIDTH
