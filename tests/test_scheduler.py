"""tests/conftest.py's xdist scheduler (b77c3b7).

1. pytest_collection_modifyitems moves a file's parts apart (the part with the most slow tests first),
   and the scheduler then recomputes `groups_of` on that reordered list: a SPLIT file's parts are no
   longer the ones designed (consecutive tests), and a test runs after later tests of its file on the
   other part's worker. Seen with -n 2/-n 4 on tests/chaos/test_chaos_sandbox.py: designed part 2's
   test_a_kill_over_the_share_cap... runs in part 1, designed part 1's interrupting tests after
   test_a_dry_run_leaves_other_peoples_faults_alone.
2. `pytest_xdist_make_scheduler` is not marked optional: `-p no:xdist` (or pytest without xdist) is an
   INTERNALERROR ("unknown hook") before any test runs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from tests.conftest import ROOT, SPLIT, groups_of, pytest_collection_modifyitems


@dataclass
class _Item:
    nodeid: str
    slow: bool = False
    markers: list[str] = field(default_factory=list)

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def _partition(group: dict[str, str]) -> set[frozenset[str]]:
    parts: dict[str, set[str]] = {}
    for nodeid, g in group.items():
        parts.setdefault(g, set()).add(nodeid)
    return {frozenset(p) for p in parts.values()}


def test_the_scheduler_runs_the_groups_that_modifyitems_designed() -> None:
    path = next(p for p, n in SPLIT.items() if n == 2)
    items = [_Item(f"{path}::test_{i}", slow=i >= 5) for i in range(7)]  # the slow ones in the last part
    designed = groups_of(i.nodeid for i in items)
    pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]  # the order the workers report
    scheduled = groups_of(i.nodeid for i in items)  # what ByGroup._split_scope computes from it
    assert _partition(scheduled) == _partition(designed), (designed, scheduled)


def test_the_suite_collects_without_xdist() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "--collect-only", "-q", "tests/test_architecture.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout[-800:] + out.stderr[-800:]  # before: INTERNALERROR unknown hook


