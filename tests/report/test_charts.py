"""The report's pure parts: the percentile curve from the exact histogram, per-endpoint latencies,
what the charts draw for a result, the comparison's JUnit, and old results still rendering."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hdrh.histogram import HdrHistogram

from loadkit.chaos.models import ChaosResult
from loadkit.gameday.models import GameDayResult
from loadkit.load._window import Window, endpoint_rows, new_histogram
from loadkit.models.results import RunResult
from loadkit.models.specs import Threshold
from loadkit.report import chart_specs, render_charts, render_report
from loadkit.report.charts import MAX_POINTS, latency_thresholds, score_trend_html
from loadkit.report.percentiles import percentile_curve

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_percentile_curve_is_every_recorded_value_of_the_histogram() -> None:
    hist = new_histogram()
    for us, n in ((1_000, 90), (5_000, 9), (200_000, 1)):
        hist.record_value(us, n)
    curve = percentile_curve(hist.encode().decode())
    # p90 at 1/(1-0.9) = 10, p99 at 100, the max placed at 2n; values are the buckets' upper edges in ms
    assert curve == [(10.0, hist.get_highest_equivalent_value(1_000) / 1000),
                     (100.0, hist.get_highest_equivalent_value(5_000) / 1000),
                     (200.0, hist.get_highest_equivalent_value(200_000) / 1000)]
    assert curve[-1][1] == round(hist.get_value_at_percentile(100) / 1000, 3)


def test_each_endpoint_gets_its_own_percentiles() -> None:
    w = Window()
    for ms in range(1, 101):
        w.record("GET", "/fast", ms / 10, 200, None)  # 0.1 .. 10 ms
        w.record("GET", "/slow", 100 + ms, 200 if ms < 100 else 503, "HTTP 503" if ms == 100 else None)
    merged = Window()
    merged.merge(Window.from_wire(json.loads(json.dumps(w.to_wire()))))  # as a worker's window reaches the master
    rows = {r[1]: r for r in endpoint_rows(merged.endpoints)}
    slow = HdrHistogram(1, 60_000_000, 3)
    for ms in range(1, 101):
        slow.record_value((100 + ms) * 1000)
    assert rows["/slow"][:4] == ["GET", "/slow", 100, 1]
    # an endpoint's buckets are 16 of the run's at a time: never below, at most 1.6 % above
    p99, top = slow.get_value_at_percentile(99) / 1000, slow.get_highest_equivalent_value(slow.get_max_value()) / 1000
    assert p99 <= rows["/slow"][6] <= p99 * 1.016
    assert rows["/fast"][4] < 6 < rows["/slow"][4]
    assert top <= rows["/slow"][7] <= top * 1.016


@pytest.mark.parametrize(("threshold", "lines"), [
    pytest.param({"name": "request-duration", "thresholdRange": {"max": 500}}, [500], id="p99-max"),
    pytest.param({"name": "latency-p95", "thresholdRange": {"max": 250}}, [250], id="p95-max"),
    pytest.param({"name": "latency-p50", "thresholdRange": {"min": 1}}, [], id="a-minimum-is-no-ceiling"),
    pytest.param({"name": "error-rate", "thresholdRange": {"max": 1}}, [], id="not-latency"),
    pytest.param({"name": "request-duration", "source": "prometheus", "thresholdRange": {"max": 500}}, [],
                 id="prometheus-is-another-series"),
], )
def test_the_latency_chart_draws_client_latency_ceilings(threshold: dict[str, object], lines: list[float]) -> None:
    assert [t["value"] for t in latency_thresholds([Threshold.model_validate(threshold)])] == lines


def _run(**extra: object) -> RunResult:
    return RunResult.model_validate({
        "verdict": "pass", "score": 100, "target": "http://t", "profile": "p", "locustfile": "l",
        "started_at": START.isoformat(), "ended_at": (START + timedelta(seconds=3)).isoformat(), "stats": {},
        "checks": [], **extra})


def test_a_result_from_before_the_new_fields_still_renders() -> None:
    """Stored results carry no stages, failure classes, endpoint latencies or histograms: the report
    draws what they have and says nothing it does not know."""
    old = _run(timeline=[{"t": 1, "users": 2, "requests": 10, "failures": 1, "rps": 10.0, "p99_ms": 40.0}],
               endpoints=[{"method": "GET", "name": "/", "requests": 10, "failures": 1}])
    specs = {s["id"]: s for s in chart_specs(old)}
    assert set(specs) == {"throughput", "users", "latency"}  # no histogram: no percentile curve
    assert [s["label"] for s in specs["throughput"]["series"]] == ["requests/s", "errors/s"]
    assert specs["throughput"]["series"][1]["values"] == [1.0]
    assert specs["latency"]["x"] == [START.timestamp() + 1]
    assert "<td>-</td>" in render_report(old)  # the endpoint's unknown p50


def test_errors_per_second_by_class_and_the_stages() -> None:
    run = _run(timeline=[{"t": 1, "users": 5, "requests": 20, "failures": 4, "rps": 10.0,
                          "failures_by_kind": {"http_5xx": 3, "timeout": 1}}],
               stages=[{"duration_s": 2, "users": 5, "spawn_rate": 5}, {"duration_s": 1, "users": 1, "spawn_rate": 5}])
    specs = {s["id"]: s for s in chart_specs(run)}
    errors = {s["label"]: s["values"] for s in specs["throughput"]["series"][1:]}
    assert errors == {"errors/s http_5xx": [1.5], "errors/s timeout": [0.5]}  # failures x rps / requests
    assert [(r["from"], r["to"]) for r in specs["users"]["regions"]] == [
        (START.timestamp(), START.timestamp() + 2), (START.timestamp() + 2, START.timestamp() + 3)]
    # stopped after 1.5 s (or a continuous run's held stage): the stages as run, not as planned
    stopped = run.model_copy(update={"ended_at": START + timedelta(seconds=1.5)})
    assert [(r["from"], r["to"]) for r in chart_specs(stopped)[1]["regions"]] == [
        (START.timestamp(), START.timestamp() + 1.5)]


def _chaos(profile: str = "p") -> ChaosResult:
    fault_start = START + timedelta(seconds=5)
    # as build_chaos_result writes it: removed after 6.48 s, counted until 1.5 s later (in-flight requests)
    return ChaosResult.model_validate({
        "verdict": "fail", "score": 50, "experiment": "x", "experiment_path": "x.yaml", "target": "t",
        "profile": profile, "started_at": START.isoformat(), "ended_at": (START + timedelta(seconds=20)).isoformat(),
        "journal_status": "completed", "deviated": True, "interrupted": False,
        "rollbacks": {"planned": 1, "run": 1, "failed": 0}, "phases": [], "checks": [],
        "fault": {"start": fault_start.isoformat(), "end": (fault_start + timedelta(seconds=7.98)).isoformat(),
                  "duration_s": 7.98, "removed_at": (fault_start + timedelta(seconds=6.48)).isoformat()},
        "timeline": [{"t": t, "users": 5, "requests": 10, "failures": 0, "rps": 10.0} for t in range(1, 20)]})


def test_the_fault_window_is_shaded_over_what_the_checks_count_and_labelled_the_same() -> None:
    chaos = _chaos()
    start = START.timestamp() + 5
    for spec in chart_specs(chaos):
        assert [(r["kind"], r["from"], r["to"], r["label"]) for r in spec["regions"]] == [
            ("fault", start, start + 7.98, "fault (7.98s)")]
        assert {"at": start + 6.48, "label": "fault removed"} in spec["markers"]
    html = render_charts(chaos)
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://github.com/leeoniya/uPlot", "")


@pytest.mark.parametrize("label", ['peak <!--<script>', "peak </script><script>alert(1)</script>", "a<b"])
def test_a_label_cannot_end_or_swallow_the_charts_script_element(label: str) -> None:
    """The data sits in <script type="application/json">: an HTML parser ends it at "</script>" and
    treats "<!--<script>" as an escape that swallows what follows, so no "<" may be in it raw."""
    html = render_charts(_chaos(label), assets=False)
    opening = '<script type="application/json" id="lk-charts-data">'
    assert html.count(opening) == 1
    data = html.split(opening, 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert next(s for s in json.loads(data) if s["id"] == "users")["title"] == f"Users (profile {label})"
    trend = score_trend_html([], _gameday(plan=label, verdict="pass", score=50))
    trend_data = trend.split('id="lk-trend-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in trend_data and label in json.loads(trend_data)[0]["title"]


def test_a_long_run_is_min_max_decimated_so_no_spike_or_dip_is_hidden() -> None:
    hours = 6 * 3600
    timeline = [{"t": t, "users": 5, "requests": 100, "failures": 0, "rps": 100.0, "p99_ms": 20.0}
                for t in range(1, hours + 1)]
    timeline[10_000] = {**timeline[10_000], "p99_ms": 5000.0, "rps": 3.0}  # one second of a spike and a dip
    long = _run(timeline=timeline, ended_at=(START + timedelta(seconds=hours)).isoformat())
    specs = {s["id"]: s for s in chart_specs(long)}
    for spec in specs.values():
        if spec.get("x_kind"):
            continue
        assert len(spec["x"]) <= MAX_POINTS and spec["x"] == sorted(spec["x"]), spec["id"]
        assert spec["x"][0] == START.timestamp() + 1 and spec["x"][-1] == START.timestamp() + hours
        assert all(len(s["values"]) == len(spec["x"]) for s in spec["series"])
    assert max(v for v in next(s for s in specs["latency"]["series"] if s["label"] == "p99")["values"] if v) == 5000
    assert min(specs["throughput"]["series"][0]["values"]) == 3.0
    assert len(render_report(long)) < 400_000  # a 6 h report: about what 33 min were, not 2 MB
    short = _run(timeline=timeline[:MAX_POINTS])  # at the budget: every window, as it is
    assert len(chart_specs(short)[0]["x"]) == MAX_POINTS


def test_a_comparison_junit_fails_on_the_metric_that_failed() -> None:
    from loadkit.models.results import Comparison
    from loadkit.report.junit import comparison_junit

    c = Comparison.model_validate({
        "verdict": "fail", "score": 50, "reason": "latency is high", "source": "client", "baseline": "b",
        "canary": "c", "settings": {}, "metrics": [
            {"name": "latency", "classification": "high", "passed": False, "critical": False, "baseline": 10,
             "canary": 20, "unit": "ms", "reason": "median 20 ms vs 10 ms"},
            {"name": "error-rate", "classification": "pass", "passed": True, "critical": True, "reason": "same"}]})
    suite = ET.fromstring(comparison_junit(c)).find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert cases["latency"].find("failure") is not None and cases["error-rate"].find("failure") is None


def test_the_embedded_uplot_is_the_one_web_package_json_pins() -> None:
    """loadkit/report/_assets holds `make assets`' copy: the version npm installs, and its licence."""
    from tests.conftest import ROOT

    pinned = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]["uplot"]
    locked = json.loads((ROOT / "web" / "package-lock.json").read_text())["packages"]["node_modules/uplot"]
    assets = ROOT / "loadkit" / "report" / "_assets"
    assert locked["version"] == pinned and locked["integrity"].startswith("sha512-")
    header = f"/*! https://github.com/leeoniya/uPlot (v{pinned}) */"
    assert (assets / "uPlot.iife.min.js").read_text().startswith(header)
    assert "MIT License" in (assets / "uPlot.LICENSE").read_text()


def test_json_rounds_floats_once_and_the_same_way_at_any_depth() -> None:
    from loadkit.models.results import Check

    fails = {"name": "request-duration", "metric": "request-duration", "observed": 500.0004, "min": None,
             "max": 500.0, "passed": False, "reason": "above"}
    run = _run(checks=[fails], stats={"success_rate_pct": 100 * 116 / 117, "rps": 1 / 3})
    data = json.loads(run.model_dump_json())
    assert data["stats"]["success_rate_pct"] == 99.145 and data["stats"]["rps"] == 0.333
    assert data["checks"][0]["observed"] == 500.0004  # never rounded onto the bound it broke
    assert json.loads(Check.model_validate(fails).model_dump_json())["observed"] == 500.0004
    assert run.model_dump()["stats"]["success_rate_pct"] == 100 * 116 / 117  # Python dumps keep every digit
    from loadkit.models.results import Comparison

    c = Comparison.model_validate({
        "verdict": "fail", "score": 50, "reason": "r", "source": "client", "baseline": "b", "canary": "c",
        "settings": {}, "metrics": [{"name": "latency", "classification": "high", "passed": False,
                                     "critical": False, "p_value": 0.000271234, "reason": "r"}]})
    assert json.loads(c.model_dump_json())["metrics"][0]["p_value"] == 0.0002712


@pytest.mark.parametrize(("stop", "lines"), [
    pytest.param({"name": "request-duration", "thresholdRange": {"max": 400}}, {"latency": [400]}, id="p99-max"),
    pytest.param({"name": "latency-p95", "thresholdRange": {"max": 250}}, {"latency": [250]}, id="p95-max"),
    pytest.param({"name": "request-success-rate", "thresholdRange": {"min": 90}}, {"errors": [10]},
                 id="a-success-floor-is-an-error-ceiling"),
    pytest.param({"name": "error-rate", "thresholdRange": {"max": 5}}, {"errors": [5]}, id="error-rate-max"),
    pytest.param({"name": "rps", "thresholdRange": {"min": 20}}, {"throughput": [20]}, id="rps-min"),
])
def test_a_load_stop_condition_is_a_line_on_the_chart_of_its_metric(stop: dict[str, object],
                                                                   lines: dict[str, list[float]]) -> None:
    from loadkit.gameday.plan import LoadStop
    from loadkit.report.charts import stop_lines

    drawn = stop_lines([LoadStop.model_validate({**stop, "window": "3s"})])
    assert {chart: [line["value"] for line in found] for chart, found in drawn.items()} == lines
    line = next(iter(drawn.values()))[0]
    assert line["kind"] == "stop" and line["label"].startswith(f"stop: {stop['name']} (")
    assert "over 3s)" in line["label"]


def _gameday(**extra: object) -> GameDayResult:
    scenario_start = START + timedelta(seconds=10)
    return GameDayResult.model_validate({
        "plan": "p", "plan_path": "p.yaml", "verdict": "halted", "score": 0, "categories": {}, "target": "t",
        "profile": "steady", "started_at": START.isoformat(), "ended_at": (START + timedelta(seconds=30)).isoformat(),
        "scenarios": [{"name": "latency", "experiment_path": "x.yaml", "expect": "detected", "category": "network",
                       "weight": 1, "status": "halted", "score": 0, "started_at": scenario_start.isoformat(),
                       "ended_at": (scenario_start + timedelta(seconds=15)).isoformat()}],
        "stops": [{"kind": "load", "condition": "request-duration (max 400, over 3s)", "reason": "r",
                   "at": (START + timedelta(seconds=20)).isoformat()}],
        "load_stops": [{"name": "request-duration", "thresholdRange": {"max": 400}, "window": "3s"}],
        **extra})


def test_a_game_days_charts_start_at_its_start_and_draw_its_stop_limits() -> None:
    g = _gameday(timeline=[{"t": t, "users": 5, "requests": 10, "failures": 1, "rps": 10.0, "error_rate_pct": 10.0,
                            "p99_ms": 50.0} for t in range(1, 29)])
    specs = {s["id"]: s for s in chart_specs(g)}
    assert list(specs) == ["throughput", "errors", "users", "latency"]
    for spec in specs.values():
        assert spec["x_range"] == [START.timestamp(), START.timestamp() + 30]
        assert spec["x"][0] == START.timestamp() + 1  # the baseline, before the scenario at +10 s
        assert [r["kind"] for r in spec["regions"]] == ["scenario"] and len(spec["markers"]) == 1
    assert [(t["value"], t["kind"]) for t in specs["latency"]["thresholds"]] == [(400, "stop")]
    assert specs["errors"]["series"][0]["values"][0] == 10.0 and specs["errors"]["y_unit"] == "%"
    # stored before game days kept a timeline: still drawn from its scenarios, on the game day's axis
    old = {s["id"]: s for s in chart_specs(_gameday())}
    assert old["latency"]["x"] == [] and old["latency"]["x_range"][0] == START.timestamp()


def test_the_live_charts_are_the_results_charts_so_far() -> None:
    from loadkit.models.results import TimelinePoint
    from loadkit.report.charts import live_specs, trend_specs

    timeline = [TimelinePoint(t=t, users=5, requests=10, failures=0, rps=10.0, p99_ms=20.0) for t in (1, 2)]
    limit = Threshold.model_validate({"name": "request-duration", "thresholdRange": {"max": 500}})
    live = {s["id"]: s for s in live_specs(START, timeline, [limit], "quick")}
    done = {s["id"]: s for s in chart_specs(_run(timeline=[p.model_dump() for p in timeline], thresholds=[
        limit.model_dump()], profile="quick"))}
    assert list(live) == list(done) == ["throughput", "users", "latency"]
    for chart in live:
        assert live[chart]["x"] == done[chart]["x"] == [START.timestamp() + 1, START.timestamp() + 2]
        assert live[chart]["series"] == done[chart]["series"]
    assert live["latency"]["thresholds"] == [{"value": 500, "label": "request-duration max 500 ms"}]
    trends = trend_specs([("gameday a", [(1.0, 80.0), (2.0, 90.5)]), ("run b", [(3.0, 100.0)])])
    assert [(t["id"], t["title"], t["series"][0]["values"]) for t in trends] == [
        ("trend-0", "gameday a", [80.0, 90.5]), ("trend-1", "run b", [100.0])]


def test_the_live_charts_after_a_time_hold_only_the_newer_points_with_every_series() -> None:
    from loadkit.models.results import StageInfo, TimelinePoint
    from loadkit.report.charts import live_specs

    timeline = [TimelinePoint(t=1, users=5, requests=10, failures=2, rps=10.0, failures_by_kind={"http_5xx": 2}),
                TimelinePoint(t=2, users=5, requests=10, failures=0, rps=10.0),
                TimelinePoint(t=3, users=5, requests=10, failures=0, rps=10.0)]
    whole = {s["id"]: s for s in live_specs(START, timeline, [], "quick")}
    newer = {s["id"]: s for s in live_specs(START, timeline, [], "quick", after=whole["throughput"]["x"][0])}
    assert newer["throughput"]["x"] == whole["throughput"]["x"][1:] == [START.timestamp() + 2, START.timestamp() + 3]
    # the 5xx class of the first window stays a series, so the page can append to the chart it has
    assert [s["label"] for s in newer["throughput"]["series"]] == ["requests/s", "errors/s http_5xx"]
    assert newer["throughput"]["series"][1]["values"] == [0.0, 0.0]
    assert all(s["x"] == [] for s in live_specs(START, timeline, [], "quick", after=START.timestamp() + 3))
    # the planned stages, shaded as far as the load got (a continuous run's held stage is not the axis)
    stages = [StageInfo(duration_s=2, users=5, spawn_rate=5), StageInfo(duration_s=3600, users=5, spawn_rate=5)]
    shaded = live_specs(START, timeline, [], "quick", after=START.timestamp() + 1, stages=stages)[0]["regions"]
    assert [(r["from"], r["to"]) for r in shaded] == [(START.timestamp(), START.timestamp() + 2),
                                                      (START.timestamp() + 2, START.timestamp() + 3)]
