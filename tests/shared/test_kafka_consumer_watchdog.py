"""The Kafka consumer's watchdog against the real Kafka: a member whose group membership died is
replaced and consumes again; an idle member of a group with more members than partitions is not."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from quizmesh.eventbus.kafka import KafkaConsumer, KafkaPublisher
from quizmesh.eventbus.ports import ConsumedRecord, Record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STALL_LIMIT_S = 4.0


async def _poll_until(
    consumer: KafkaConsumer, done: Callable[[list[ConsumedRecord]], bool], within_s: float
) -> list[ConsumedRecord]:
    received: list[ConsumedRecord] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        received += await consumer.poll(100, 0.1)
        if done(received):
            return received
    raise TimeoutError(f"not done within {within_s} s; received {[r.value for r in received]}")


async def _poll_for(consumer: KafkaConsumer, seconds: float) -> list[ConsumedRecord]:
    received: list[ConsumedRecord] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        received += await consumer.poll(100, 0.1)
    return received


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return int(offsets[TopicPartition(topic, 0)].offset)


async def test_a_member_whose_membership_died_is_replaced_and_commits_again(
    kafka_bootstrap: str, one_partition_topic: str
) -> None:
    topic, group = one_partition_topic, f"watchdog-{uuid.uuid4().hex}"
    consumer = KafkaConsumer(kafka_bootstrap, group, [topic], stall_limit_s=STALL_LIMIT_S)
    publisher = KafkaPublisher(kafka_bootstrap)
    await consumer.start()
    try:
        await publisher.publish([Record(topic, "k", b"first")], timeout_s=10)
        await _poll_until(consumer, lambda got: [r.value for r in got] == [b"first"], within_s=20)
        await consumer.commit()
        # A member out of its group for good, as one stayed after a broker restart (fault scenario 4),
        # brought about by hand: aiokafka's group coordinator closed (it leaves the group and never
        # rejoins) while the broker is fine.
        await consumer._consumer._coordinator.close()

        await _poll_until(consumer, lambda _: consumer.replacements == 1, within_s=3 * STALL_LIMIT_S)
        await publisher.publish([Record(topic, "k", b"second")], timeout_s=10)
        await _poll_until(consumer, lambda got: b"second" in [r.value for r in got], within_s=20)
        await consumer.commit()
        assert await _committed(kafka_bootstrap, group, topic) == 2
        assert consumer.replacements == 1
    finally:
        await asyncio.gather(consumer.close(), publisher.close())


async def test_an_idle_member_without_partitions_is_not_replaced(
    kafka_bootstrap: str, one_partition_topic: str
) -> None:
    topic, group = one_partition_topic, f"watchdog-{uuid.uuid4().hex}"
    consumers = [KafkaConsumer(kafka_bootstrap, group, [topic], stall_limit_s=STALL_LIMIT_S) for _ in range(2)]
    publisher = KafkaPublisher(kafka_bootstrap)
    await asyncio.gather(*(c.start() for c in consumers))
    try:
        await publisher.publish([Record(topic, "k", f"{n}".encode()) for n in range(5)], timeout_s=10)
        received = await asyncio.gather(*(_poll_for(c, 4 * STALL_LIMIT_S) for c in consumers))
        assert sorted(len(c.lag()) for c in consumers) == [0, 1]  # one holds the partition, one idles
        assert sorted(r.value for got in received for r in got) == [f"{n}".encode() for n in range(5)]
        assert [c.replacements for c in consumers] == [0, 0]
    finally:
        await asyncio.gather(*(c.close() for c in consumers), publisher.close())
