"""Consumer lag from the real Kafka: records fetched or waiting beyond a group member's position."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from quizmesh.eventbus.kafka import KafkaConsumer, KafkaPublisher
from quizmesh.eventbus.ports import USER_LEFT_QUIZ, Record

pytestmark = pytest.mark.integration


async def _drain(consumer: KafkaConsumer) -> None:
    """Polls until a poll returns nothing and every assigned partition reports no lag."""
    for _ in range(600):
        records = await consumer.poll(5000, 0.2)
        if not records and consumer.lag() and not any(consumer.lag().values()):
            return
    raise TimeoutError(f"the topic was not drained; lag {consumer.lag()}")


async def test_lag_counts_the_records_behind_the_position(kafka_bootstrap: str) -> None:
    consumer = KafkaConsumer(kafka_bootstrap, f"lag-test-{uuid.uuid4().hex}", [USER_LEFT_QUIZ])
    publisher = KafkaPublisher(kafka_bootstrap)
    await consumer.start()
    try:
        await _drain(consumer)
        key = f"LAG{uuid.uuid4().hex[:8]}"
        await publisher.publish([Record(USER_LEFT_QUIZ, key, f"{n}".encode()) for n in range(3)], timeout_s=10)
        mine: list[int] = []
        for _ in range(100):
            mine = [r.partition for r in await consumer.poll(1, 0.2) if r.key == key]
            if mine:
                break
        assert mine, "the published records never arrived"
        # One of three returned; the fetch that brought it saw the partition's end. (Other tests
        # share this Kafka and may have added records since, hence at least.)
        assert consumer.lag()[(USER_LEFT_QUIZ, mine[0])] >= 2
        await _drain(consumer)
    finally:
        await asyncio.gather(consumer.close(), publisher.close())
