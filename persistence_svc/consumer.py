"""The sink loop: Kafka events into the result store, at least once, with idempotent writes.

Each micro-batch is decoded, written in one transaction, and only then are its offsets committed. A
crash between the two redelivers the batch, which the store absorbs (one row per key). A record that
cannot be decoded or stored is logged and skipped: retrying it would fail forever and stall its
partition.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from persistence_svc.domain import InvalidEvent, Row, StoreBatch, batch_of
from persistence_svc.event_rows import row_from_event
from persistence_svc.ports import ResultWriter, StoreUnavailable
from quizmesh.backoff import Backoff
from quizmesh.eventbus.ports import (
    ANSWER_SUBMITTED,
    USER_JOINED_QUIZ,
    USER_LEFT_QUIZ,
    ConsumedRecord,
    EventConsumer,
)
from quizmesh.eventcodec import UndecodableEvent, decode

log = logging.getLogger(__name__)

SINK_TOPICS = (USER_JOINED_QUIZ, ANSWER_SUBMITTED, USER_LEFT_QUIZ)


@dataclass(frozen=True)
class SinkTuning:
    """How the sink batches and retries."""

    max_records: int = 2000
    # A poll returns as soon as records are there; this bounds how soon a stop is noticed. Shorter,
    # an idle sink wakes for nothing many times a second.
    poll_timeout_s: float = 0.25
    commit_timeout_s: float = 10.0
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0


class ResultSink:
    """Consumes SINK_TOPICS into a result store. Offsets are committed only after the batch is stored."""

    def __init__(self, consumer: EventConsumer, store: ResultWriter, tuning: SinkTuning = SinkTuning()) -> None:
        self._consumer = consumer
        self._store = store
        self._tuning = tuning

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until stop is set. Returns without committing a batch it could not store before then."""
        while not stop.is_set():
            records = await self._consumer.poll(self._tuning.max_records, self._tuning.poll_timeout_s)
            if not records:
                continue
            batch = batch_of(_rows(records))
            if not await self._store_until_done(batch, stop):
                return
            await self._commit()

    async def _store_until_done(self, batch: StoreBatch, stop: asyncio.Event) -> bool:
        """Saves the batch, retrying with backoff while the store is unavailable. False if stopped first."""
        backoff = Backoff(self._tuning.retry_initial_s, self._tuning.retry_max_s)
        while True:
            try:
                await self._store.save(batch)
                return True
            except StoreUnavailable as exc:
                log.warning("storing %d rows failed, retrying in %.2fs: %s", len(batch), backoff.delay_s, exc)
            if await backoff.wait(stop):
                return False

    async def _commit(self) -> None:
        try:
            await asyncio.wait_for(self._consumer.commit(), self._tuning.commit_timeout_s)
        except TimeoutError:
            # The batch is stored; a lost commit only means it is delivered, and ignored, again.
            log.warning(
                "offset commit timed out after %.1fs; the batch will be redelivered",
                self._tuning.commit_timeout_s,
            )


def _rows(records: list[ConsumedRecord]) -> list[Row]:
    rows: list[Row] = []
    for record in records:
        try:
            rows.append(row_from_event(decode(record)))
        except (UndecodableEvent, InvalidEvent) as exc:
            log.error(
                "skipping record %s@%d:%d (key %r): %s",
                record.topic,
                record.partition,
                record.offset,
                record.key,
                exc,
            )
    return rows
