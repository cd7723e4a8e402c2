"""Time from a fault to the rollback, with the plan's Canary (interval 30 s, threshold 10), side by side.

Two canaries go through Flagger's scheduler (tests/webhook/flagger_loop.py, faithful to
scheduler.go) against one real `loadkit serve` and the sandbox, wired like deploy/examples/canary.yaml
(pre-rollout smoke, continuous rollout load, confirm-promotion, rollback, post-rollout):

- `decisive`: its rollback hook has `rollback_on: decisive-breach`;
- `threshold`: its rollback hook is manual only, so only Flagger's own path rolls back: one failed
  check per tick until `threshold`. Flagger's metric checks are taken as failing from the first tick
  after the fault (the best case for that path).

Once both canaries have traffic and their rollout load passes, the sandbox's canary starts answering
5 % of its requests with 503 (an Istio-like abort). The figure is the time from that moment to the
rollback of each. The plan wants rollback in < 2 min.

    .venv/bin/python benchmarks/rollback.py [--interval 30] [--threshold 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _report import write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadkit.sandbox import SandboxProcess
from tests.webhook.conftest import Serve
from tests.webhook.flagger_loop import Analysis, Canary, FlaggerLoop, Hook, Outcome

CONFIG = """\
min_samples: 100
server:
  default_profiles: {pre-rollout: smoke, rollout: steady}
"""


def wiring(target: str, rollback_on: str) -> list[Hook]:
    return [
        Hook("pre-rollout", name="load-smoke", metadata={"target": target, "profile": "smoke"}, timeout="60s",
             retries=2),
        Hook("rollout", name="load-steady", metadata={"target": target, "profile": "steady", "duration": "analysis"},
             retries=2),
        Hook("confirm-promotion", name="load-gate", mute_alert=True),
        Hook("rollback", name="load-rollback", metadata={"rollback_on": rollback_on}),
        Hook("post-rollout", name="load-stop"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=30.0, help="the Canary's analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=10)
    args = parser.parse_args()
    fault = threading.Event()
    faulted_at: list[float] = []
    outcomes: dict[str, Outcome] = {}
    with SandboxProcess(pods=2) as site, tempfile.TemporaryDirectory() as tmp:
        serve = Serve(Path(tmp))
        serve.config.write_text(CONFIG)
        serve.start()
        try:
            target = f"{site.traffic_url}/canary"

            def metric_check(_canary: Canary) -> bool | str:
                return "request-success-rate below 99" if fault.is_set() else True

            loops = {}
            for name, rollback_on in (("decisive", "decisive-breach"), ("threshold", "manual")):
                analysis = Analysis(hooks=wiring(target, rollback_on), interval_s=args.interval,
                                    threshold=args.threshold, step_weight=10, max_weight=50)
                canary = Canary(f"{name}-site", "bruno", "rev-a", primary="rev-0", analysis=analysis)
                loops[name] = FlaggerLoop(canary, serve.url, metric_check=metric_check)

            def run(name: str) -> None:
                outcomes[name] = loops[name].run(timeout_s=60 * args.interval)

            threads = [threading.Thread(target=run, args=(n,)) for n in loops]
            for thread in threads:
                thread.start()
            wait_for_passing_load(serve, [loop.canary.name for loop in loops.values()], 30 * args.interval)
            httpx.post(f"{site.admin_url}/faults", json={"version": "canary", "kind": "abort", "http_status": 503,
                                                         "percentage": 5}, timeout=5).raise_for_status()
            fault.set()
            faulted_at.append(time.monotonic())
            for thread in threads:
                thread.join()
        finally:
            serve.stop()
    report(args, loops, outcomes, faulted_at[0])


def wait_for_passing_load(serve: Serve, names: list[str], timeout_s: float) -> None:
    """Until each canary's rollout load runs with a passing live score (the canary has traffic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [serve.get(f"/runs/{r['id']}").json() for n in names
                for r in serve.get("/runs", params={"name": n}).json()["runs"] if r["hook"] == "rollout"]
        passing = {r["name"] for r in runs if (r.get("live") or {}).get("verdict") == "pass"}
        if passing >= set(names):
            return
        time.sleep(1)
    raise SystemExit("the rollout load never passed on both canaries")


def report(args: argparse.Namespace, loops: dict[str, FlaggerLoop], outcomes: dict[str, Outcome],
           faulted_at: float) -> None:
    lines = []
    for name, outcome in outcomes.items():
        back = next((c.t for c in reversed(outcome.calls) if c.type == "post-rollout"), None)
        delay = back - (faulted_at - loops[name].started) if back is not None else None
        shown = f"{delay:.0f} s" if delay is not None else "n/a"
        lines.append(f"- `{name}`: {outcome.result} after {shown} ({outcome.reason}; failed checks "
                     f"{outcome.failed_checks})")
    print("\n".join(lines))
    write_section("rollback", "\n".join([
        f"Time from a fault (5 % 503s on the canary, mid-analysis) to the rollback, with the plan's Canary "
        f"(interval {args.interval:g} s, threshold {args.threshold}), two canaries side by side through Flagger's "
        f"scheduler replayed against `loadkit serve` and the sandbox (`.venv/bin/python benchmarks/rollback.py`). "
        f"`decisive` has `rollback_on: decisive-breach`; `threshold` relies on Flagger's own path (a failed "
        f"check per tick, from the first tick after the fault). The plan wants rollback in < 2 min.",
        "",
        *lines,
    ]))


if __name__ == "__main__":
    main()
