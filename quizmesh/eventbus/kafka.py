"""The Kafka engine of the event bus (aiokafka).

aiokafka defaults to acks=1 without idempotence; both are set explicitly here, since a player is told
"accepted" only once every in-sync replica holds the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, KafkaTimeoutError

from quizmesh.eventbus.ports import ConsumedRecord, EventBusUnavailable, Record

log = logging.getLogger(__name__)


class KafkaPublisher:
    def __init__(self, bootstrap: str, *, linger_ms: int = 2, client_id: str = "quizmesh") -> None:
        self._options = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": 10_000,
        }
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        # Created on first use: a producer that was built but never started warns at garbage collection.
        async with self._start_lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(**self._options)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            return producer

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._publish(records), timeout_s)
        except (TimeoutError, KafkaError) as exc:
            raise EventBusUnavailable(f"Kafka did not acknowledge {len(records)} events: {exc!r}") from exc

    async def _publish(self, records: Sequence[Record]) -> None:
        producer = await self.start()
        try:
            # send() only enqueues into the accumulator; all records of a call share its batches.
            pending = [
                await producer.send(r.topic, r.value, key=r.key.encode(), headers=list(r.headers)) for r in records
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            if not exc.retriable and not isinstance(exc, KafkaTimeoutError):
                await self._discard(producer, exc)
            raise

    async def _discard(self, producer: AIOKafkaProducer, cause: KafkaError) -> None:
        """Replaces a producer whose idempotent session is broken for good.

        After the broker loses its producer state (a SIGKILL, say) every send fails with
        OutOfOrderSequenceNumber until a new producer ID is obtained. The failed records reach Kafka on
        the player's retry, under the same event IDs, which every sink deduplicates.
        """
        async with self._start_lock:
            current = self._producer is producer
            if current:
                self._producer = None
        if not current:
            return  # another publish already replaced it
        log.warning("discarding the Kafka producer after %r; the next publish starts a new one", cause)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _records(batches: dict[object, list[object]]) -> list[ConsumedRecord]:
    out: list[ConsumedRecord] = []
    for messages in batches.values():
        for m in messages:
            out.append(
                ConsumedRecord(
                    topic=m.topic,  # type: ignore[attr-defined]
                    partition=m.partition,  # type: ignore[attr-defined]
                    offset=m.offset,  # type: ignore[attr-defined]
                    key=(m.key or b"").decode(),  # type: ignore[attr-defined]
                    value=m.value,  # type: ignore[attr-defined]
                    headers=tuple(m.headers or ()),  # type: ignore[attr-defined]
                )
            )
    return out


class KafkaConsumer:
    """A consumer group member with manual commits: at-least-once into idempotent sinks."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str], *, client_id: str = "quizmesh") -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=10_000,
        )
        self._lag: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        await self._consumer.start()

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        await self._measure_lag()
        return _records(batches)

    async def _measure_lag(self) -> None:
        # The highwater is known once a partition was fetched, and then so is the position, which
        # position() returns without waiting. Records fetched but not yet returned count as lag.
        lag: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            try:
                highwater = self._consumer.highwater(tp)
                if highwater is not None:
                    lag[(tp.topic, tp.partition)] = max(0, highwater - await self._consumer.position(tp))
            except (AssertionError, IllegalStateError):
                continue  # revoked by a rebalance meanwhile
        self._lag = lag

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind each assigned partition's end at the last poll, by (topic, partition)."""
        return self._lag

    async def commit(self) -> None:
        try:
            await self._consumer.commit()
        except CommitFailedError:
            # The group rebalanced under us; the new owner re-reads from the last commit and the
            # sinks ignore what they already hold.
            log.warning("offset commit lost to a rebalance; records will be redelivered")

    async def close(self) -> None:
        await self._consumer.stop()


class KafkaTailReader:
    """Reads all partitions from their end, without a group, for relaying live updates."""

    def __init__(self, bootstrap: str, topics: Sequence[str], *, client_id: str = "quizmesh") -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return _records(batches)

    async def close(self) -> None:
        await self._consumer.stop()
