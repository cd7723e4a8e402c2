"""RSS over a full-speed soak, before and after flat memory, side by side in one run.

`loadkit run` with 50 no-wait FastHttpUsers against a fast local target (nginx, else a raw asyncio
server; core 1), the generator on core 0, for --minutes each: first the code at --before (a git
revision, extracted to a temporary directory), then this checkout. Every 5 s the RSS of the loadkit
process and all its descendants (the Locust process) is summed; the figure is minute 1 (the mean of
the samples from 45 to 75 s) against the end (the mean of the last 30 s).

    .venv/bin/python benchmarks/memory.py [--minutes 5] [--before be55024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _report import write_section
from _targets import fast_target, pin

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "benchmarks" / "nowait_locustfile.py"
SAMPLE_EVERY_S = 5.0


@dataclass
class Soak:
    label: str
    samples: list[tuple[float, int, dict[str, int]]] = field(default_factory=list)  # (t, summed rss, per process)
    requests: int = 0
    rps: float = 0.0

    def mean_mb(self, start_s: float, end_s: float) -> float:
        values = [rss for t, rss, _ in self.samples if start_s <= t < end_s]
        return statistics.mean(values) / 1e6 if values else float("nan")


def soak(label: str, code: Path, target: str, seconds: float) -> Soak:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADKIT_", "LOCUST_"))}
    env["PYTHONPATH"] = str(code)
    cmd = [*pin(0), sys.executable, "-m", "loadkit", "run", "--target", target, "-f", str(LOCUSTFILE), "-u", "50",
           "-r", "50", "-t", f"{seconds:g}s", "-o", "json", "-q", "--no-history"]
    result = Soak(label)
    began = time.monotonic()
    # stdout to a file, not a pipe: the result (timeline, histogram) is more than a pipe holds unread
    with tempfile.TemporaryFile("w+") as sink, subprocess.Popen(cmd, cwd=code, env=env, stdout=sink,
                                                                stderr=subprocess.DEVNULL, text=True) as proc:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            per: dict[str, int] = {}
            try:
                for p in [parent, *parent.children(recursive=True)]:
                    per[f"{p.pid} {'locust' if '-m locust' in ' '.join(p.cmdline()) else 'loadkit'}"] = \
                        p.memory_info().rss
            except psutil.Error:
                pass
            if len(per) >= 2:  # loadkit and Locust both up
                result.samples.append((time.monotonic() - began, sum(per.values()), per))
            time.sleep(SAMPLE_EVERY_S)
        proc.wait()
        sink.seek(0)
        out = sink.read()
    stats = json.loads(out)["stats"]
    result.requests, result.rps = stats["requests"], stats["rps"]
    return result


def extract(revision: str, into: Path) -> Path:
    archive = into / "before.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), revision], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--before", default="be55024", help="the git revision to compare with")
    args = parser.parse_args()
    seconds = 60.0 * args.minutes
    with tempfile.TemporaryDirectory() as tmp, fast_target(1) as (target, server):
        before = extract(args.before, Path(tmp))
        runs = [soak(f"before ({args.before})", before, target, seconds), soak("after (this checkout)", ROOT, target,
                                                                                 seconds)]
    rows = []
    for r in runs:
        # around minute 1 (not the start-up before it) and the last 30 s: both 30 s of samples
        first, end = r.mean_mb(45.0, 75.0), r.mean_mb(seconds - 30.0, seconds + 60.0)
        span_min = (seconds - 15.0 - 60.0) / 60.0
        rows.append(f"| {r.label} | {r.requests:,} | {r.rps:,.0f} | {first:.1f} | {end:.1f} | {end - first:+.2f} | "
                    f"{(end - first) / span_min:+.2f} | {100 * (end - first) / first:+.1f} % |")
    detail = []
    for r in runs:
        if r.samples:
            _, _, per_first = r.samples[min(len(r.samples) - 1, int(60 / SAMPLE_EVERY_S))]
            _, _, per_end = r.samples[-1]
            moved = ", ".join(f"{name.split(' ', 1)[1]} {per_first[name] / 1e6:.1f} -> "
                              f"{per_end.get(name, 0) / 1e6:.1f} MB" for name in per_first)
            detail.append(f"- {r.label}: {moved}")
    body = (
        f"`loadkit run` with 50 no-wait FastHttpUsers against {server} on core 1, loadkit and Locust on core 0, "
        f"{args.minutes:g} minutes each, before and after in one run (`.venv/bin/python benchmarks/memory.py "
        f"--minutes {args.minutes:g} --before {args.before}`). RSS summed over the loadkit process and its "
        f"Locust process, sampled every {SAMPLE_EVERY_S:g} s; minute 1 (the mean of 45-75 s) against the end "
        "(the mean of the last 30 s).\n\n"
        "| code | requests | req/s | RSS minute 1 (MB) | RSS at the end (MB) | growth (MB) | MB per minute | "
        "growth |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\nPer process (first sample after "
        "minute 1 -> last sample):\n\n" + "\n".join(detail) + "\n"
    )
    write_section("memory", body)
    print(body)


if __name__ == "__main__":
    main()
