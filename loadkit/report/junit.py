"""JUnit XML for CI systems: one testcase per check, failures carry the reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from loadkit.models.results import Check, CheckStatus, CompareVerdict, Comparison, RunResult, Verdict
from loadkit.report.text import threshold_text
from loadkit.units import fmt, with_unit


def junit_xml(result: RunResult) -> str:
    verdict = Verdict.INTERRUPTED if result.interrupted else result.verdict
    return checks_junit(f"loadkit.{result.profile}", result.checks, result.started_at, result.ended_at,
                        {"target": result.target, "verdict": result.verdict.value,
                         **(score_property(verdict, result.score) if result.stopped_early is None else {}),
                         "requests": str(result.stats.requests),
                         **open_model_properties(result), **_early(result),
                         **({"workers": str(result.generator.workers),
                             "workers_lost": str(len(result.generator.workers_lost))}
                            if result.generator.workers else {})}, result.warnings,
                        verdict=verdict, reason=result.reason or (
                            "interrupted: not judged (the checks show what was collected)" if result.interrupted
                            else ""))


def score_property(verdict: Verdict | CompareVerdict, score: float) -> dict[str, str]:
    """`{"score": ...}` for a judged verdict; nothing for one that was not judged, whose score is only
    what its checks read on what was collected (CI must not chart it as the run's)."""
    judged = verdict.judged if isinstance(verdict, Verdict) else verdict is not CompareVerdict.INTERRUPTED
    return {"score": fmt(score)} if judged else {}


def open_model_properties(result: RunResult) -> dict[str, str]:
    """An open-model run's schedule as JUnit properties: where CI reads the generator's health."""
    g = result.generator
    if g.dropped_iterations is None:
        return {}
    return {"rate": fmt(max((max(s.start, s.end) for s in result.rate_stages), default=0.0)),
            "scheduled_iterations": str(g.scheduled_iterations), "iterations": str(g.iterations),
            "dropped_iterations": str(g.dropped_iterations),
            "cut_off_iterations": str(g.cut_off_iterations or 0),
            "unaccounted_iterations": str(g.unaccounted_iterations or 0),
            "start_lag_p99_ms": fmt(g.start_lag_p99_ms) if g.start_lag_p99_ms is not None else "",
            "generator_saturated": "true" if g.saturated else "false"}


def _early(result: RunResult) -> dict[str, str]:
    """A run stopped by --abort-on-fail: when and why, as properties CI can read."""
    stop = result.stopped_early
    if stop is None:
        return {}
    return {"stopped_early_at_s": fmt(stop.at_s), "planned_s": fmt(stop.planned_s), "stop_check": stop.check,
            "stop_reason": stop.reason}


def checks_junit(suite_name: str, checks: Sequence[Check], started_at: datetime, ended_at: datetime,
                 properties: Mapping[str, str], warnings: Sequence[str], verdict: Verdict | None = None,
                 reason: str = "") -> str:
    """JUnit XML for CI systems: one testcase per check; a failed one carries `<failure>`, a skipped
    one `<skipped>`, both with the reason. An interrupted, errored or not judged run adds a testcase
    `run` with an `<error>` (it was not judged, so CI must not read it as green); a dry run adds a
    testcase `run` that is `<skipped>` (nothing was injected, so nothing passed); a failed verdict
    with no failed check (only skipped ones) adds a testcase `run` with a `<failure>`: the report
    is never green when the exit code is not 0, nor when nothing was judged."""
    duration = (ended_at - started_at).total_seconds()
    failed = sum(1 for c in checks if c.status is CheckStatus.FAILED)
    skipped = sum(1 for c in checks if c.status is CheckStatus.SKIPPED)
    unjudged = verdict in (Verdict.INTERRUPTED, Verdict.ERROR, Verdict.NOT_JUDGED)
    dry = verdict is Verdict.DRY_RUN
    unexplained = verdict is Verdict.FAIL and failed == 0  # failed, and no check says so
    failed += unexplained
    skipped += dry
    tests, errors = len(checks) + unjudged + unexplained + dry, int(unjudged)
    suite = ET.Element("testsuite", {
        "name": suite_name, "tests": str(tests), "failures": str(failed), "errors": str(errors),
        "skipped": str(skipped), "time": f"{duration:.3f}", "timestamp": started_at.isoformat(),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in {**properties, **({"interrupted": "true"} if verdict is Verdict.INTERRUPTED else {})}.items():
        ET.SubElement(props, "property", {"name": name, "value": value})
    if unjudged and verdict is not None:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "run", "time": f"{duration:.3f}"})
        error = ET.SubElement(case, "error", {"message": reason or verdict.value, "type": verdict.value.capitalize()})
        error.text = reason or f"verdict {verdict.value}"
    if dry:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "run", "time": f"{duration:.3f}"})
        ET.SubElement(case, "skipped", {"message": reason or "a dry run: nothing was injected, nothing is judged"})
    if unexplained:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "run", "time": f"{duration:.3f}"})
        failure = ET.SubElement(case, "failure", {"message": reason or "verdict fail", "type": "VerdictFailed"})
        failure.text = reason or "the verdict is fail, though no check failed (the skipped ones were not judged)"
    for check in checks:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": check.name,
                                                 "time": f"{duration:.3f}"})
        if check.status is CheckStatus.SKIPPED:
            ET.SubElement(case, "skipped", {"message": check.reason})
        elif check.status is CheckStatus.FAILED:
            failure = ET.SubElement(case, "failure", {"message": check.reason, "type": "ThresholdFailed"})
            failure.text = (f"{check.name}: observed {with_unit(check.observed, check.unit)}, "
                            f"threshold {threshold_text(check)}")
    if warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(warnings)
    root = ET.Element("testsuites", {"tests": str(tests), "failures": str(failed), "errors": str(errors),
                                     "skipped": str(skipped)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def error_junit(suite_name: str, message: str, hint: str | None, exit_code: int, at: datetime) -> str:
    """A run that never produced a result (bad input, an unreachable target, a crash, an interrupt
    before Locust started): one testcase with an `<error>`, so CI shows why instead of a 0-byte file."""
    suite = ET.Element("testsuite", {"name": suite_name, "tests": "1", "failures": "0", "errors": "1",
                                     "skipped": "0", "time": "0.000", "timestamp": at.isoformat()})
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "exit_code", "value": str(exit_code)})
    case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "run", "time": "0.000"})
    error = ET.SubElement(case, "error", {"message": message.splitlines()[0] if message else "error",
                                          "type": f"exit {exit_code}"})
    error.text = message + (f"\nfix: {hint}" if hint else "")
    root = ET.Element("testsuites", {"tests": "1", "failures": "0", "errors": "1", "skipped": "0"})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def comparison_junit(c: Comparison) -> str:
    """`loadkit compare --junit`: one testcase per compared metric; `high` and `nodata` fail. A marginal
    or failed comparison whose metrics all passed adds a testcase `comparison` with the reason; an
    interrupted one adds a testcase `comparison` with an `<error>` (it was not judged: never green)."""
    suite_name = "loadkit.compare"
    started, ended = c.started_at, c.ended_at
    duration = (ended - started).total_seconds() if started and ended else 0.0
    interrupted = c.verdict is CompareVerdict.INTERRUPTED  # its metrics were not judged: each is skipped
    failed = 0 if interrupted else sum(1 for m in c.metrics if not m.passed)
    unexplained = c.verdict is not CompareVerdict.PASS and failed == 0 and not interrupted
    tests, failures, errors = len(c.metrics) + unexplained + interrupted, failed + unexplained, int(interrupted)
    skipped = len(c.metrics) if interrupted else 0
    suite = ET.Element("testsuite", {"name": suite_name, "tests": str(tests), "failures": str(failures),
                                     "errors": str(errors), "skipped": str(skipped), "time": f"{duration:.3f}",
                                     **({"timestamp": started.isoformat()} if started else {})})
    props = ET.SubElement(suite, "properties")
    for name, value in {"canary": c.canary, "baseline": c.baseline, "verdict": c.verdict.value,
                        **score_property(c.verdict, c.score), "source": c.source.value,
                        **({"interrupted": "true"} if interrupted else {})}.items():
        ET.SubElement(props, "property", {"name": name, "value": value})
    if interrupted:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "comparison",
                                                 "time": f"{duration:.3f}"})
        ET.SubElement(case, "error", {"message": c.reason, "type": "Interrupted"}).text = c.reason
    if unexplained:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "comparison"})
        ET.SubElement(case, "failure", {"message": c.reason, "type": "Marginal"}).text = c.reason
    for m in c.metrics:
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": m.name.value,
                                                 "time": f"{duration:.3f}"})
        if interrupted:
            ET.SubElement(case, "skipped", {"message": f"not judged: interrupted; so far {m.classification.value} "
                                                       f"({m.reason})"})
        elif not m.passed:
            failure = ET.SubElement(case, "failure", {"message": m.reason, "type": m.classification.value})
            failure.text = (f"{m.name.value}: canary {with_unit(m.canary, m.unit)}, primary "
                            f"{with_unit(m.baseline, m.unit)}: {m.reason}")
    if c.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(c.warnings)
    root = ET.Element("testsuites", {"tests": str(tests), "failures": str(failures), "errors": str(errors),
                                     "skipped": str(skipped)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: RunResult, path: Path) -> None:
    write_text(path, junit_xml(result))


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
