"""a comparison whose baseline's load was short is judged FAIL (adf3e61), but nothing that
explains a verdict says why: the result's `reason` is "" and `generator.load_short` is the canary's only
(""), so the HTML banner reads "FAIL score 100 / all 1 checks passed", JUnit's failure says "the verdict
is fail, though no check failed", and the webhook stores "every threshold met over 488 requests" as the
reason of a FAIL that Flagger and the UI show. Only a warning says the baseline lost a process.

Unit tests of the callers with the outcomes Locust gave (the fake engine of test_compare_short_load)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from loadkit.analysis import _scored
from loadkit.analysis._server_side import ServerSide
from loadkit.load.runner import LoadOutcome
from loadkit.models.specs import CompareSpec, Threshold
from loadkit.report.html import run_reason
from loadkit.report.junit import junit_xml
from loadkit.webhook.models import RunStatus
from loadkit.webhook.runs import RunManager
from tests.load.test_compare_short_load import BASELINE, _outcome, _plan, pair  # noqa: F401  (the fixture)

THRESHOLDS = [Threshold(name="vs-primary", compare=CompareSpec(baseline="primary", max_degradation_pct=5))]


def _short_baseline(pair: dict[str, LoadOutcome]):  # noqa: F811
    pair["canary"], pair["baseline"] = _outcome(488, 1, lost=False), _outcome(260, 2, lost=True)
    result = _scored.run_scored(_plan(), THRESHOLDS, 100, server=ServerSide(baseline_url=BASELINE))
    assert result.verdict.value == "fail", result.warnings
    return result


def test_the_html_banner_of_a_short_baseline_fail_says_why(pair: dict[str, LoadOutcome]) -> None:  # noqa: F811
    result = _short_baseline(pair)
    reason = run_reason(result)
    assert "short" in reason and "baseline" in reason, reason  # before: "all 1 checks passed" under FAIL


def test_the_junit_failure_of_a_short_baseline_fail_says_why(pair: dict[str, LoadOutcome]) -> None:  # noqa: F811
    xml = junit_xml(_short_baseline(pair))
    failure = xml.split("<failure", 1)[1].split(">", 1)[0]
    assert "short" in failure, failure  # before: "the verdict is fail, though no check failed"


def test_the_webhook_reason_of_a_short_baseline_fail_is_not_every_threshold_met(
        pair: dict[str, LoadOutcome]) -> None:  # noqa: F811
    result = _short_baseline(pair)
    active = SimpleNamespace(stop_status=RunStatus.STOPPED, stop_reason="", decisive="", stop=threading.Event())
    ending = RunManager._judge(active, result)  # type: ignore[arg-type]
    assert ending.verdict is not None and ending.verdict.value == "fail"
    assert "every threshold met" not in ending.reason and "short" in ending.reason, ending.reason
