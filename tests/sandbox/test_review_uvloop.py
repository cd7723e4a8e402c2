"""Review (rv): the sandbox now runs on uvloop (loadkit/sandbox/_loop.py). Everything the sandbox starts
must still start on that loop: uvloop's subprocess_exec accepts fewer keywords than asyncio's (no
`user=`), so `loadkit sandbox up --deps` (its PostgreSQL) must be checked on the loop it really runs on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from loadkit.sandbox._deps import Postgres, make_state_dir, remove_state_dir
from loadkit.sandbox._loop import run_fast
from tests.conftest import ROOT

MISSING = Postgres.missing()


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_the_sandbox_database_starts_on_the_sandboxs_own_event_loop() -> None:
    state = make_state_dir()

    async def main() -> int:
        db = Postgres(state, log=lambda _message: None)
        try:
            return await db.start()
        finally:
            await db.stop()

    try:
        port = run_fast(main())  # on HEAD: ValueError: unexpected kwargs: user (uvloop's subprocess_exec)
    finally:
        remove_state_dir(state)
    assert port > 0


def test_the_sandbox_loop_accepts_what_the_sandbox_passes_to_subprocesses() -> None:
    """The same without PostgreSQL: `user=None` is what a non-root sandbox passes, and stdlib asyncio takes it."""

    async def main() -> int:
        process = await asyncio.create_subprocess_exec("true", user=None, start_new_session=True)
        return await process.wait()

    assert asyncio.run(main()) == 0
    assert run_fast(main()) == 0


@pytest.mark.slow
@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_sandbox_up_with_deps_starts() -> None:
    """`loadkit sandbox up --deps` prints its ready line (HEAD: exit 3, internal error, ValueError)."""
    proc = subprocess.Popen([sys.executable, "-m", "loadkit", "sandbox", "up", "--deps", "--port", "0", "--pods", "1",
                             "--output", "json", "--exit-with-parent"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("{"), (proc.wait(30), proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
