"""Publishes coalesced leaderboard_updated events for the quizzes the projector marked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from leaderboard_svc.codec import leaderboard_updated
from leaderboard_svc.domain import Coalescer, RankingSnapshot
from leaderboard_svc.ports import LeaderboardStore, StoreUnavailable
from quizmesh.eventbus.ports import EventBusUnavailable, EventPublisher, Record
from quizmesh.eventbus.traced import RecordTraces
from quizmesh.eventcodec import to_record
from quizmesh.tracing import carrier_headers

log = logging.getLogger(__name__)

TICK_S = 0.05
PUBLISH_TIMEOUT_S = 5.0
# How often the durable marks are scanned for quizzes nobody publishes (see LeaderboardPublisher).
ADOPT_EVERY_S = 5.0
# Rankings read concurrently per step: bounds the Redis connections a burst of due quizzes opens.
READ_CONCURRENCY = 64


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class LeaderboardPublisher:
    """Each tick, publishes the rankings of the quizzes the coalescer says are due.

    Work is proportional to the dirty quizzes only. A publication that fails leaves its quizzes
    dirty, so they are retried an interval later.

    The store keeps a durable mark per quiz applied but not yet published; a publication clears the
    mark it read before reading the ranking, unless a newer batch replaced it. At start-up every
    marked quiz is adopted: a process that crashed after committing offsets and before publishing
    left them marked. Every ADOPT_EVERY_S, the marks unchanged since the previous scan are adopted
    too (their owner is gone, or a `rebuild-leaderboard` command left them); a live quiz's mark
    changes with every batch, so its owner alone publishes it.
    """

    def __init__(
        self,
        store: LeaderboardStore,
        publisher: EventPublisher,
        coalescer: Coalescer,
        *,
        clock: Callable[[], int] = monotonic_ms,
        traces: RecordTraces | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._coalescer = coalescer
        self._clock = clock
        self._traces = traces or RecordTraces.disabled()
        self._scanned: dict[str, str] | None = None  # the marks of the previous scan; None before the first

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until stop is set, then once more for every quiz still dirty."""
        next_scan = self._clock()
        while not stop.is_set():
            if self._clock() >= next_scan:
                await self.adopt_stale_marks()
                next_scan = self._clock() + int(ADOPT_EVERY_S * 1000)
            await self.publish(self._coalescer.take_due(self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
        await self.publish(self._coalescer.take_all())

    async def adopt_stale_marks(self) -> None:
        """Marks dirty the quizzes whose durable mark outlived a scan interval (all of them at the first scan)."""
        try:
            marks = await self._store.dirty_marks()
        except StoreUnavailable as exc:
            log.warning("cannot read the unpublished quizzes' marks: %s", exc)
            return
        previous = self._scanned
        stale = [q for q, m in marks.items() if previous is None or previous.get(q) == m]
        self._scanned = marks
        if stale:
            log.info("adopting %d quizzes whose leaderboards were applied but not published", len(stale))
            self._coalescer.mark(stale)

    async def publish(self, quiz_ids: Sequence[str]) -> None:
        for start in range(0, len(quiz_ids), READ_CONCURRENCY):
            await self._publish_chunk(quiz_ids[start : start + READ_CONCURRENCY])

    async def _publish_chunk(self, quiz_ids: Sequence[str]) -> None:
        try:
            # Read before the rankings: a mark replaced after this is left for its own publication.
            marks = await self._store.dirty_marks(quiz_ids)
        except StoreUnavailable as exc:
            log.warning("cannot read %d quizzes' marks; retrying: %s", len(quiz_ids), exc)
            self._coalescer.failed(quiz_ids)
            return
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
            await self._publisher.publish([self._record(s) for s in snapshots], timeout_s=PUBLISH_TIMEOUT_S)
        except EventBusUnavailable as exc:
            log.warning("cannot publish %d leaderboards; retrying: %s", len(snapshots), exc)
            self._coalescer.failed(s.quiz_id for s in snapshots)
            return
        published = {s.quiz_id: marks[s.quiz_id] for s in snapshots if s.quiz_id in marks}
        try:
            await self._store.clear_dirty(published)
        except StoreUnavailable as exc:
            # A mark left behind costs one extra publication when it is adopted, nothing more.
            log.warning("cannot clear %d published quizzes' marks: %s", len(published), exc)

    def _record(self, snapshot: RankingSnapshot) -> Record:
        # One update covers many answers: its trace links to theirs, and travels on to the edges.
        trace_context = self._traces.publication(snapshot.quiz_id, "leaderboard_svc publish")
        event = leaderboard_updated(snapshot)
        event.trace_context.update(trace_context)
        return to_record(event, carrier_headers(trace_context))
