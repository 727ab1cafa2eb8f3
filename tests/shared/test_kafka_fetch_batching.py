"""A consumer's batch wait against the real Kafka: records that trickle in reach a sink together, in one
batch per wait, rather than one poll each; with no wait, each comes as soon as it is there; and the
first record after a quiet spell is not held for the wait."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from quizmesh.eventbus.kafka import KafkaConsumer, KafkaPublisher
from quizmesh.eventbus.ports import Record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECORDS = 4
SPACING_S = 0.15


async def _batch_sizes(bootstrap: str, topic: str, batch_wait_ms: int) -> list[int]:
    """Publishes RECORDS records SPACING_S apart to a fresh group's member; the sizes of the batches it polled."""
    consumer = KafkaConsumer(bootstrap, f"fetch-batching-{uuid.uuid4().hex}", [topic], batch_wait_ms=batch_wait_ms)
    publisher = KafkaPublisher(bootstrap)
    await consumer.start()
    sizes: list[int] = []

    async def consume() -> None:
        deadline = time.monotonic() + 30
        while sum(sizes) < RECORDS and time.monotonic() < deadline:
            batch = await consumer.poll(100, 0.05)
            if batch:
                sizes.append(len(batch))

    try:
        # A first record, polled, shows the member joined and fetching.
        await publisher.publish([Record(topic, "quiz", b"warm-up")], timeout_s=10)
        deadline = time.monotonic() + 30
        while not await consumer.poll(100, 0.05):
            assert time.monotonic() < deadline, "the warm-up record never arrived"
        consuming = asyncio.create_task(consume())
        for i in range(RECORDS):
            await publisher.publish([Record(topic, "quiz", f"answer-{i}".encode())], timeout_s=10)
            await asyncio.sleep(SPACING_S)
        await consuming
    finally:
        await publisher.close()
        await consumer.close()
    assert sum(sizes) == RECORDS, f"polled {sizes}, expected {RECORDS} records in all"
    return sizes


async def test_records_that_trickle_in_reach_a_waiting_consumer_in_one_or_two_batches(
    kafka_bootstrap: str, one_partition_topic: str
) -> None:
    # The records span 0.45 s, inside a 3 s wait: at most one fetch's end falls among them.
    sizes = await _batch_sizes(kafka_bootstrap, one_partition_topic, batch_wait_ms=3000)
    assert len(sizes) <= 2, sizes


async def test_without_a_wait_each_record_is_polled_as_soon_as_it_is_there(
    kafka_bootstrap: str, one_partition_topic: str
) -> None:
    sizes = await _batch_sizes(kafka_bootstrap, one_partition_topic, batch_wait_ms=0)
    assert len(sizes) >= RECORDS - 1, sizes


async def test_the_first_record_after_a_quiet_spell_is_not_held_for_the_wait(
    kafka_bootstrap: str, one_partition_topic: str
) -> None:
    wait_s = 4.0
    consumer = KafkaConsumer(
        kafka_bootstrap, f"fetch-batching-{uuid.uuid4().hex}", [one_partition_topic], batch_wait_ms=int(wait_s * 1000)
    )
    publisher = KafkaPublisher(kafka_bootstrap)
    await consumer.start()
    try:
        await publisher.publish([Record(one_partition_topic, "quiz", b"warm-up")], timeout_s=10)
        deadline = time.monotonic() + 30
        while not await consumer.poll(100, 0.05):
            assert time.monotonic() < deadline, "the warm-up record never arrived"
        # The wait that the warm-up began runs out with nothing to fetch: a quiet spell.
        assert await consumer.poll(100, 0.05) == []
        await publisher.publish([Record(one_partition_topic, "quiz", b"after the spell")], timeout_s=10)
        published = time.monotonic()
        polled: list[bytes] = []
        while not polled and time.monotonic() < published + wait_s:
            polled = [record.value for record in await consumer.poll(100, 0.05)]
        waited_s = time.monotonic() - published
    finally:
        await publisher.close()
        await consumer.close()
    # Held for the wait, it would have come only after wait_s, if at all in this loop.
    assert polled == [b"after the spell"]
    assert waited_s < wait_s / 2, waited_s
