"""Publishes coalesced leaderboard_updated events for the quizzes the projector marked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from leaderboard_svc.domain import Coalescer, RankingSnapshot
from leaderboard_svc.ports import LeaderboardStore, StoreUnavailable
from quizmesh.eventbus.ports import EventBusUnavailable, EventPublisher
from quizmesh.eventcodec import new_event_id, now_ms, timestamp_ms, to_record
from quizmesh.events.v1 import events_pb2

log = logging.getLogger(__name__)

TICK_S = 0.05
PUBLISH_TIMEOUT_S = 5.0
# Rankings read concurrently per step: bounds the Redis connections a burst of due quizzes opens.
READ_CONCURRENCY = 64


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def leaderboard_updated(snapshot: RankingSnapshot) -> events_pb2.LeaderboardUpdated:
    event = events_pb2.LeaderboardUpdated(
        event_id=new_event_id(),
        event_time=timestamp_ms(now_ms()),
        quiz_id=snapshot.quiz_id,
        version=snapshot.version,
        entries=[
            events_pb2.LeaderboardEntry(player_id=e.player_id, nickname=e.nickname, score=e.score)
            for e in snapshot.entries
        ],
    )
    if snapshot.last_answer_ms:
        event.last_answer_time.CopyFrom(timestamp_ms(snapshot.last_answer_ms))
    return event


class LeaderboardPublisher:
    """Each tick, publishes the rankings of the quizzes the coalescer says are due.

    Work is proportional to the dirty quizzes only. A publication that fails leaves its quizzes
    dirty, so they are retried an interval later.
    """

    def __init__(
        self,
        store: LeaderboardStore,
        publisher: EventPublisher,
        coalescer: Coalescer,
        *,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._coalescer = coalescer
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until stop is set, then once more for every quiz still dirty."""
        while not stop.is_set():
            await self.publish(self._coalescer.take_due(self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
        await self.publish(self._coalescer.take_all())

    async def publish(self, quiz_ids: Sequence[str]) -> None:
        for start in range(0, len(quiz_ids), READ_CONCURRENCY):
            await self._publish_chunk(quiz_ids[start : start + READ_CONCURRENCY])

    async def _publish_chunk(self, quiz_ids: Sequence[str]) -> None:
        results = await asyncio.gather(*(self._store.next_ranking(q) for q in quiz_ids), return_exceptions=True)
        snapshots: list[RankingSnapshot] = []
        for quiz_id, result in zip(quiz_ids, results, strict=True):
            if isinstance(result, StoreUnavailable):
                log.warning("cannot read quiz %s's ranking; retrying: %s", quiz_id, result)
                self._coalescer.failed([quiz_id])
            elif isinstance(result, BaseException):
                raise result
            else:
                snapshots.append(result)
        if not snapshots:
            return
        try:
            await self._publisher.publish(
                [to_record(leaderboard_updated(s)) for s in snapshots], timeout_s=PUBLISH_TIMEOUT_S
            )
        except EventBusUnavailable as exc:
            log.warning("cannot publish %d leaderboards; retrying: %s", len(snapshots), exc)
            self._coalescer.failed(s.quiz_id for s in snapshots)
