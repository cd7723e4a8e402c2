"""Render a chaos run: scorecard text and JUnit, from the ChaosResult model."""

from __future__ import annotations

from html import escape

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.chaos.models import ChaosResult
from loadkit.report.charts import render_charts
from loadkit.report.html import STATS_HEADERS, banner, checks_section, page, stats_rows, table, warnings_html
from loadkit.report.junit import checks_junit, score_property
from loadkit.report.text import render_banner, render_checks, score_text, verdict_text
from loadkit.units import fmt, with_unit


def render_chaos(result: ChaosResult, console: Console) -> None:
    console.print(Text.assemble(("loadkit chaos ", "bold"), f"{result.experiment!r} -> {result.target}  ",
                                verdict_text(result.verdict), score_text(result.verdict, result.score)))
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


def chaos_junit(result: ChaosResult) -> str:
    return checks_junit(f"loadkit.chaos.{result.experiment}", result.checks, result.started_at, result.ended_at,
                        {"target": result.target, "verdict": result.verdict.value,
                         **score_property(result.verdict, result.score), "journal_status": result.journal_status},
                        result.warnings,
                        verdict=result.verdict, reason=result.reason)


def render_chaos_html(result: ChaosResult) -> str:
    """The report of `loadkit chaos run`: the fault window shaded on every load chart."""
    fault = result.fault
    facts = [("journal", f"{result.journal_status.value}{' (deviated)' if result.deviated else ''}"),
             ("fault", f"{fault.start.isoformat(timespec='seconds')} for {fmt(fault.duration_s)}s"
              + (f", removed {fault.removed_at.isoformat(timespec='seconds')}" if fault.removed_at else "")
              if fault else "no fault injected" + (" (dry run)" if result.dry_run else "")),
             ("faults seen", "; ".join(result.faults_seen) or "-"),
             ("availability during the fault", with_unit(result.availability_pct, "%")),
             (f"worst {fmt(result.impact_window_s or 0)}s window", with_unit(result.availability_worst_pct, "%")),
             ("detect time", with_unit(result.detect_time_s, "s")),
             ("recovery", _recovery(result)),
             ("rollbacks", f"{result.rollbacks.run}/{result.rollbacks.planned} run, {result.rollbacks.failed} failed"),
             ("steady state", f"before {_met(result.steady_state_before_met)}, after "
                              f"{_met(result.steady_state_after_met)}")]
    phases = [stats_rows(p.name, p.stats) for p in result.phases]
    body = f"""<h1>loadkit chaos run: {escape(result.experiment)}</h1>
<p class="facts">{escape(result.experiment_path)} against <code>{escape(result.target)}</code> · profile
{escape(result.profile)} · {escape(result.started_at.isoformat(timespec="seconds"))} to
{escape(result.ended_at.isoformat(timespec="seconds"))}</p>
{banner(result.verdict.value, result.reason or _reason(result), result.score, "")}
{warnings_html(result.warnings)}
<table>{"".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)}</table>
<h2>Load over time</h2>{render_charts(result)}
<h2>Load per phase</h2>{table(STATS_HEADERS, phases)}
{checks_section(result.checks)}
"""
    return page(f"loadkit chaos {result.experiment}: {result.verdict.value}", body)


def _met(value: bool | None) -> str:
    return "not measured" if value is None else ("met" if value else "NOT met")


def _reason(result: ChaosResult) -> str:
    failed = result.failed_checks
    if failed:
        return "; ".join(f"{c.name}: {c.reason}" for c in failed)
    return f"all {len(result.checks)} checks passed"
