"""Live progress on stderr: elapsed/total, users, the last window's rps and p99, the run's error % and
requests so far, the verdict so far.

On a terminal it is one live line; elsewhere (CI logs) a plain line every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadkit.models.results import Verdict
from loadkit.models.specs import Threshold
from loadkit.models.wire import Snapshot
from loadkit.scoring import client_thresholds, evaluate, observations_from_stats
from loadkit.units import fmt, format_duration

PLAIN_EVERY_S = 5.0


class Progress:
    def __init__(self, console: Console, total_s: float, thresholds: Sequence[Threshold],
                 min_samples: int, enabled: bool = True) -> None:
        self.console = console
        self.total_s = total_s
        self.thresholds = client_thresholds(thresholds)  # the rest are judged after the run
        self.min_samples = min_samples
        self.enabled = enabled
        self.live: Live | None = None
        self.last_plain = 0.0

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
            self.live = Live(Text("starting Locust..."), console=self.console, refresh_per_second=4,
                             transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)

    def update(self, snap: Snapshot) -> None:
        if not self.enabled:
            return
        line = self.line(snap)
        if self.live is not None:
            self.live.update(line)
        elif time.monotonic() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            self.console.print(line)

    def line(self, snap: Snapshot) -> Text:
        cum, win = snap.cumulative, snap.window
        p99 = f"{fmt(win.p99_ms)} ms" if win.p99_ms is not None else "-"
        err = f"{fmt(cum.error_rate_pct)}%" if cum.error_rate_pct is not None else "-"
        # the last window's rate and p99 (what the load does now), the whole run's errors and count
        last = f"last {format_duration(round(win.duration_s) or win.duration_s)}" if win.duration_s else "last window"
        # an open-model run: the scheduled rate, the iterations running and any dropped so far
        load = f"rate {fmt(snap.rate)}/s in flight {snap.users}" + (
            f" dropped {cum.dropped_iterations:,}" if cum.dropped_iterations else "") \
            if snap.rate is not None else f"users {snap.users}"
        text = Text(
            f"{format_duration(snap.elapsed_s)}/{format_duration(self.total_s)}  {load}  "
            f"{last}: rps {fmt(win.rps)} p99 {p99}  run: errors {err} requests {cum.requests:,}  "
        )
        text.append_text(self.verdict_so_far(snap))
        return text

    def verdict_so_far(self, snap: Snapshot) -> Text:
        if snap.cumulative.requests < self.min_samples:
            return Text(f"collecting ({snap.cumulative.requests}/{self.min_samples})", style="dim")
        if not self.thresholds:
            return Text("judged after the run", style="dim")
        card = evaluate(self.thresholds, observations_from_stats(snap.cumulative), self.min_samples)
        if card.verdict is Verdict.PASS:
            return Text("passing so far", style="green")
        failing = ", ".join(c.name for c in card.checks if not c.passed)
        return Text(f"failing: {failing}", style="red")
