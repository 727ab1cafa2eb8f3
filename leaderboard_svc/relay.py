"""Relays published leaderboards to this process's WatchLeaderboard streams.

One tail reader per process reads leaderboard_updated, whichever process published it, and hands
each update to the local watchers of its quiz. A watcher keeps only the newest update it has not
sent yet, so a slow subscriber skips intermediate versions instead of growing a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from quizmesh.eventbus.ports import ConsumedRecord, TailReader
from quizmesh.eventcodec import UndecodableEvent, decode
from quizmesh.events.v1 import events_pb2

log = logging.getLogger(__name__)

POLL_MAX_RECORDS = 1000
POLL_TIMEOUT_S = 0.2


class Watcher:
    """One subscriber's slot: the newest update above the version it already has."""

    def __init__(self) -> None:
        self._pending: events_pb2.LeaderboardUpdated | None = None
        self._seen_version = 0
        self._ended = False
        self._wakeup = asyncio.Event()

    def skip_through(self, version: int) -> None:
        """Drops updates up to version: the subscriber already has that ranking (or a newer one)."""
        self._seen_version = max(self._seen_version, version)
        if self._pending is not None and self._pending.version <= self._seen_version:
            self._pending = None

    def offer(self, update: events_pb2.LeaderboardUpdated) -> None:
        # Versions can arrive out of order when two processes briefly publish the same quiz
        # during a consumer group rebalance; an older one is never sent after a newer one.
        newest = self._pending.version if self._pending is not None else self._seen_version
        if update.version > newest:
            self._pending = update
            self._wakeup.set()

    def end(self) -> None:
        self._ended = True
        self._wakeup.set()

    async def next(self) -> events_pb2.LeaderboardUpdated | None:
        """The next update to send, or None once the relay shut down."""
        while True:
            if self._ended:
                return None
            if self._pending is not None:
                update, self._pending = self._pending, None
                self._seen_version = update.version
                return update
            self._wakeup.clear()
            await self._wakeup.wait()


class Relay:
    def __init__(self, reader: TailReader) -> None:
        self._reader = reader
        self._watchers: dict[str, set[Watcher]] = {}
        self._closed = False

    async def start(self) -> None:
        """Starts reading at the topic's end and polls once, so the reader holds its positions
        before this process reports ready: a watch's snapshot then never predates them."""
        await self._reader.start()
        self._dispatch(await self._reader.poll(POLL_MAX_RECORDS, POLL_TIMEOUT_S))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._dispatch(await self._reader.poll(POLL_MAX_RECORDS, POLL_TIMEOUT_S))

    def _dispatch(self, records: list[ConsumedRecord]) -> None:
        for record in records:
            # Records are keyed by quiz ID: rankings nobody here watches are not even decoded.
            watchers = self._watchers.get(record.key)
            if not watchers:
                continue
            try:
                update = decode(record)
            except UndecodableEvent as exc:
                log.error("skipping undecodable leaderboard update: %s", exc)
                continue
            if not isinstance(update, events_pb2.LeaderboardUpdated):
                continue
            for watcher in watchers:
                watcher.offer(update)

    @contextlib.asynccontextmanager
    async def watch(self, quiz_id: str) -> AsyncIterator[Watcher]:
        """Subscribes to a quiz's updates for the duration of the block."""
        watcher = Watcher()
        if self._closed:
            watcher.end()
        watchers = self._watchers.setdefault(quiz_id, set())
        watchers.add(watcher)
        try:
            yield watcher
        finally:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[quiz_id]

    def close(self) -> None:
        """Ends every watch, now and from now on: the server is shutting down."""
        self._closed = True
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.end()
