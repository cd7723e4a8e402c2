"""The scorecard people read: a rich table on stdout (plain text when piped)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.models import Check, RunResult, Verdict
from loadkit.scoring import fmt, range_text, with_unit


def threshold_text(check: Check) -> str:
    return range_text(check.min, check.max, check.unit)


def verdict_text(verdict: Verdict) -> Text:
    return Text(verdict.value.upper(), style="bold green" if verdict is Verdict.PASS else "bold red")


def render_checks(checks: Sequence[Check], console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("check", "observed", "threshold", "result", "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for c in checks:
        verdict = Text("PASS", style="green") if c.passed else Text("FAIL", style="bold red")
        observed = "-" if c.metric == "steady-state" else with_unit(c.observed, c.unit)
        threshold = threshold_text(c) if c.min is not None or c.max is not None else "-"
        table.add_row(c.name, observed, threshold, verdict, "" if c.passed else c.reason)
    console.print(table)


def render_scorecard(result: RunResult, console: Console) -> None:
    s = result.stats
    head = Text.assemble(
        ("loadkit ", "bold"), f"{result.profile} -> {result.target}  ", verdict_text(result.verdict),
        f"  score {fmt(result.score)}",
    )
    console.print(head)
    console.print(
        f"requests {s.requests:,}  failures {s.failures:,}  rps {fmt(s.rps)}  "
        f"p50 {with_unit(s.p50_ms, 'ms')}  p95 {with_unit(s.p95_ms, 'ms')}  p99 {with_unit(s.p99_ms, 'ms')}  "
        f"max {with_unit(s.max_ms, 'ms')}  over {fmt(s.duration_s)}s",
        highlight=False,
    )
    render_checks(result.checks, console)
    if s.status_codes:
        codes = "  ".join(f"{'conn-error' if k == '0' else k}: {v:,}" for k, v in s.status_codes.items())
        console.print(f"status codes  {codes}", highlight=False)
    if s.failures_by_kind:
        kinds = "  ".join(f"{k}: {v:,}" for k, v in s.failures_by_kind.items())
        console.print(f"failures      {kinds}", highlight=False)
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
