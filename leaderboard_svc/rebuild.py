"""Rebuilding rankings from the durable history: Redis is a projection of PostgreSQL, read through
PersistenceService.

A quiz's ranking is rebuilt when the projector finds it unbuilt (its `built` marker is missing: a new
quiz, an expired ranking, or Redis lost its data) and on demand (`quizmesh rebuild-leaderboard`).
Rebuilding replays the stored history through the same idempotent apply as live events, so it merges
with whatever the live stream applied meanwhile, in any order.

The history is read once persistence_svc has stored every event Kafka held of the quiz when the read
began (`RankingHistory.events`), however far its sink lagged at the loss: so it holds every event the
ranking had applied before the loss, and the live stream applies those that come after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping

from leaderboard_svc.domain import Coalescer
from leaderboard_svc.ports import HistoryUnavailable, LeaderboardStore, RankingHistory, StoreUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0
IDLE_TICK_S = 0.2


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def rebuild(
    quiz_id: str, store: LeaderboardStore, history: RankingHistory, clock: Callable[[], int] = wall_ms
) -> int:
    """Replays quiz_id's stored history into its ranking; returns the number of events replayed.

    The version is raised to the wall clock in ms: versions are otherwise small counters, so the
    next publication outranks anything a watcher saw before the loss.
    """
    events = await history.events(quiz_id)
    if events:
        await store.apply(events)
    await store.mark_built(quiz_id, clock())
    return len(events)


class Rebuilder:
    """Rebuilds requested quizzes in the background, retrying while the history or store is down."""

    def __init__(
        self,
        store: LeaderboardStore,
        history: RankingHistory,
        coalescer: Coalescer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._history = history
        self._coalescer = coalescer
        self._clock = clock
        self._due: dict[str, float] = {}  # quiz ID -> monotonic time of its next rebuild
        self._wakeup = asyncio.Event()

    def request(self, quiz_ids: Iterable[str]) -> None:
        now = self._clock()
        for quiz_id in quiz_ids:
            if quiz_id not in self._due:
                self._due[quiz_id] = now
                self._wakeup.set()

    @property
    def pending(self) -> Mapping[str, float]:
        return self._due

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self._clock()
            for quiz_id in [q for q, at in self._due.items() if at <= now]:
                if stop.is_set():
                    break  # many quizzes may be due (and their history slow to fail): shutdown waits for none
                await self._rebuild_one(quiz_id)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, self._wakeup), IDLE_TICK_S)

    async def _rebuild_one(self, quiz_id: str) -> None:
        try:
            replayed = await rebuild(quiz_id, self._store, self._history)
        except (HistoryUnavailable, StoreUnavailable) as exc:
            log.warning("rebuilding quiz %s's ranking failed; retrying in %.0fs: %s", quiz_id, RETRY_AFTER_S, exc)
            self._due[quiz_id] = self._clock() + RETRY_AFTER_S
            return
        self._coalescer.mark([quiz_id])
        del self._due[quiz_id]
        log.info("rebuilt quiz %s's ranking from %d stored events", quiz_id, replayed)


async def _first(stop: asyncio.Event, wakeup: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def rebuild_command(quiz_id: str, env: Mapping[str, str] = os.environ) -> int:
    """`quizmesh rebuild-leaderboard QUIZ_ID`: rebuilds one quiz's ranking in the configured Redis from
    what PersistenceService (QUIZMESH_PERSISTENCE_ADDR) stored. A running leaderboard_svc publishes the
    rebuilt ranking within a few seconds (it adopts the durable publication mark this leaves). Returns
    the events replayed."""
    from leaderboard_svc.adapters.persistence_history import PersistenceRankingHistory
    from leaderboard_svc.adapters.redis_store import RedisLeaderboardStore
    from leaderboard_svc.settings import Settings
    from quizmesh.runtime import Runtime
    from quizmesh.settings import Engines, SettingsError

    engines = Engines.from_env(env)
    if engines.state != "redis":
        raise SettingsError("rebuild-leaderboard needs QUIZMESH_STATE_STORE=redis")
    settings = Settings.from_env(env)
    redis = Runtime(engines).redis()
    history = PersistenceRankingHistory(settings.persistence_address)
    try:
        store = RedisLeaderboardStore(redis, ttl_s=settings.ranking_ttl_s)
        return await rebuild(quiz_id.strip().upper(), store, history)
    finally:
        await history.close()
        await redis.aclose()
