"""Is loadkit's latency exact? A target with a fixed 50 ms delay; p50 must be within 2 % + 1 ms.

Also shows what plain Locust reports for the same run (its p99 is rounded to 10 ms buckets above 100 ms).

    .venv/bin/python benchmarks/accuracy.py [--delay-ms 50] [--duration 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _report import write_section
from _targets import delayed_target, pin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    with delayed_target(core=1, delay_s=args.delay_ms / 1000) as url:
        cmd = [*pin(0), sys.executable, "-m", "loadkit", "run", "--target", url, "--locustfile",
               "benchmarks/nowait_locustfile.py", "-u", str(args.users), "-r", str(args.users),
               "-t", f"{args.duration}s", "-o", "json", "-q"]
        out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    stats = json.loads(out.stdout)["stats"]
    allowed = args.delay_ms * 0.02 + 1.0
    error = stats["p50_ms"] - args.delay_ms
    ok = abs(error) <= allowed
    line = (f"fixed delay {args.delay_ms:g} ms: p50 {stats['p50_ms']:.3f} ms (error {error:+.3f} ms, "
            f"allowed ±{allowed:.2f} ms: {'OK' if ok else 'MISSED'}), p95 {stats['p95_ms']:.3f}, "
            f"p99 {stats['p99_ms']:.3f}, {stats['requests']:,} requests")
    print(line)
    write_section("accuracy", "\n".join([
        f"An aiohttp target that sleeps exactly {args.delay_ms:g} ms per request (core 1), loadkit on core 0, "
        f"{args.users} no-wait users for {args.duration}s (`.venv/bin/python benchmarks/accuracy.py`).",
        "",
        f"- {line}",
    ]))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
