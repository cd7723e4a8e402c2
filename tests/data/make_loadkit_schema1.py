"""How tests/data/loadkit-schema1.db was made: by loadkit's own Store at commit 1ba486f (schema 1,
the last before the history table), so that the migration test opens a file the old code wrote.

    git archive 1ba486f loadkit | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/make_loadkit_schema1.py tests/data/loadkit-schema1.db
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from loadkit.models.results import Verdict
from loadkit.webhook.models import Freeze, HookKind, RunRecord, RunStatus
from loadkit.webhook.store import SCHEMA_VERSION, Store

assert SCHEMA_VERSION == 1, "run it with the old loadkit on PYTHONPATH"
store = Store(sys.argv[1])
analysis, _, _ = store.enter_analysis("bruno", "bruno-site", "abc123", "pre-rollout")
store.insert_run(RunRecord(id="r1", analysis=analysis.id, namespace="bruno", name="bruno-site", checksum="abc123",
                           profile="smoke", hook=HookKind.PRE_ROLLOUT, thresholds="default", target="http://x",
                           status=RunStatus.RUNNING, created_at=datetime(2026, 11, 1, tzinfo=UTC)))
store.finish_run("r1", RunStatus.COMPLETED, verdict=Verdict.PASS, score=100.0, reason="every threshold met",
                 result=None)
store.set_freeze(Freeze(namespace="bruno", name="*", reason="release freeze"))
store.close()
