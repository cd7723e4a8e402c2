"""Render a chaos run: scorecard text and JUnit, from the ChaosResult model."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.chaos.models import ChaosResult
from loadkit.errors import LoadkitError
from loadkit.models import Verdict
from loadkit.report.junit import checks_junit
from loadkit.report.text import render_banner, render_checks, verdict_text
from loadkit.scoring import fmt, with_unit


def render_chaos(result: ChaosResult, console: Console) -> None:
    console.print(Text.assemble(("loadkit chaos ", "bold"), f"{result.experiment!r} -> {result.target}  ",
                                verdict_text(result.verdict), f"  score {fmt(result.score)}"))
    render_banner(result.verdict, result.reason, console)
    fault = (f"fault {fmt(result.fault.duration_s)}s" if result.fault else "no fault injected") + \
        (" (dry run)" if result.dry_run else "")
    worst = f" (worst {fmt(result.impact_window_s or 0)}s {with_unit(result.availability_worst_pct, '%')})" \
        if result.availability_worst_pct is not None else ""
    console.print(
        f"journal {result.journal_status}{' (deviated)' if result.deviated else ''}  {fault}  "
        f"availability {with_unit(result.availability_pct, '%')}{worst}  "
        f"detect {with_unit(result.detect_time_s, 's') if result.fault else '-'}  "
        f"recovery {_recovery(result)}  "
        f"rollbacks {result.rollbacks.run}/{result.rollbacks.planned}", highlight=False)
    phases = Table(show_edge=False, pad_edge=False)
    for column in ("phase", "requests", "success", "errors", "p99", "rps"):
        phases.add_column(column)
    for phase in result.phases:
        s = phase.stats
        phases.add_row(phase.name, f"{s.requests:,}", with_unit(s.success_rate_pct, "%"),
                       with_unit(s.error_rate_pct, "%"), with_unit(s.p99_ms, "ms"), fmt(s.rps))
    console.print(phases)
    render_checks(result.checks, console)
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _recovery(result: ChaosResult) -> str:
    if result.fault is None or result.recovery_time_s is None:
        return "-"
    return f"{with_unit(result.recovery_time_s, 's')} after removal"


def chaos_error_junit(experiment: str, error: LoadkitError) -> str:
    """JUnit for a chaos run that could not start (refused, bad input): one testcase `run` with an error."""
    now = datetime.now(UTC)
    return checks_junit(f"loadkit.chaos.{experiment}", [], now, now, {"verdict": Verdict.ERROR.value,
                        "exit_code": str(error.exit_code)}, [], verdict=Verdict.ERROR, reason=str(error))


def chaos_junit(result: ChaosResult) -> str:
    return checks_junit(f"loadkit.chaos.{result.experiment}", result.checks, result.started_at, result.ended_at,
                        {"target": result.target, "verdict": result.verdict.value, "score": fmt(result.score),
                         "journal_status": result.journal_status}, result.warnings,
                        verdict=result.verdict, reason=result.reason)
