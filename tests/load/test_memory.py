"""Flat memory: what a run keeps grows with its endpoints and distinct errors, not with its length
or its requests. The parent keeps no window's encoded histogram, a bounded timeline of numbers
(tests/load/test_timeline.py); the endpoint table is capped."""

from __future__ import annotations

import io
import json
import random
import tracemalloc
from pathlib import Path

import pytest

from loadkit.load._window import MAX_ENDPOINTS, MAX_ERROR_MESSAGES, OTHER_ENDPOINTS, OTHER_MESSAGES, Window
from loadkit.load.runner import _Stream
from loadkit.models.wire import Snapshot
from tests.conftest import run_loadkit
from tests.http_servers import serve_http


def snapshot_line(second: int, rng: random.Random) -> str:
    """A plugin snapshot line as at full speed: a window of 4000 requests with spread-out latencies
    (its encoded histogram is several KB), and the run's cumulative figures."""
    window = Window()
    for _ in range(4000):
        window.record("GET", "/", rng.lognormvariate(2.0, 2.5), 200, None)
    summary = window.summary(1.0)
    return json.dumps({"type": "snapshot", "elapsed_s": float(second), "users": 50, "cpu_pct": 90.0, "lag_ms": 1.0,
                       "window": summary, "window_histogram": window.encoded_histogram(),
                       "cumulative": {**summary, "requests": 4000 * second}}) + "\n"


def retained_bytes(lines: list[str]) -> tuple[int, _Stream]:
    """What a _Stream keeps (traced bytes still allocated) after reading `lines`, each handed whole to
    its callback."""
    seen: list[int] = []
    stream = _Stream(io.StringIO("".join(lines)), on_snapshot=lambda s: seen.append(len(s.window_histogram)))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stream._read()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(seen) == len(lines) and min(seen) > 0  # the callback (the webhook's, fail fast) gets it whole
    return after - before, stream


def test_the_parent_keeps_no_encoded_histogram_per_second() -> None:
    rng = random.Random(1)
    distinct = [snapshot_line(s, rng) for s in range(1, 21)]
    histogram_bytes = sum(len(json.loads(line)["window_histogram"]) for line in distinct) / len(distinct)
    assert histogram_bytes > 3000
    short, _ = retained_bytes(distinct * 10)  # 200 seconds
    long, stream = retained_bytes(distinct * 90)  # 1800 seconds: a 30-minute soak
    per_second = (long - short) / 1600
    # what stays per second is the window's numbers, one Timeline row of floats (~200 bytes), not its
    # histogram nor the cumulative figures (kept before: 8 KB a second), nor a pydantic Snapshot (3 KB)
    assert per_second < 400 < histogram_bytes, (per_second, histogram_bytes)
    assert all(s.window_histogram == "" and s.cumulative.requests == 0 for s in stream.snapshots[:-1])
    last = stream.snapshots[-1]  # whole: the run's final figures
    assert last.window_histogram and last.cumulative.requests == 4000 * 20
    assert [s.elapsed_s for s in stream.snapshots[:3]] == [1.0, 2.0, 3.0]
    assert isinstance(stream.snapshots[0], Snapshot) and stream.snapshots[0].window.requests == 4000


def raw_url_run(requests: int, seed: int) -> Window:
    """Raw URLs (one name each), widely spread latencies, 40 distinct 5xx codes with an id in each
    message, a window a second merged into the run's total as the plugin does."""
    rng = random.Random(seed)
    window, total = Window(), Window()
    for i in range(requests):
        code = 500 + i % 40 if i % 10 == 0 else 200
        window.record("GET", f"/item/{i}", rng.lognormvariate(3, 1.5), code,
                      f"HTTP {code} for request {i}" if code != 200 else None)
        if i % 1000 == 999:
            total.merge(window.take())
    total.merge(window)
    return total


def test_the_endpoint_and_error_tables_are_bounded_for_raw_urls_and_distinct_errors() -> None:
    total = raw_url_run(10_000, seed=1)
    assert len(total.endpoints) == MAX_ENDPOINTS + 1
    assert sum(ep[0] for ep in total.endpoints.values()) == 10_000
    assert sum(ep[1] for ep in total.endpoints.values()) == 1000 == total.failures
    other = total.endpoints[("GET", OTHER_ENDPOINTS)]
    assert other[0] == 10_000 - MAX_ENDPOINTS and sum(other[2].values()) == other[0]
    # 1000 distinct messages: 50 kept and one row for the rest, which still counts every one
    assert len(total.errors) == MAX_ERROR_MESSAGES + 1 and sum(total.errors.values()) == 1000
    assert total.errors[OTHER_MESSAGES] == 1000 - MAX_ERROR_MESSAGES
    # the endpoints' latency counts grow with distinct buckets, not with requests: five times the
    # requests, about the same entries (before: one entry for nearly every request)
    entries = sum(len(ep[2]) for ep in total.endpoints.values())
    five_times = sum(len(ep[2]) for ep in raw_url_run(50_000, seed=2).endpoints.values())
    assert five_times < 1.5 * entries and entries < 10_000 / 4, (entries, five_times)


def test_kept_seconds_do_not_grow_with_the_status_codes_a_target_answers() -> None:
    # review finding 10: a window with 200 distinct codes kept its code table in every earlier second
    def line(second: int, codes: int) -> str:
        window = Window()
        for i in range(1000):
            window.record("GET", "/", 5.0, 200 if i % 5 else 300 + (i // 5) % codes, None if i % 5 else "HTTP")
        summary = window.summary(1.0)
        return json.dumps({"type": "snapshot", "elapsed_s": float(second), "users": 5, "cpu_pct": 1.0,
                           "lag_ms": 1.0, "window": summary, "window_histogram": window.encoded_histogram(),
                           "cumulative": summary}) + "\n"

    one, _ = retained_bytes([line(s, 1) for s in range(1, 301)])
    many, stream = retained_bytes([line(s, 200) for s in range(1, 301)])
    assert (many - one) / 300 < 500, (one / 300, many / 300)  # bytes a second: before, ~17 KB more
    assert all(not s.window.status_codes and not s.window.status_classes for s in stream.snapshots[:-1])
    assert len(stream.snapshots[-1].window.status_codes) > 150  # the last one whole


@pytest.mark.slow
def test_a_locustfile_with_raw_urls_gets_a_bounded_table_that_still_counts_everything(tmp_path: Path) -> None:
    locustfile = tmp_path / "raw_urls.py"
    locustfile.write_text(
        "import itertools\n"
        "from locust import FastHttpUser, constant, task\n\n"
        "ids = itertools.count()\n\n"
        "class RawUrls(FastHttpUser):\n"
        "    wait_time = constant(0)\n\n"
        "    @task\n"
        "    def item(self):\n"
        "        self.client.get(f'/item/{next(ids)}')  # no name=: one endpoint per request\n"
    )
    with serve_http("127.0.0.1", lambda _path: (200, {}, b"ok")) as server:
        out = run_loadkit("run", "--target", f"http://127.0.0.1:{server.port}", "-f", str(locustfile), "-u", "10",
                          "-t", "3s", "-o", "json", "-q", "--no-history")
        served = server.requests - 1  # the pre-flight request
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rows = result["endpoints"]
    assert result["stats"]["requests"] > MAX_ENDPOINTS + 100
    assert len(rows) == MAX_ENDPOINTS + 1
    assert sum(r["requests"] for r in rows) == result["stats"]["requests"] == served
    assert any(r["name"] == OTHER_ENDPOINTS for r in rows)
    assert any("more than 200 distinct endpoint names" in w and "name=" in w for w in result["warnings"])


@pytest.mark.slow
def test_locusts_own_request_statistics_stay_empty_in_every_process(tmp_path: Path) -> None:
    """Review finding 8 said Locust's RequestStats grow per URL and per message: loadkit removes their
    listener, so in the master and both workers they hold nothing, raw URLs and unique messages or not."""
    out_file, locustfile = tmp_path / "stats.jsonl", tmp_path / "raw_failures.py"
    locustfile.write_text(
        "import itertools, json, os\n"
        "from locust import FastHttpUser, constant, events, task\n\n"
        "ids = itertools.count()\n\n"
        "class RawUrls(FastHttpUser):\n"
        "    wait_time = constant(0.01)\n\n"
        "    @task\n"
        "    def item(self):\n"
        "        i = next(ids)\n"
        "        with self.client.get(f'/item/{i}', catch_response=True) as r:\n"
        "            r.failure(f'bad answer for request id {i}')\n\n"
        "@events.quitting.add_listener\n"
        "def _stats(environment, **_kw):\n"
        f"    with open({str(out_file)!r}, 'a') as f:\n"
        "        f.write(json.dumps([len(environment.stats.entries), len(environment.stats.errors)]) + '\\n')\n"
    )
    with serve_http("127.0.0.1", lambda _path: (200, {}, b"ok")) as server:
        out = run_loadkit("run", "--target", f"http://127.0.0.1:{server.port}", "-f", str(locustfile), "-u", "4",
                          "-t", "3s", "--processes", "2", "-o", "json", "-q", "--no-history")
    result = json.loads(out.stdout)
    assert result["stats"]["requests"] > 200 and result["stats"]["failures"] == result["stats"]["requests"]
    seen = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(seen) == 3 and all(s == [0, 0] for s in seen), seen  # the master and both workers
    assert len(result["errors"]) == MAX_ERROR_MESSAGES + 1  # loadkit's own table: bounded, and it adds up
    assert sum(e["count"] for e in result["errors"]) == result["stats"]["failures"]
