"""Fire-and-forget fan-in of live notifications per quiz (Redis pub/sub; in memory when embedded).

At-most-once by nature: a subscriber that misses a message catches up by reading the current state,
so nothing durable depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from redis.asyncio import Redis


class Channels(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    async def close(self) -> None: ...


async def _messages(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    """A subscriber's messages, as its channel queued them."""
    while True:
        yield await queue.get()


class InMemoryChannels:
    async def close(self) -> None:
        return None

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def publish(self, channel: str, payload: bytes) -> None:
        for queue in self._subscribers.get(channel, ()):
            queue.put_nowait(payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._subscribers.setdefault(channel, set()).add(queue)

        try:
            yield _messages(queue)
        finally:
            subscribers = self._subscribers[channel]
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[channel]


class RedisChannels:
    """One Redis pub/sub connection per process, shared by every local subscriber of every channel."""

    def __init__(self, redis: Redis, *, owns_client: bool = False) -> None:
        self._redis = redis
        self._owns_client = owns_client
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._local: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._redis.publish(channel, payload)

    async def _read(self) -> None:
        while True:
            if not self._pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            for queue in self._local.get(channel, ()):
                queue.put_nowait(message["data"])

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="redis-pubsub-reader")
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        subscribers = self._local.setdefault(channel, set())
        if not subscribers:
            await self._pubsub.subscribe(channel)
        subscribers.add(queue)

        try:
            yield _messages(queue)
        finally:
            subscribers.discard(queue)
            if not subscribers:
                del self._local[channel]
                await self._pubsub.unsubscribe(channel)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._owns_client:
            await self._redis.aclose()
