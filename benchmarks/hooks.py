"""Latency of the non-blocking Flagger hooks with 50 canaries calling at once while runs execute.

Starts the sandbox and `loadkit serve`, starts load runs for a few canaries (rollout hooks), then
50 simulated canaries call rollout / confirm-traffic-increase / confirm-promotion / rollback /
event concurrently for a while. Goal: p99 < 50 ms.

    .venv/bin/python benchmarks/hooks.py [--canaries 50] [--seconds 20] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _report import write_section

from loadkit.sandbox import SandboxProcess

KINDS = ("confirm-traffic-increase", "confirm-promotion", "rollback", "event")


def start_server(tmp: Path, max_runs: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadkit", "serve", "--port", "0", "--output", "json", "--db", str(tmp / "b.db"),
         "--allow-target", r"^http://127\.0\.0\.1:\d+(/.*)?$", "--max-concurrent-runs", str(max_runs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["url"]


def body(target: str, canary: int, kind: str) -> dict[str, object]:
    meta: dict[str, str] = {"target": target, "duration": "10m"}
    if kind == "event":
        meta = {"eventMessage": "Advance canary weight 10", "eventType": "Normal", "timestamp": "1700000000000"}
    return {"name": f"site-{canary}", "namespace": "bench", "phase": "Progressing", "checksum": "c0ffee",
            "metadata": meta}


async def canary(client: aiohttp.ClientSession, url: str, target: str, n: int, runs: int, until: float,
                 latencies: list[float], statuses: dict[int, int]) -> None:
    kinds = ("rollout", *KINDS) if n < runs else KINDS
    i = 0
    while time.monotonic() < until:
        kind = kinds[i % len(kinds)]
        started = time.perf_counter()
        async with client.post(f"{url}/flagger/{kind}", json=body(target, n, kind)) as response:
            await response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        i += 1
        await asyncio.sleep(0.2)  # each canary calls about 5 hooks a second


async def drive(url: str, target: str, canaries: int, runs: int, seconds: float) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=canaries)  # one connection per canary, like Flagger's clients
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        for n in range(runs):  # the runs that execute during the measurement
            async with client.post(f"{url}/flagger/rollout", json=body(target, n, "rollout")) as response:
                await response.read()
        until = time.monotonic() + seconds
        await asyncio.gather(*(canary(client, url, target, n, runs, until, latencies, statuses)
                               for n in range(canaries)))
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=2, help="runs executing meanwhile (at least 1)")
    args = parser.parse_args()
    with SandboxProcess(pods=1) as sandbox, tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), args.runs)
        try:
            latencies, statuses = asyncio.run(drive(url, f"{sandbox.traffic_url}/canary", args.canaries, args.runs,
                                                    args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    latencies.sort()
    p50, p95, p99 = (latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.95, 0.99))
    ok = p99 < 50
    line = (f"{len(latencies):,} hook calls from {args.canaries} canaries in {args.seconds:g}s with {args.runs} "
            f"runs executing: p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms, "
            f"mean {statistics.fmean(latencies):.1f} ms (goal p99 < 50 ms: {'met' if ok else 'MISSED'}); "
            f"statuses {dict(sorted(statuses.items()))}")
    print(line)
    write_section("hooks", "\n".join([
        "Non-blocking hooks (rollout, confirm-traffic-increase, confirm-promotion, rollback, event) against "
        "`loadkit serve`, the sandbox and Locust runs all on this 2-core machine "
        "(`.venv/bin/python benchmarks/hooks.py`).",
        "",
        f"- {line}",
    ]))


if __name__ == "__main__":
    main()
