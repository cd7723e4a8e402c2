"""readers of the parent's stream that took `len(stream.snapshots)` for the run's seconds.
Past MAX_POINTS the Timeline holds at most max_points + 1 snapshots, whatever the run's length, so the
driver's "Locust stopped unexpectedly after Ns" under-reports a crash after four hours (a crash 5 h in
says "after ~9000s"). The last snapshot's elapsed_s is the run's length at any resolution."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loadkit.errors import DriverError
from loadkit.load.runner import LoadPlan, LocustDriver, _Stream
from loadkit.load.shapes import Stage
from tests.conftest import ROOT


def _line(second: int) -> str:
    window: dict[str, Any] = {"requests": 10, "failures": 0, "rps": 10.0, "duration_s": 1.0, "status_codes": {},
                              "status_classes": {}, "failures_by_kind": {}, "success_rate_pct": 100.0,
                              "error_rate_pct": 0.0}
    return json.dumps({"type": "snapshot", "elapsed_s": float(second), "users": 5, "cpu_pct": 5.0, "lag_ms": 1.0,
                       "window": window, "cumulative": {**window, "requests": 10 * second}}) + "\n"


def test_a_crash_after_a_coarsened_timeline_says_how_long_the_run_really_went(tmp_path: Path) -> None:
    lines = [json.dumps({"type": "start", "notes": []}) + "\n", *(_line(s) for s in range(1, 101))]
    stream = _Stream(io.StringIO("".join(lines)), None, max_points=8)  # 100 s in at most 8 rows
    stream._read()
    assert stream.snapshots[-1].elapsed_s == 100.0 and len(stream.snapshots) <= 9
    log = tmp_path / "locust.log"
    log.write_text("Traceback: boom\n")
    plan = LoadPlan(target="http://127.0.0.1:1", locustfile=ROOT / "locustfiles" / "website.py",
                    stages=[Stage(600, 5, 5)])
    with pytest.raises(DriverError) as caught:
        LocustDriver()._outcome(plan, SimpleNamespace(returncode=-9), stream, None, False, log)  # type: ignore[arg-type]
    assert "after 100s" in caught.value.message, caught.value.message  # HEAD: "after 8s"
