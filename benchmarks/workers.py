"""One process, `--processes 2` and `--workers 2` (Locust's distributed mode over TCP) on the same
target: the same percentiles (the windows merge exactly), the same request rate, and what the
distributed start and stop cost in wall time.

The target sleeps a fixed 50 ms per request (core 1), so latency is the target's, not the
generator's; 20 no-wait users, alternating modes, several rounds.

    .venv/bin/python benchmarks/workers.py [--rounds 2] [--duration 10] [--users 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import write_section
from _targets import delayed_target

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "nowait_locustfile.py"
MODES = {"1 process": [], "--processes 2": ["--processes", "2"], "--workers 2": ["--workers", "2"]}


def run(url: str, duration: int, users: int, extra: list[str]) -> tuple[dict[str, float], float]:
    cmd = [sys.executable, "-m", "loadkit", "run", "--target", url, "--locustfile", str(LOCUSTFILE),
           "-u", str(users), "-r", str(users), "-t", f"{duration}s", "-o", "json", "-q", "--min-samples", "1",
           "--no-history", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "LOADKIT_"))}
    started = time.monotonic()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if out.returncode not in (0, 1):
        raise SystemExit(f"loadkit run {' '.join(extra)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)["stats"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    seen: dict[str, list[tuple[dict[str, float], float]]] = {m: [] for m in MODES}
    with delayed_target(core=1, delay_s=0.05) as url:
        for i in range(args.rounds):
            for mode, extra in MODES.items():
                stats, wall = run(url, args.duration, args.users, extra)
                seen[mode].append((stats, wall))
                print(f"round {i + 1} {mode}: {stats['rps']:,.1f} req/s p50 {stats['p50_ms']} p99 {stats['p99_ms']} "
                      f"ms, {wall:.1f}s wall", flush=True)
    rows = []
    for mode, runs in seen.items():
        def med(key: str, runs: list[tuple[dict[str, float], float]] = runs) -> float:
            return statistics.median(s[key] for s, _ in runs)
        wall = statistics.median(w for _, w in runs)
        rows.append(f"| {mode} | {med('rps'):,.1f} | {med('p50_ms'):.3f} | {med('p99_ms'):.3f} | "
                    f"{wall - args.duration:.1f} |")
    write_section("workers", "\n".join([
        f"A target that sleeps 50 ms per request (core 1), {args.users} no-wait users for {args.duration}s, the "
        f"three modes alternating, {args.rounds} rounds, medians (`.venv/bin/python benchmarks/workers.py`).",
        "",
        "| mode | req/s | p50 ms | p99 ms | wall time beyond the run, s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "What to read: p50 is the target's 50 ms plus the client's overhead in every mode (the workers' "
        "windows merge bucket by bucket; tests/load/test_workers.py checks the merge against every "
        "worker's own samples, to the bucket). A single process is the first to fall behind on a busy "
        "machine (its p99 and rate), which is what more processes are for. `--workers` pays for its "
        "separate worker processes' start (connect, hello, plan) and for a stop that waits for every "
        "worker's final window.",
    ]))


if __name__ == "__main__":
    main()
