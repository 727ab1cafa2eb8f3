"""Projects quiz events from the consumer group into the ranking store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from leaderboard_svc.codec import ranking_event
from leaderboard_svc.domain import Coalescer, RankingEvent
from leaderboard_svc.ports import LeaderboardStore, StoreUnavailable
from leaderboard_svc.rebuild import Rebuilder
from quizmesh.backoff import Backoff
from quizmesh.eventbus.ports import ConsumedRecord, EventConsumer
from quizmesh.eventbus.traced import RecordTraces
from quizmesh.eventcodec import UndecodableEvent, decode

log = logging.getLogger(__name__)

POLL_MAX_RECORDS = 2000
# A poll returns as soon as records are there; this bounds how soon a stop is noticed.
POLL_TIMEOUT_S = 0.25
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 2.0


def ranking_events(records: Sequence[ConsumedRecord]) -> list[RankingEvent]:
    """Decodes records in order, skipping (and logging) any that cannot be projected."""
    events: list[RankingEvent] = []
    for record in records:
        try:
            event = ranking_event(decode(record))
        except UndecodableEvent as exc:
            log.error("skipping undecodable record: %s", exc)
            continue
        if event is None:
            log.warning("skipping %s@%d:%d: not a ranking event", record.topic, record.partition, record.offset)
        elif not event.quiz_id or not event.player_id:
            log.error("skipping %s@%d:%d: no quiz or player ID", record.topic, record.partition, record.offset)
        else:
            events.append(event)
    return events


class Projector:
    """poll -> apply -> commit, then mark the quizzes seen for publication.

    Offsets are committed only after the store applied the batch, so a crash replays it, which the
    store's guards make harmless. Every quiz seen is marked, changed or not (the store also keeps a
    durable mark, which the publisher adopts after a crash). With a rebuilder, a quiz whose ranking is
    not built from the durable history (new, expired, or lost with Redis' data) is queued to be.
    """

    def __init__(
        self,
        consumer: EventConsumer,
        store: LeaderboardStore,
        coalescer: Coalescer,
        rebuilder: Rebuilder | None = None,
        *,
        traces: RecordTraces | None = None,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._coalescer = coalescer
        self._rebuilder = rebuilder
        self._traces = traces or RecordTraces.disabled()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            records = await self._consumer.poll(POLL_MAX_RECORDS, POLL_TIMEOUT_S)
            if not records:
                continue
            events = ranking_events(records)
            with self._traces.processing(records):
                applied = await self._apply_until_done(events, stop)
            if not applied:
                return  # stopping with the batch unapplied: its offsets stay uncommitted
            await self._consumer.commit()
            quiz_ids = {e.quiz_id for e in events}
            self._coalescer.mark(quiz_ids)
            if self._rebuilder is not None:
                await self._request_rebuilds(self._rebuilder, quiz_ids)

    async def _request_rebuilds(self, rebuilder: Rebuilder, quiz_ids: set[str]) -> None:
        unchecked = [q for q in quiz_ids if q not in rebuilder.pending]
        try:
            rebuilder.request(await self._store.unbuilt(unchecked))
        except StoreUnavailable as exc:
            # Checked again with the quiz's next batch; the batch itself is applied and committed.
            log.warning("cannot check whether %d rankings are built: %s", len(unchecked), exc)

    async def _apply_until_done(self, events: Sequence[RankingEvent], stop: asyncio.Event) -> bool:
        """Applies the batch, retrying while the store is unavailable. The records are already
        polled, so moving on without them would skip them until the next restart."""
        backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        while True:
            try:
                changed = await self._store.apply(events)
                log.debug("applied %d events; %d quizzes changed", len(events), len(changed))
                return True
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying the batch in %.1fs: %s", backoff.delay_s, exc)
                if await backoff.wait(stop):
                    return False
