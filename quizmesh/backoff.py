"""Waiting between attempts at something that is unavailable: the one backoff every retry loop uses."""

from __future__ import annotations

import asyncio
import contextlib
import random


class Backoff:
    """Delays that double from `initial_s` up to `max_s`. With `jitter`, each wait is drawn from the
    upper half of its delay, so the many clients that lost a server together do not all come back at
    the same instant. `reset()` after a success starts over from `initial_s`."""

    def __init__(self, initial_s: float, max_s: float, *, jitter: bool = False) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"a backoff needs 0 < initial_s <= max_s, not {initial_s} and {max_s}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._jitter = jitter
        self._next_s = initial_s

    @property
    def delay_s(self) -> float:
        """The longest the next wait may take (what to tell a log reader)."""
        return self._next_s

    def reset(self) -> None:
        self._next_s = self._initial_s

    def next_delay(self) -> float:
        """The next wait's length (jittered if asked); the delay after it is twice as long, up to max_s."""
        delay = self._next_s * random.uniform(0.5, 1.0) if self._jitter else self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return delay

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Waits the next delay, or until `stop` is set. True if stopped."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        return stop.is_set()
