"""How fast is `loadkit --help`? Goal: under 0.3 s (it must not import locust, kubernetes, chaoslib).

    .venv/bin/python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _report import write_section

GOAL_S = 0.3


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    commands = {
        "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
        "loadkit --help": [sys.executable, "-m", "loadkit", "--help"],
        "loadkit run --help": [sys.executable, "-m", "loadkit", "run", "--help"],
    }
    rows = []
    for name, cmd in commands.items():
        timed(cmd)  # warm the page cache
        median = statistics.median(timed(cmd) for _ in range(args.runs))
        rows.append(f"| `{name}` | {median * 1000:.0f} ms |")
        print(f"{name}: median {median * 1000:.0f} ms over {args.runs} runs")
    write_section("startup", "\n".join([
        f"Median wall time of {args.runs} runs each (`.venv/bin/python benchmarks/startup.py`); "
        f"goal for `loadkit --help`: under {GOAL_S * 1000:.0f} ms.",
        "",
        "| command | median |",
        "|---|---|",
        *rows,
    ]))


if __name__ == "__main__":
    main()
