"""The event loop the sandbox's router and pods run on: uvloop where it is installed.

uvloop (a dependency off Windows, for uvicorn) makes the sandbox's HTTP hops cheaper per request than the
stdlib loop: the sandbox serves every request of every local run and test, so this is most of its CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop when it can be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
