"""Running a part's `run(stop)` loop beside a test, and waiting for what it does in its own time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


async def until(condition: Callable[[], bool], timeout_s: float = 10, pause_s: float = 0.01) -> None:
    """Waits (up to timeout_s) for a condition the code under test makes true in its own time."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(pause_s)


@contextlib.asynccontextmanager
async def running(
    run: Callable[[asyncio.Event], Awaitable[None]], stop_within_s: float = 10
) -> AsyncIterator[asyncio.Event]:
    """Runs `run(stop)` as a task for the block; on the way out sets `stop` and waits for the loop to end,
    so an error it raised fails the test."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_within_s)
