"""Time to verdict for a broken canary, with and without `--abort-on-fail`, side by side.

The sandbox's canary answers 5 % of its requests with 503. Each round runs `loadkit run -p steady`
(20 users, 60 s) against it twice, with the flag and without, and, at the same time as the run
without, a healthy control (the same profile with the flag against the primary route), which must
run its whole 60 s and pass. The figure is the wall time from starting `loadkit` to its exit (the
verdict), and where the flagged run stopped.

    .venv/bin/python benchmarks/failfast.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _report import write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadkit.sandbox import SandboxProcess  # noqa: E402 - after the path insert

ERROR_RATE = 0.05


@dataclass
class Run:
    wall_s: float
    code: int
    verdict: str
    requests: int
    ran_s: float
    stopped_at_s: float | None
    reason: str


def run(target: str, *flags: str) -> Run:
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "loadkit", "run", "--target", target, "-p", "steady", "-o", "json",
                          "-q", "--no-history", *flags], capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.monotonic() - began
    result = json.loads(out.stdout)
    stop = result.get("stopped_early") or {}
    return Run(wall, out.returncode, result["verdict"], result["stats"]["requests"], result["stats"]["duration_s"],
               stop.get("at_s"), stop.get("reason", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows, flagged, plain, healthy = [], [], [], []
    with SandboxProcess(canary_error_rate=ERROR_RATE) as site, ThreadPoolExecutor(2) as pool:
        broken, primary = f"{site.traffic_url}/canary", site.traffic_url
        for round_no in range(1, args.rounds + 1):
            fast = run(broken, "--abort-on-fail")
            control = pool.submit(run, primary, "--abort-on-fail")
            slow = run(broken)
            ok = control.result()
            flagged.append(fast)
            plain.append(slow)
            healthy.append(ok)
            rows.append(f"| {round_no} | {fast.wall_s:.1f} s (stopped at {fast.stopped_at_s:.1f} s, "
                        f"{fast.requests:,} requests, exit {fast.code}) | {slow.wall_s:.1f} s ({slow.requests:,} "
                        f"requests, exit {slow.code}) | {ok.verdict}, ran {ok.ran_s:g} s, exit {ok.code} |")
            print(rows[-1], file=sys.stderr)
    all_ran = all(h.verdict == "pass" and h.stopped_at_s is None for h in healthy)
    speedup = statistics.median(p.wall_s for p in plain) / statistics.median(f.wall_s for f in flagged)
    body = (
        f"The sandbox's canary answers {ERROR_RATE:.0%} of requests with 503; `loadkit run -p steady` (20 users, "
        f"60 s) against it with and without `--abort-on-fail`, and a healthy control (the primary route, with the "
        f"flag) at the same time as the run without; wall time from start to exit "
        f"(`.venv/bin/python benchmarks/failfast.py --rounds {args.rounds}`).\n\n"
        "| round | with --abort-on-fail | without | healthy control with the flag |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n**Median time to verdict: {statistics.median(f.wall_s for f in flagged):.1f} s with the flag, "
        f"{statistics.median(p.wall_s for p in plain):.1f} s without ({speedup:.1f}x sooner)**; both exit 1. "
        f"Every healthy control ran its 60 s and passed: {all_ran}.\n\n"
        f"Stop reason (round 1): `{flagged[0].reason}`.\n"
    )
    write_section("fail fast", body)
    print(body)


if __name__ == "__main__":
    main()
