"""JUnit XML for CI systems: one testcase per check, failures carry the reason."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from loadkit.models import RunResult
from loadkit.report.text import threshold_text
from loadkit.scoring import fmt, with_unit


def junit_xml(result: RunResult) -> str:
    duration = (result.ended_at - result.started_at).total_seconds()
    failed = len(result.failed_checks)
    suite = ET.Element("testsuite", {
        "name": f"loadkit.{result.profile}",
        "tests": str(len(result.checks)),
        "failures": str(failed),
        "errors": "0",
        "skipped": "0",
        "time": f"{duration:.3f}",
        "timestamp": result.started_at.isoformat(),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", result.target), ("verdict", result.verdict.value),
                        ("score", fmt(result.score)), ("requests", str(result.stats.requests))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for check in result.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"loadkit.{result.profile}", "name": check.name, "time": f"{duration:.3f}",
        })
        if not check.passed:
            failure = ET.SubElement(case, "failure", {"message": check.reason, "type": "ThresholdFailed"})
            failure.text = (f"{check.name}: observed {with_unit(check.observed, check.unit)}, "
                            f"threshold {threshold_text(check)}")
    if result.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(result.warnings)
    root = ET.Element("testsuites", {"tests": str(len(result.checks)), "failures": str(failed)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result), encoding="utf-8")
