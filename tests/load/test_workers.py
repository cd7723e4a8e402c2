"""Load beyond one machine: `loadkit run --workers N` (Locust's distributed mode over TCP) and
`loadkit worker --master HOST:PORT`, against a local counting target with known latencies.

The target answers 9 requests in 10 after 20 ms and the 10th after 200 ms, and counts them all. The
test locustfile also writes every latency it sees (Locust's own request event) to a file per process,
so the merged result can be checked against the union of every worker's own samples: the same
HdrHistogram percentiles, to the bucket, not merely "close".
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from loadkit.load._window import HIGHEST_US, latency_percentiles_ms, new_histogram
from loadkit.models.results import RunResult
from loadkit.report import render_scorecard
from tests.conftest import ROOT, _free_port, loadkit_cmd, run_loadkit
from tests.http_servers import CountingServer, serve_http

pytestmark = pytest.mark.slow

LOCUSTFILE = '''
import os
from locust import FastHttpUser, constant, events, task

_samples = open(os.path.join({samples!r}, f"{{os.getpid()}}.txt"), "a", buffering=1)


@events.request.add_listener
def _keep(response_time, response=None, exception=None, **_kw):
    if exception is None:
        _samples.write(f"{{response_time!r}}\\n")


class Visitor(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def home(self):
        self.client.get("/")
'''


@pytest.fixture(scope="module")
def target() -> Iterator[CountingServer]:
    lock, seen = threading.Lock(), [0]

    def answer(_path: str) -> tuple[int, dict[str, str]]:
        with lock:
            seen[0] += 1
            slow = seen[0] % 10 == 0
        time.sleep(0.2 if slow else 0.02)
        return 200, {}

    with serve_http("127.0.0.1", answer) as server:
        yield server


@pytest.fixture
def locustfile(tmp_path: Path) -> tuple[Path, Path]:
    samples = tmp_path / "samples"
    samples.mkdir()
    path = tmp_path / "visitor.py"
    path.write_text(LOCUSTFILE.format(samples=str(samples)))
    return path, samples


def _url(server: CountingServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def _run_args(server: CountingServer, lf: Path, *extra: str, duration: str = "3s") -> list[str]:
    return ["run", "--target", _url(server), "-f", str(lf), "-u", "6", "-r", "100", "-t", duration,
            "--no-history", "-o", "json", "-q", *extra]


def _union_percentiles(samples: Path) -> tuple[int, dict[float, float | None], int]:
    """The percentiles of every process's own samples together, recorded as loadkit records them."""
    hist, files = new_histogram(), 0
    for f in samples.glob("*.txt"):
        lines = f.read_text().split()
        files += bool(lines)
        for line in lines:
            hist.record_value(min(int(float(line) * 1000.0), HIGHEST_US))
    return hist.get_total_count(), latency_percentiles_ms(hist), files


PREFLIGHT = 1  # `loadkit run` checks the target with one request before the load starts


def _measured(server: CountingServer,
              run: Callable[[], subprocess.CompletedProcess[str]]) -> tuple[dict[str, Any], int]:
    """A run's result, and how many requests the target got from its load."""
    before = server.requests
    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), server.requests - before - PREFLIGHT


def test_two_workers_count_what_the_server_saw_and_merge_exactly(target: CountingServer,
                                                                  locustfile: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    lf, samples = locustfile
    result, served = _measured(target, lambda: run_loadkit(*_run_args(target, lf, "--workers", "2")))
    stats = result["stats"]
    assert result["generator"]["workers"] == 2 and result["generator"]["workers_lost"] == []
    # Exact: every request the target answered is in the result, none twice (final windows included).
    assert stats["requests"] == served > 100
    assert stats["status_codes"] == {"200": served}
    # Both workers loaded, and the merged percentiles are those of their samples together, to the bucket.
    count, union, files = _union_percentiles(samples)
    assert files == 2 and count == served
    assert (stats["p50_ms"], stats["p95_ms"], stats["p99_ms"]) == (union[50.0], union[95.0], union[99.0])

    # One process on the same target: the same distribution (20 ms, and 200 ms for a tenth).
    for f in samples.glob("*.txt"):
        f.unlink()
    single, served_single = _measured(target, lambda: run_loadkit(*_run_args(target, lf, duration="2s")))
    assert single["stats"]["requests"] == served_single
    # Never below what the target takes; above it by the client's own overhead (a busy machine's
    # too), which is why the two runs are compared as like with like and not to the microsecond.
    for stats_ in (stats, single["stats"]):
        assert 20.0 <= stats_["p50_ms"] < 60.0 and 200.0 <= stats_["p99_ms"] < 400.0, stats_
    for p in ("p50_ms", "p99_ms"):
        assert 2 / 3 <= stats[p] / single["stats"][p] <= 3 / 2, (p, stats[p], single["stats"][p])


def _popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_"))}
    clean.update(env or {})
    return subprocess.Popen(loadkit_cmd(*args), cwd=ROOT, env=clean, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _workers_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [c for c in psutil.Process(proc.pid).children() if "--worker" in c.cmdline()]


def test_a_worker_killed_mid_run_is_reported_in_every_output(target: CountingServer,
                                                             locustfile: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    lf, _ = locustfile
    report = tmp_path / "report"
    before = target.requests
    proc = _popen(*_run_args(target, lf, "--workers", "2", "--report-dir", str(report), duration="6s"))
    # Well into the run (a few of every worker's windows sent), then one worker dies.
    _wait_for(lambda: target.requests > before + 200, 40, "load from both workers")
    workers = _workers_of(proc)
    assert len(workers) == 2
    workers[1].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]  # a run that lost load is never a pass
    result = json.loads(out)
    assert result["verdict"] == "fail" and any("not a pass" in w for w in result["warnings"])
    lost = result["generator"]["workers_lost"]
    assert len(lost) == 1 and "heartbeat" in lost[0]["reason"]
    assert 0 < lost[0]["at_s"] < lost[0]["detected_s"] < 6 + 5 and lost[0]["requests"] > 0
    # Judged on what arrived (the dead worker's unsent last window is the only gap), and flagged.
    assert 0 < result["stats"]["requests"] <= target.requests - before
    flagged = [w for w in result["warnings"] if "was lost" in w]
    assert len(flagged) == 1 and "judged on what arrived" in flagged[0]
    junit = (report / "junit.xml").read_text()
    assert "was lost" in junit and '<property name="workers_lost" value="1"' in junit
    html = (report / "report.html").read_text()
    assert "was lost" in html and "1 of 2 workers lost" in html
    assert any("was lost" in w for w in json.loads((report / "result.json").read_text())["warnings"])
    console = Console(file=io.StringIO(), width=200)
    render_scorecard(RunResult.model_validate(result), console)
    assert "was lost" in console.file.getvalue()  # type: ignore[attr-defined]


def test_loadkit_worker_serves_a_remote_master_and_another_version_is_refused(target: CountingServer,
                                                                               locustfile: tuple[Path, Path],
                                                                               tmp_path: Path) -> None:
    lf, _ = locustfile
    port = _free_port()
    before = target.requests
    master = _popen(*_run_args(target, lf, "--workers", "1", "--master-bind", f"127.0.0.1:{port}",
                               "--workers-wait", "60s", duration="8s"))
    # A worker of another loadkit version: refused by the master, exits 2 and says why.
    other = tmp_path / "other-version"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import loadkit\nloadkit.__version__ = '0.0.0+other'\n")
    refused = _popen("worker", "--master", f"127.0.0.1:{port}", "--once",
                     env={"PYTHONPATH": f"{other}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    _, refused_err = refused.communicate(timeout=60)
    assert refused.returncode == 2, refused_err[-3000:]
    assert "0.0.0+other" in refused_err and "refused" in refused_err
    assert target.requests <= before + PREFLIGHT  # it sent nothing (the master checked the target once)
    good = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
    _wait_for(lambda: target.requests > before + PREFLIGHT + 10, 40, "load")
    # A second worker joins mid-run: Locust hands it users before loadkit's plan reaches it, and
    # until then it refuses every connection, so nothing of it reaches the target uncounted.
    late = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
    out, err = master.communicate(timeout=90)
    _, good_err = good.communicate(timeout=60)
    _, late_err = late.communicate(timeout=60)
    assert master.returncode == 0, err[-3000:]
    assert good.returncode == 0, good_err[-3000:]
    assert late.returncode == 0, late_err[-3000:]
    result = json.loads(out)
    assert result["generator"]["workers"] == 2 and result["generator"]["workers_lost"] == []
    assert result["stats"]["requests"] == target.requests - before - PREFLIGHT > 50
    assert any("refused" in w and "0.0.0+other" in w for w in result["warnings"])


def _settles(server: CountingServer, within_s: float) -> None:
    """The target gets no more requests: unchanged for a whole second, within `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        seen = server.requests
        time.sleep(1.0)
        if server.requests == seen:
            return
        assert time.monotonic() < deadline, "the load went on after loadkit was killed"


@pytest.mark.parametrize("where", ["local", "remote"])
def test_sigkill_of_loadkit_stops_the_master_and_every_worker(target: CountingServer,
                                                             locustfile: tuple[Path, Path], where: str) -> None:
    lf, _ = locustfile
    before = target.requests
    port = _free_port()
    extra = ["--master-bind", f"127.0.0.1:{port}"] if where == "remote" else []
    proc = _popen(*_run_args(target, lf, "--workers", "2" if where == "local" else "1", *extra, duration="60s"))
    remote = _popen("worker", "--master", f"127.0.0.1:{port}", "--once") if where == "remote" else None
    _wait_for(lambda: target.requests > before + 50, 40, "load")
    children = psutil.Process(proc.pid).children(recursive=True)
    if remote is not None:
        children += psutil.Process(remote.pid).children(recursive=True)
    assert len(children) == 3 if where == "local" else 2  # the master and its workers
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # First the load stops (the local ones within seconds; a remote worker within its 10 s of master
    # silence), then the processes are gone.
    _settles(target, 8 if where == "local" else 20)

    def gone() -> bool:
        return not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)

    _wait_for(gone, 20, "the orphaned Locust processes to stop")
    if remote is not None:
        remote.communicate(timeout=30)


def test_too_few_remote_workers_exit_3_with_the_fix(target: CountingServer, locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    port = _free_port()
    proc = run_loadkit(*_run_args(target, lf, "--workers", "2", "--master-bind", f"127.0.0.1:{port}",
                                  "--workers-wait", "2s"))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert f"only 0 of 2 Locust workers connected to the master on 127.0.0.1:{port} within 2s" in proc.stderr
    assert "fix: start them with: loadkit worker --master" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "at least 1 worker"),
    (["--workers", "2", "--processes", "2"], "cannot be combined"),
    (["--workers", "2", "--master-bind", "nowhere"], "is not HOST:PORT"),
    (["--workers", "2", "--master-bind", "0.0.0.0:99999"], "is not HOST:PORT"),
    (["--master-bind", "0.0.0.0:5557"], "needs --workers"),
    (["--workers", "100000"], "4 per CPU"),
    (["--workers-wait", "5s"], "this run has no workers"),
    (["--workers", "2", "--master-bind", "fe80::1:5557"], "needs brackets"),
    (["--workers", "2", "--master-bind", "nosuchhost.invalid:5557"], "does not resolve"),
], ids=["zero", "with-processes", "bind-no-port", "bind-bad-port", "bind-without-workers", "too-many-local",
        "wait-without-workers", "ipv6-no-brackets", "bind-unresolvable"])
def test_bad_distributed_options_exit_2_with_the_fix(loadkit_in_process: Callable[..., Any], args: list[str],
                                                     message: str) -> None:
    proc = loadkit_in_process("run", "--target", "http://127.0.0.1:9", "--no-history", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("master", ["nowhere", "host:0", "host:port", ":5557"])
def test_worker_with_a_bad_master_address_exits_2(loadkit_in_process: Callable[..., Any], master: str) -> None:
    proc = loadkit_in_process("worker", "--master", master, "--once")
    assert proc.returncode == 2
    assert "--master" in proc.stderr and "fix:" in proc.stderr


# -- trust: only this run's planned workers count, and a run that lost load is never a pass -----------

ROGUE = '''
import gevent
from locust import FastHttpUser, constant, events, task
from loadkit.load._window import Window


@events.init.add_listener
def _forge(environment, runner, **_kw):
    def feed():
        gevent.sleep(0.5)
        for _ in range(4):
            w = Window()
            for _ in range(2500):
                w.record("GET", "/", 1.0, 200, None)
            runner.send_message("loadkit_window", {{"window": w.to_wire(), "cpu": 1.0, "lag_ms": 0.0,
                                                    "final": False, "run": {run!r}}})
            gevent.sleep(0.3)
    gevent.spawn(feed)


class Visitor(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def home(self):
        self.client.get("/")
'''


def _master_port(proc: subprocess.Popen[str]) -> int:
    for child in psutil.Process(proc.pid).children():
        cmd = child.cmdline()
        if "--master" in cmd:
            return int(cmd[cmd.index("--master-bind-port") + 1])
    raise AssertionError("no Locust master")


def test_a_plain_worker_with_forged_windows_is_evicted_and_never_counted(target: CountingServer,
                                                                          locustfile: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    lf, _ = locustfile
    rogue = tmp_path / "rogue.py"
    rogue.write_text(ROGUE.format(run="guessed"))
    before = target.requests
    proc = _popen(*_run_args(target, lf, "--workers", "1", duration="5s"))
    _wait_for(lambda: target.requests > before + 100, 40, "load")
    # A plain Locust worker (not `loadkit worker`) joins mid-run: Locust hands it users, and it sends
    # forged loadkit windows (10000 fake 1 ms requests).
    evil = subprocess.Popen([*loadkit_cmd()[:1], "-m", "locust", "--worker", "--master-host", "127.0.0.1",
                             "--master-port", str(_master_port(proc)), "-f", str(rogue)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=60)
        evil.wait(timeout=20)  # told to quit by the master
    finally:
        evil.kill()
    served = target.requests - before - PREFLIGHT
    assert proc.returncode == 1, err[-3000:]
    result = json.loads(out)
    gen = result["generator"]
    assert result["verdict"] == "fail"
    assert 0 < result["stats"]["requests"] <= served < 10000  # no forged request merged
    assert gen["workers_unplanned"] == 1 and gen["dropped_requests"] >= 2500
    assert any("not a pass" in w for w in result["warnings"])
    assert any("dropped, not counted" in w for w in result["warnings"])


def test_a_worker_refused_mid_run_takes_no_users_from_the_planned_one(target: CountingServer,
                                                                       locustfile: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    lf, _ = locustfile
    port = _free_port()
    master = _popen(*_run_args(target, lf, "--workers", "1", "--master-bind", f"127.0.0.1:{port}", duration="20s"))
    good = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
    before = target.requests
    _wait_for(lambda: target.requests > before + 100, 40, "load")
    other = tmp_path / "other-version"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import loadkit\nloadkit.__version__ = '0.0.0+other'\n")
    refused = _popen("worker", "--master", f"127.0.0.1:{port}", "--once",
                     env={"PYTHONPATH": f"{other}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    # It is refused (and exits) while the run goes on: a busy machine starts it slowly, so wait for that
    # rather than for a fixed time into the run.
    refused.communicate(timeout=30)
    refused_at = time.time()
    out, err = master.communicate(timeout=90)
    good.communicate(timeout=30)
    assert master.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert any("refused" in w for w in result["warnings"])
    # Locust gave the late worker half the users when it connected; refused, they came back at once.
    points = result["timeline"]
    after = refused_at - datetime.fromisoformat(result["started_at"]).timestamp()
    assert after < 18.5, f"refused {after:.1f}s into a 20 s run: too late to see the users come back"
    late = [p["users"] for p in points if after + 1.5 <= p["t"] <= 19.5]
    assert late and all(users == 6 for users in late), [(p["t"], p["rps"], p["users"]) for p in points]
    assert result["stats"]["rps"] > 0


def test_a_run_whose_every_worker_was_lost_is_not_judged_a_pass(target: CountingServer,
                                                               locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    before = target.requests
    proc = _popen(*_run_args(target, lf, "--workers", "1", duration="5s"))
    _wait_for(lambda: target.requests > before + 100, 40, "load")
    _workers_of(proc)[0].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]
    result = json.loads(out)
    assert result["verdict"] == "fail"
    assert all(c["status"] == "skipped" and "every load generator worker was lost" in c["reason"]
               for c in result["checks"]), result["checks"]
    assert any("not a pass" in w for w in result["warnings"])


def test_an_orphaned_worker_of_a_killed_run_does_not_count_in_the_next_run_on_its_port(
        target: CountingServer, locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    port = _free_port()
    with serve_http("127.0.0.1", lambda _path: (200, {})) as first_target:
        first = _popen(*_run_args(first_target, lf, "--workers", "1", "--master-bind", f"127.0.0.1:{port}",
                                  duration="60s"))
        orphan = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
        _wait_for(lambda: first_target.requests > 100, 40, "the first run's load")
        # The first run's loadkit and master die at once; its worker (another machine) keeps loading.
        master = next(c for c in psutil.Process(first.pid).children() if "--master" in c.cmdline())
        master.kill()
        first.kill()
        first.communicate()
        before = target.requests
        second = _popen(*_run_args(target, lf, "--workers", "1", "--master-bind", f"127.0.0.1:{port}",
                                   duration="4s"))
        good = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
        out, err = second.communicate(timeout=90)
        good.communicate(timeout=30)
        orphan.kill()
        orphan.communicate()
        assert second.returncode == 0, err[-3000:]
        result = json.loads(out)
        # Exactly this run's worker's requests, none of the orphan's (which went to the first target).
        assert result["stats"]["requests"] == target.requests - before - PREFLIGHT > 50
        assert result["generator"]["dropped_requests"] > 0
        settled = first_target.requests
        time.sleep(1.0)
        assert first_target.requests == settled  # the orphan was told to quit


def test_a_worker_that_stalls_and_comes_back_is_reported_as_rejoined(target: CountingServer,
                                                                     locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    before = target.requests
    proc = _popen(*_run_args(target, lf, "--workers", "2", duration="9s"))
    _wait_for(lambda: target.requests > before + 100, 40, "load from both workers")
    stalled = _workers_of(proc)[1]
    stalled.suspend()  # no heartbeats: lost after ~3 s
    time.sleep(5.0)
    stalled.resume()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]
    result = json.loads(out)
    (lost,) = result["generator"]["workers_lost"]
    assert lost["rejoined_s"] is not None and lost["at_s"] < lost["rejoined_s"]
    warning = next(w for w in result["warnings"] if "was lost" in w)
    assert "came back at" in warning and "its load after that is missing" not in warning


def test_loadkit_worker_once_with_no_master_exits_3_within_its_connect_timeout() -> None:
    started = time.monotonic()
    proc = run_loadkit("worker", "--master", f"127.0.0.1:{_free_port()}", "--once", "--connect-timeout", "2s",
                       timeout=60)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "no loadkit master answered" in proc.stderr and "within 2s" in proc.stderr
    assert time.monotonic() - started < 30


def test_loadkit_worker_stopped_while_connecting_exits_130_without_a_traceback() -> None:
    proc = _popen("worker", "--master", f"127.0.0.1:{_free_port()}", "--once")
    time.sleep(3.0)  # Locust is retrying for the locustfile
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err


ROGUE_MASTER = '''
from locust import FastHttpUser, constant, events, task


@events.init.add_listener
def _answer(environment, runner, **_kw):
    if runner.__class__.__name__ == "MasterRunner":
        def hello(environment, msg, **_kw):
            plan = {{"stages": [{{"duration_s": 4, "users": 2, "spawn_rate": 10}}], "pin_to_target": False,
                     "target": {target!r}, "index": 0, "workers": 1, "run": "rogue"}}
            runner.send_message("loadkit_plan", plan, client_id=msg.node_id)
        runner.register_message("loadkit_hello", hello)


class Elsewhere(FastHttpUser):
    wait_time = constant(0.05)

    @task
    def away(self):
        self.client.get("/")
'''


@pytest.mark.parametrize("guard", ["--pin", "token"])
def test_a_worker_refuses_a_master_that_is_not_loadkits(target: CountingServer, tmp_path: Path, guard: str) -> None:
    rogue = tmp_path / "rogue.py"
    rogue.write_text(ROGUE_MASTER.format(target=_url(target)))
    port = _free_port()
    master = subprocess.Popen([*loadkit_cmd()[:1], "-m", "locust", "-f", str(rogue), "--master", "--headless",
                               "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                               "--expect-workers", "1", "-u", "2", "-r", "10", "-t", "4s", "-H", _url(target)],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = target.requests
    try:
        args = ["--pin"] if guard == "--pin" else []
        env = {"LOADKIT_WORKER_TOKEN": "s3cret"} if guard == "token" else None
        worker = _popen("worker", "--master", f"127.0.0.1:{port}", "--once", *args, env=env)
        _, err = worker.communicate(timeout=60)
    finally:
        master.kill()
        master.wait()
    assert worker.returncode == 2, err[-3000:]
    assert "refusing the master's plan" in err
    assert ("does not pin" if guard == "--pin" else "LOADKIT_WORKER_TOKEN") in err
    assert target.requests == before  # nothing left the worker


def test_master_and_workers_with_another_token_refuse_each_other(target: CountingServer,
                                                                  locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    port = _free_port()
    master = _popen(*_run_args(target, lf, "--workers", "1", "--master-bind", f"127.0.0.1:{port}",
                               "--workers-wait", "5s"), env={"LOADKIT_WORKER_TOKEN": "the-masters"})
    worker = _popen("worker", "--master", f"127.0.0.1:{port}", "--once", env={"LOADKIT_WORKER_TOKEN": "another"})
    _, werr = worker.communicate(timeout=60)
    _, merr = master.communicate(timeout=60)
    assert worker.returncode == 2 and "did not prove it knows this master's LOADKIT_WORKER_TOKEN" in werr, werr[-2000:]
    assert master.returncode == 3, merr[-2000:]



@pytest.mark.parametrize("where", ["busy", "10.255.255.1"])
def test_a_master_bind_it_cannot_listen_on_exits_3_naming_the_address(loadkit_in_process: Callable[..., Any],
                                                                      where: str) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as held:
        bind = f"127.0.0.1:{held.getsockname()[1]}" if where == "busy" else "10.255.255.1:5557"
        proc = loadkit_in_process("run", "--target", "http://127.0.0.1:9", "--no-history", "--workers", "1",
                                  "--master-bind", bind)
    assert proc.returncode == 3, proc.stderr
    assert f"cannot listen on {bind}" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_checks_with_a_bound_worker_pool_exit_2_before_any_traffic(loadkit_in_process: Callable[..., Any],
                                                                           tmp_path: Path) -> None:
    config = tmp_path / "loadkit.yaml"
    config.write_text("schema_version: 1\nthresholds:\n  - name: vs-primary\n"
                      "    compare: {baseline: primary, max_degradation_pct: 5}\n")
    proc = loadkit_in_process("run", "--target", "http://127.0.0.1:9", "--baseline", "http://127.0.0.1:9",
                              "--config", str(config), "--no-history", "--workers", "2",
                              "--master-bind", f"127.0.0.1:{_free_port()}")
    assert proc.returncode == 2, proc.stderr
    assert "serves one run at a time" in proc.stderr and "fix: drop --master-bind" in proc.stderr


def test_a_local_worker_that_dies_at_start_fails_the_run_at_once_saying_so(target: CountingServer,
                                                                          tmp_path: Path) -> None:
    lf = tmp_path / "workers_crash.py"
    lf.write_text("import sys\nfrom locust import HttpUser, task\n\nif '--worker' in sys.argv:\n"
                  "    raise SystemExit('this locustfile does not run in a worker')\n\n\nclass U(HttpUser):\n"
                  "    @task\n    def t(self):\n        self.client.get('/')\n")
    started = time.monotonic()
    proc = run_loadkit(*_run_args(target, lf, "--workers", "2"))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "a local Locust worker" in proc.stderr and "does not run in a worker" in proc.stderr
    assert "loadkit worker --master" not in proc.stderr
    assert time.monotonic() - started < 40  # not after --workers-wait (60 s)



SLOW_LOCUSTFILE = '''
from locust import FastHttpUser, constant, task


class Slow(FastHttpUser):
    wait_time = constant(0)

    @task
    def slow(self):
        self.client.get("/")
'''


def test_requests_in_flight_at_the_stop_arrive_in_the_final_windows(tmp_path: Path) -> None:
    def answer(_path: str) -> tuple[int, dict[str, str]]:
        time.sleep(0.7)  # every user has a request in flight when the stop comes
        return 200, {}

    lf = tmp_path / "slow.py"
    lf.write_text(SLOW_LOCUSTFILE)
    with serve_http("127.0.0.1", answer) as slow:
        proc = _popen("run", "--target", _url(slow), "-f", str(lf), "-u", "6", "-r", "100", "-t", "30s",
                      "--no-history", "-o", "json", "-q", "--workers", "2")
        _wait_for(lambda: slow.requests > PREFLIGHT + 12, 40, "load")
        # Ctrl-C: Locust's own quit would allow its workers 0.5 s; loadkit stops them and waits for each
        # one's final window, which holds the requests still in flight (0.7 s) at the stop.
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        time.sleep(0.5)
        assert proc.returncode == 130, err[-3000:]
        result = json.loads(out)
        assert result["generator"]["workers_lost"] == []
        assert result["stats"]["requests"] == slow.requests - PREFLIGHT > 12


def test_loadkit_worker_once_fails_when_its_master_ends_before_any_load(target: CountingServer,
                                                                         locustfile: tuple[Path, Path]) -> None:
    lf, _ = locustfile
    port = _free_port()
    master = _popen(*_run_args(target, lf, "--workers", "2", "--master-bind", f"127.0.0.1:{port}"))
    worker = _popen("worker", "--master", f"127.0.0.1:{port}", "--once")
    def connected() -> bool:
        children = psutil.Process(worker.pid).children()
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                   for child in children for c in child.net_connections("tcp"))

    _wait_for(connected, 40, "the worker's Locust to connect to the master")
    time.sleep(2.0)  # it says hello and holds the plan; the master waits for the second worker
    master.send_signal(signal.SIGINT)
    master.communicate(timeout=60)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 3, err[-3000:]
    assert "ended before any load ran on this worker" in err
