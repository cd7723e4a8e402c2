"""The scorecard people read: a rich table on stdout (plain text when piped)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loadkit.chaos.models import ChaosCheck
from loadkit.models.results import Check, CheckStatus, CompareVerdict, Comparison, RunResult, ScoreResult, Verdict
from loadkit.models.specs import CheckKind, Source
from loadkit.prometheus.queries import promql_duration
from loadkit.units import fmt, range_text, with_unit


def threshold_text(check: Check) -> str:
    """'>= 99%', or '-' for a check without bounds (a steady-state gate)."""
    return range_text(check.min, check.max, check.unit) if check.min is not None or check.max is not None else "-"


VERDICT_STYLES = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.INTERRUPTED: "bold yellow",
                  Verdict.ERROR: "bold magenta", Verdict.NOT_JUDGED: "bold yellow", Verdict.DRY_RUN: "bold cyan"}
COMPARE_STYLES = {CompareVerdict.PASS: "bold green", CompareVerdict.MARGINAL: "bold yellow",
                  CompareVerdict.INTERRUPTED: "bold yellow"}
STATUS_MARKS = {CheckStatus.PASSED: ("PASS", "green"), CheckStatus.FAILED: ("FAIL", "bold red"),
                CheckStatus.SKIPPED: ("SKIP", "yellow")}


def verdict_text(verdict: Verdict) -> Text:
    return Text(verdict.value.upper(), style=VERDICT_STYLES.get(verdict, "bold red"))


def score_text(verdict: Verdict, score: float) -> str:
    """'  score 87.5' beside a judged verdict; nothing beside one that was not judged."""
    return f"  score {fmt(score)}" if verdict.judged else ""


def render_banner(verdict: Verdict, reason: str, console: Console) -> None:
    """A verdict that is neither pass nor fail says so in a line of its own, with why."""
    if not verdict.judged:
        console.print(Text.assemble((f"{verdict.value.upper()}: ", VERDICT_STYLES[verdict]), reason or "not judged"),
                      highlight=False)


def check_mark(check: Check) -> Text:
    label, style = STATUS_MARKS[check.status]
    return Text(label, style=style)


def render_checks(checks: Sequence[Check], console: Console) -> None:
    sources = any(c.source is not Source.CLIENT or c.is_compare for c in checks)
    table = Table(show_edge=False, pad_edge=False)
    for column in ("check", *(["from"] if sources else []), "observed", "threshold", "result", "reason"):
        table.add_column(column, no_wrap=column != "reason")
    for c in checks:
        steady = c.kind is CheckKind.GATE and c.metric == ChaosCheck.STEADY_STATE  # observed is met (1) or not (0)
        observed = "-" if steady else with_unit(c.observed, c.unit)
        threshold = threshold_text(c)
        if c.comparison is not None:
            observed, threshold = f"score {fmt(c.comparison.score)}", f"score >= {fmt(c.min or 0)}"
        where = [CheckKind.COMPARE.value if c.is_compare else c.source.value] if sources else []
        table.add_row(c.name, *where, observed, threshold, check_mark(c), "" if c.passed else c.reason)
    console.print(table)
    for c in checks:
        if c.comparison is not None:
            render_comparison(c.comparison, console, title=f"compare {c.name}")


def render_comparison(comparison: Comparison, console: Console, title: str = "compare") -> None:
    """Each metric's decision, in words: what was compared, the test, the effect, the classification."""
    style = COMPARE_STYLES.get(comparison.verdict, "bold red")
    console.print(Text.assemble(f"{title}: {comparison.canary} vs {comparison.baseline} ({comparison.source.value})  ",
                                (comparison.verdict.value.upper(), style),
                                "" if comparison.verdict is CompareVerdict.INTERRUPTED
                                else f"  score {fmt(comparison.score)}"))
    if comparison.verdict is CompareVerdict.INTERRUPTED:
        console.print(Text.assemble(("INTERRUPTED: ", COMPARE_STYLES[comparison.verdict]), comparison.reason),
                      highlight=False)
    judged = comparison.verdict is not CompareVerdict.INTERRUPTED
    for m in comparison.metrics:
        mark = Text(f"{m.classification.value:<6}", style="green" if m.passed else "bold red") if judged else \
            Text(f"skip (so far {m.classification.value})", style="yellow")
        critical = " (critical)" if m.critical else ""
        console.print(Text.assemble("  ", mark, f" {m.name.value}{critical}: {m.reason}"), highlight=False)
    for warning in comparison.warnings:
        console.print(Text(f"  warning: {warning}", style="yellow"))


def render_scorecard(result: RunResult, console: Console) -> None:
    s = result.stats
    head = Text.assemble(
        ("loadkit ", "bold"), f"{result.profile} -> {result.target}  ", verdict_text(result.verdict),
        score_text(result.verdict, result.score) if result.stopped_early is None else "  not scored (stopped early)",
    )
    console.print(head)
    render_banner(result.verdict, result.reason, console)
    if result.stopped_early is not None:
        console.print(Text.assemble(("STOPPED EARLY: ", "bold red"), result.stopped_early.summary), highlight=False)
    console.print(
        f"requests {s.requests:,}  failures {s.failures:,}  rps {fmt(s.rps)}  "
        f"p50 {with_unit(s.p50_ms, 'ms')}  p95 {with_unit(s.p95_ms, 'ms')}  p99 {with_unit(s.p99_ms, 'ms')}  "
        f"max {with_unit(s.max_ms, 'ms')}  over {fmt(s.duration_s)}s",
        highlight=False,
    )
    g = result.generator
    if g.dropped_iterations is not None:
        console.print(f"open model    {g.iterations:,} of {g.scheduled_iterations:,} scheduled iterations started, "
                      f"dropped_iterations {g.dropped_iterations:,}, cut off {g.cut_off_iterations or 0:,}, "
                      f"unaccounted {g.unaccounted_iterations or 0:,}, start lag p99 "
                      f"{with_unit(g.start_lag_p99_ms, 'ms')}; latency counts from each intended start",
                      highlight=False)
    render_checks(result.checks, console)
    if s.status_codes:
        codes = "  ".join(f"{'conn-error' if k == '0' else k}: {v:,}" for k, v in s.status_codes.items())
        console.print(f"status codes  {codes}", highlight=False)
    if s.failures_by_kind:
        kinds = "  ".join(f"{k}: {v:,}" for k, v in s.failures_by_kind.items())
        console.print(f"failures      {kinds}", highlight=False)
    for warning in result.warnings:
        if result.stopped_early is None or warning != result.stopped_early.summary:  # said above
            console.print(Text(f"warning: {warning}", style="yellow"))


def render_score(result: ScoreResult, console: Console) -> None:
    console.print(Text.assemble(
        ("loadkit score ", "bold"), f"{result.target} (Prometheus {result.prometheus}, last "
        f"{promql_duration(result.interval_s)})  ", verdict_text(result.verdict), f"  score {fmt(result.score)}",
    ))
    render_checks(result.checks, console)
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
