"""How often does `loadkit compare` cry wolf, and how often does it catch a worse canary?

Real runs of `loadkit compare` against the sandbox's primary and canary at once (50 ms each, one
pod per version), side by side in one go:

- identical primary and canary: the share of runs that fail is the false-alarm rate (goal <= 5 %);
- canary +5 % and +20 % slower (Istio-style delay fault), and with 2 % more errors: the share that
  fails is the detection rate (power). +5 % sits on the allowed degradation itself: either answer
  is right there, so its row shows where the line falls rather than a goal.

    .venv/bin/python benchmarks/compare.py [--runs 40] [--duration 2] [--users 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _report import write_section

from loadkit.sandbox import SandboxProcess

LATENCY_MS = 50
LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Visitor(FastHttpUser):
    wait_time = constant(0.01)

    @task
    def catalogue(self):
        self.client.get("/api/products")
"""


@contextmanager
def delayed_canary(sandbox: SandboxProcess, delay_ms: int) -> Iterator[None]:
    if delay_ms:
        fault = {"version": "canary", "kind": "delay", "delay_ms": delay_ms, "ttl_s": 3600}
        httpx.post(f"{sandbox.admin_url}/faults", json=fault, timeout=5).raise_for_status()
    try:
        yield
    finally:
        httpx.delete(f"{sandbox.admin_url}/faults", timeout=5).raise_for_status()


def compare_runs(sandbox: SandboxProcess, locustfile: Path, runs: int, args: argparse.Namespace) -> list[dict]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-m", "loadkit", "compare", "--target", f"{sandbox.traffic_url}/canary", "--baseline",
             sandbox.traffic_url, "-f", str(locustfile), "-u", str(args.users), "-r", "100",
             "-t", f"{args.duration}s", "-q", "-o", "json"],
            capture_output=True, text=True, check=False)
        if not out.stdout:
            raise SystemExit(f"loadkit compare failed: {out.stderr}")
        results.append({"code": out.returncode, **json.loads(out.stdout)})
    return results


def summarize(label: str, results: list[dict]) -> str:
    failed = sum(r["code"] != 0 for r in results)
    latency = [next(m for m in r["metrics"] if m["name"] == "latency") for r in results]
    effects = sorted(m["effect_pct"] for m in latency if m["effect_pct"] is not None)
    samples = sorted(m["canary_samples"] for m in latency)
    median_effect = effects[len(effects) // 2] if effects else float("nan")
    return (f"| {label} | {len(results)} | {failed} ({100 * failed / len(results):.0f} %) | "
            f"{median_effect:+.1f} % | {samples[len(samples) // 2]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40, help="runs with identical versions (false alarms)")
    parser.add_argument("--power-runs", type=int, default=10, help="runs per worse canary (detection)")
    parser.add_argument("--duration", type=int, default=2, help="seconds per run")
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        locustfile = Path(tmp) / "steady.py"
        locustfile.write_text(LOCUSTFILE)
        with SandboxProcess(pods=1, primary_latency_ms=LATENCY_MS, canary_latency_ms=LATENCY_MS) as twins:
            cases = [("identical (false alarms)", 0, args.runs),
                     ("canary +5 % slower (at the limit)", LATENCY_MS // 20, args.power_runs),
                     ("canary +20 % slower", LATENCY_MS // 5, args.power_runs)]
            for label, delay_ms, runs in cases:
                with delayed_canary(twins, delay_ms):
                    rows.append(summarize(label, compare_runs(twins, locustfile, runs, args)))
                print(rows[-1], flush=True)
        with SandboxProcess(pods=1, primary_latency_ms=LATENCY_MS, canary_latency_ms=LATENCY_MS,
                            canary_error_rate=0.02) as erring:
            rows.append(summarize("canary +2 % errors", compare_runs(erring, locustfile, args.power_runs, args)))
            print(rows[-1], flush=True)
    write_section("compare", "\n".join([
        f"`loadkit compare` with its defaults (5 % allowed degradation, 1 point more errors, 0.98 confidence), "
        f"{args.users} users for {args.duration}s per run against the sandbox's primary and canary at once "
        f"({LATENCY_MS} ms each, one pod per version) (`.venv/bin/python benchmarks/compare.py`). "
        "A run that does not pass counts as failed. Identical versions measure false alarms (goal <= 5 %); "
        "+5 % is the allowed degradation itself, where either answer is right, and the router's own time "
        "makes the median move a little more than 5 %; +20 % and +2 % errors measure detection (goal: every run).",
        "",
        "| canary | runs | failed | median latency effect | canary samples per run |",
        "|---|---|---|---|---|",
        *rows,
    ]))


if __name__ == "__main__":
    main()
