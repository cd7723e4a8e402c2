"""`loadkit run --rate` with real Locust against local targets whose behaviour is known.

- a target that stalls 1 s every 10 s: at 100 iterations/s the true open-model p99 follows from the
  schedule (the arrivals during a stall wait for its end), and a closed-model generator hides it;
- a 50 ms target: the median is the target's, not the generator's;
- a target that serves one request at a time: the generator cannot keep the schedule, drops
  iterations, says so everywhere, and its latencies still count from the intended starts;
- --processes 2: the server sees exactly the schedule (with the 50 ms target).
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadkit.models.results import RunResult
from tests.conftest import loadkit_cmd, run_loadkit
from tests.http_servers import CountingServer, serve_http

pytestmark = pytest.mark.slow

STALL_EVERY_S, STALL_S = 10.0, 1.0
SLOW_S = 0.05
LATE_AFTER_S = 3.0


class _Target:
    """/stall stalls from 4 s to 5 s of every 10 s (from the server's start); /slow and /paced take 50 ms;
    /serial takes 50 ms one request at a time; /count answers at once; /late answers at once for 3 s from its
    first request, then hangs. Each records its latency."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.first_late: float | None = None
        self.serial = threading.Lock()
        self.handled: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def answer(self, path: str) -> tuple[int, dict[str, str]]:
        started = time.monotonic()
        if path == "/stall":
            phase = (started - self.t0) % STALL_EVERY_S
            if 4.0 <= phase < 4.0 + STALL_S:
                time.sleep(4.0 + STALL_S - phase)
        elif path == "/late":  # answers at once for its first 3 s, then hangs for 15 s
            with self.lock:
                self.first_late = self.first_late or started
            if started - self.first_late >= LATE_AFTER_S:
                time.sleep(15.0)
        elif path in ("/slow", "/paced"):
            time.sleep(SLOW_S)
        elif path == "/serial":
            with self.serial:
                time.sleep(SLOW_S)
        with self.lock:
            self.handled.setdefault(path, []).append(time.monotonic() - started)
        return 200, {}


@pytest.fixture(scope="module")
def target() -> Iterator[tuple[CountingServer, _Target]]:
    behaviour = _Target()
    with serve_http("127.0.0.1", behaviour.answer) as server:
        yield server, behaviour


@pytest.fixture(scope="module")
def locustfiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One plain locustfile per path (runnable with `locust -f` alone), and one with a nested TaskSet."""
    root = tmp_path_factory.mktemp("rate-locustfiles")
    for path in ("stall", "slow", "serial", "count", "late"):
        (root / f"{path}.py").write_text(
            "from locust import FastHttpUser, task\n\n\n"
            f"class Get(FastHttpUser):\n    @task\n    def get(self) -> None:\n        self.client.get('/{path}')\n")
    (root / "ctor.py").write_text(
        "from locust import FastHttpUser, task\n\n\n"
        "class Broken(FastHttpUser):\n    def __init__(self, environment):\n        super().__init__(environment)\n"
        "        raise RuntimeError('ctor boom')\n\n    @task\n    def get(self) -> None:\n"
        "        self.client.get('/count')\n")
    (root / "nested.py").write_text(
        "from locust import FastHttpUser, TaskSet, task\n\n\n"
        "class Browse(TaskSet):\n    @task\n    def get(self) -> None:\n        self.client.get('/count')\n\n\n"
        "class Shopper(FastHttpUser):\n    tasks = [Browse]\n")
    return root


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_"))}


def _run(server: CountingServer, locustfile: Path, *args: str, tmp: Path) -> tuple[int, RunResult, str]:
    junit = tmp / f"{locustfile.stem}.xml"
    out = run_loadkit("run", "--target", f"http://127.0.0.1:{server.port}", "-f", str(locustfile), "--no-history",
                      "-q", "-o", "json", "--junit", str(junit), *args, timeout=90)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, RunResult.model_validate_json(out.stdout), junit.read_text()


def _true_p99_ms(rate: float, duration_s: float, base_ms: float) -> float:
    """The open-model p99 from the schedule: arrival k at k/rate; one that lands in a stall waits for its
    end. The stall's phase does not matter: the run covers one whole period and drains its last arrivals."""
    latencies = sorted(max(0.0, (4.0 + STALL_S) - t) * 1000.0 if 4.0 <= t < 4.0 + STALL_S else 0.0
                       for t in (k / rate for k in range(int(rate * duration_s))))
    return latencies[math.ceil(0.99 * len(latencies)) - 1] + base_ms


def test_a_stalling_target_gets_its_true_open_model_p99_and_fails(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """8 in flight at most: the stall's first 8 arrivals hold every slot, the other ~90 wait in the backlog and
    start when it ends, counted from their intended start (their first request carries the start lag). Counted
    from the actual start, they would read ~0 ms and the p99 would be the target's base latency."""
    server, _ = target
    code, result, junit = _run(server, locustfiles / "stall.py", "--rate", "100", "-t", "10s", "--max-in-flight", "8",
                               tmp=tmp_path)
    s, g = result.stats, result.generator
    assert g.scheduled_iterations == 1000 and s.dropped_iterations is not None and s.dropped_iterations <= 3
    assert s.requests == s.iterations == 1000 - s.dropped_iterations  # a busy machine may drop the oldest waiting
    assert g.in_flight_cap_reached and g.start_lag_max_ms is not None and g.start_lag_max_ms > 800
    true_p99 = _true_p99_ms(100, 10, base_ms=s.p50_ms or 0.0)
    assert true_p99 == pytest.approx(900, abs=20)  # ~10 % of arrivals wait up to 1 s
    assert s.p99_ms == pytest.approx(true_p99, rel=0.10), (s.p99_ms, true_p99)
    duration = next(c for c in result.checks if c.name == "request-duration")
    assert code == 1 and not duration.passed and result.verdict.value == "fail"
    assert result.rate_stages[0].start == result.rate_stages[0].end == 100
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert props["dropped_iterations"] == str(s.dropped_iterations) and props["scheduled_iterations"] == "1000"


def test_a_50ms_target_reads_50ms_and_two_processes_start_exactly_the_schedule(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """Like with like: a closed-model run of the same rate (2 users x 20/s) at the same time on the same
    target is the reference; two cores shared with other test runs add milliseconds to every client's view of
    a 50 ms answer. The open model counts from the intended start, so its median may add its median start
    lag; anything else (a latency from the wrong start, re-bucketed or double-corrected samples) fails.
    The open-model run has two Locust processes: the server sees exactly the schedule, merged."""
    server, _ = target
    paced = locustfiles / "paced.py"
    paced.write_text("from locust import FastHttpUser, constant_throughput, task\n\n\n"
                     "class Get(FastHttpUser):\n    wait_time = constant_throughput(20)\n\n"
                     "    @task\n    def get(self) -> None:\n        self.client.get('/paced')\n")
    base = ("run", "--target", f"http://127.0.0.1:{server.port}", "-t", "4s", "--no-history", "-q", "-o", "json")
    closed = subprocess.Popen(loadkit_cmd(*base, "-f", str(paced), "-u", "2", "-r", "2"), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=_clean_env())
    before = server.paths["/slow"]
    try:
        _, result, _ = _run(server, locustfiles / "slow.py", "--rate", "40", "-t", "4s", "--processes", "2",
                            tmp=tmp_path)
        reference = RunResult.model_validate_json(closed.communicate(timeout=60)[0]).stats
    finally:
        closed.kill()
    s = result.stats
    assert server.paths["/slow"] - before == s.requests == s.iterations == 160 and s.dropped_iterations == 0
    assert result.generator.processes == 2
    assert reference.p50_ms is not None and s.p50_ms is not None and s.start_lag_p50_ms is not None
    assert reference.p50_ms == pytest.approx(SLOW_S * 1000, abs=15)  # the target does take ~50 ms
    allowed = 0.02 * reference.p50_ms + 1.0 + s.start_lag_p50_ms
    assert abs(s.p50_ms - reference.p50_ms) <= allowed, (s.p50_ms, reference.p50_ms, s.start_lag_p50_ms)


def test_two_workers_over_tcp_split_the_schedule_exactly(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """`--rate` with `--workers 2`: each worker gets the schedule with its plan and runs its share
    (arrivals i, i+2, ...): together the server sees the whole schedule, once."""
    server, _ = target
    before = server.paths["/slow"]
    _, result, _ = _run(server, locustfiles / "slow.py", "--rate", "30", "-t", "3s", "--workers", "2", tmp=tmp_path)
    s = result.stats
    assert server.paths["/slow"] - before == s.requests == s.iterations == 90 and s.dropped_iterations == 0
    assert result.generator.workers == 2 and not result.generator.workers_lost


def test_a_target_too_slow_for_the_rate_drops_iterations_and_says_to_raise_the_cap(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """20 requests/s at most, 60 asked, 10 in flight: most arrivals wait, those past 1 s are dropped. The
    started ones count from their intended start (about 1 s late, then ~0.5 s in the target's queue). The
    generator's CPU is fine and its 10 slots were full: the target was slow, not the generator."""
    server, behaviour = target
    code, result, junit = _run(server, locustfiles / "serial.py", "--rate", "60", "-t", "4s", "--max-in-flight",
                               "10", tmp=tmp_path)
    s, g = result.stats, result.generator
    assert code == 1 and not g.saturated and g.in_flight_cap_reached and "dropped" in g.reason
    assert g.scheduled_iterations == 240 and s.dropped_iterations is not None and s.dropped_iterations >= 60
    assert (s.iterations or 0) + s.dropped_iterations == 240
    assert s.requests <= len(behaviour.handled["/serial"])  # what the target served (while the run drained, too)
    assert g.start_lag_p99_ms is not None and g.start_lag_p99_ms > 500
    # Counted from the intended start, a waiting arrival's request is later than the target's own ~0.5 s queue.
    assert s.p99_ms is not None and s.p99_ms > 1200
    assert any("dropped" in w and "raise --max-in-flight" in w for w in result.warnings), result.warnings
    assert not any("saturated" in w for w in result.warnings)
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert int(props["dropped_iterations"]) == s.dropped_iterations and props["generator_saturated"] == "false"

    from rich.console import Console

    from loadkit.report.html import generator_html
    from loadkit.report.text import render_scorecard

    console = Console(record=True, width=200)
    render_scorecard(result, console)
    assert f"dropped_iterations {s.dropped_iterations:,}" in console.export_text()
    assert "dropped" in generator_html(result) and str(s.dropped_iterations) in generator_html(result)


def test_iterations_still_running_at_the_end_are_counted_and_fail_the_latency_check(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """The last second of the schedule hangs: its ~50 iterations are cut off at the end, each counted at its
    age then (a lower bound of >= 2 s). Killed unrecorded, the run would pass on the 150 that answered."""
    server, _ = target
    code, result, junit = _run(server, locustfiles / "late.py", "--rate", "50", "-t", "4s", tmp=tmp_path)
    s, g = result.stats, result.generator
    assert s.iterations == g.scheduled_iterations == 200 and s.dropped_iterations == 0
    assert s.cut_off_iterations is not None and 40 <= s.cut_off_iterations <= 60
    assert s.requests + s.cut_off_iterations == 200  # each hung iteration counted once
    assert g.cut_off_iterations == s.cut_off_iterations and "cut off" in g.reason
    assert s.p99_ms is not None and s.p99_ms >= 2000
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert props["cut_off_iterations"] == str(s.cut_off_iterations) and props["unaccounted_iterations"] == "0"
    duration = next(c for c in result.checks if c.name == "request-duration")
    assert code == 1 and not duration.passed and result.verdict.value == "fail"


def test_a_lost_forked_process_leaves_its_share_unaccounted_and_says_so(
        target: tuple[CountingServer, _Target], locustfiles: Path) -> None:
    """--processes 2, one forked Locust process killed mid-run: the schedule's other half never runs. Counted as
    unaccounted arrivals (of unknown latency), said in a warning: no clean PASS on half the load."""
    import psutil

    server, _ = target
    before = server.paths["/count"]
    run = subprocess.Popen(loadkit_cmd("run", "--target", f"http://127.0.0.1:{server.port}", "-f",
                                       str(locustfiles / "count.py"), "--rate", "40", "-t", "5s", "--processes", "2",
                                       "--no-history", "-q", "-o", "json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
    try:
        deadline = time.monotonic() + 30
        while server.paths["/count"] - before < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        [locust] = psutil.Process(run.pid).children()
        forked = locust.children()
        assert len(forked) == 2, forked  # Locust's master forked its two workers
        forked[0].kill()
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 1, err
    result = RunResult.model_validate_json(out)
    g = result.generator
    assert g.scheduled_iterations == 200 and g.unaccounted_iterations is not None and g.unaccounted_iterations >= 40
    assert (g.iterations or 0) + (g.dropped_iterations or 0) + g.unaccounted_iterations == 200
    assert any("Locust process (--processes) was lost" in w for w in result.warnings), result.warnings
    assert "neither started nor dropped" in g.reason
    duration = next(c for c in result.checks if c.name == "request-duration")
    assert not duration.passed and "never ran" in duration.reason and result.verdict.value == "fail"


def test_a_user_whose_constructor_raises_counts_each_iteration_as_an_exception(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """Each iteration fails to create its user: counted and said, and its in-flight slot passes on (before, 5
    slots leaked for good and the other 55 arrivals were dropped, the error nowhere)."""
    server, _ = target
    code, result, _ = _run(server, locustfiles / "ctor.py", "--rate", "20", "-t", "3s", "--max-in-flight", "5",
                           tmp=tmp_path)
    s = result.stats
    assert code == 1 and s.iterations == 60 and s.dropped_iterations == 0 and s.requests == 0
    assert s.exceptions == 60 and any("ctor boom" in w and "60 exception" in w for w in result.warnings)


def test_a_schedule_that_ends_early_lasts_its_length(
        target: tuple[CountingServer, _Target], locustfiles: Path, tmp_path: Path) -> None:
    """0.5/s over 3 s: two arrivals (at 0 and 2 s), done before 3 s; the run lasted the schedule's 3 s."""
    server, _ = target
    _, result, _ = _run(server, locustfiles / "count.py", "--rate", "0.5", "-t", "3s", tmp=tmp_path)
    assert result.stats.iterations == 2 and result.stats.duration_s == 3.0
    assert result.stats.rps == pytest.approx(2 / 3, abs=0.01)


def test_a_nested_taskset_is_refused_with_the_fix(target: tuple[CountingServer, _Target], locustfiles: Path) -> None:
    server, _ = target
    before = server.paths["/count"]
    out = run_loadkit("run", "--target", f"http://127.0.0.1:{server.port}", "-f", str(locustfiles / "nested.py"),
                      "--rate", "10", "-t", "3s", "--no-history", "-q", timeout=60)
    assert out.returncode == 2, out.stderr
    assert "Shopper.Browse is a TaskSet" in out.stderr and "--users instead of --rate" in out.stderr
    assert "Traceback" not in out.stderr and server.paths["/count"] == before  # no load: refused before it
    assert out.stdout == ""  # there is no result
