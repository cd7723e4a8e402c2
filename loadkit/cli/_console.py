"""Rich consoles for stdout (the result) and stderr (progress, logs).

Piped or in CI there is no terminal width; wide enough that a scorecard row stays on one line.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 140


def stdout_console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)
