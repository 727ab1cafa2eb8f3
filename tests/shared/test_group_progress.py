"""GroupProgress on both engines: the end of the partitions one key's records go to, and how far a
consumer group has committed there (what persistence_svc's `caught_up` listings wait on)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from quizmesh.eventbus.ports import Record
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Bus:
    runtime: Runtime
    topics: tuple[str, str]


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Two fresh topics of 4 partitions each, in memory or on the real Kafka (deleted afterwards)."""
    topics = (f"progress-a-{uuid.uuid4().hex[:8]}", f"progress-b-{uuid.uuid4().hex[:8]}")
    if request.param == "memory":
        yield Bus(Runtime(Engines.embedded(sqlite_path=":memory:")), topics)
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=4, replication_factor=1) for t in topics])
        yield Bus(Runtime(Engines("kafka", "memory", "sqlite", bootstrap, "", "", ":memory:")), topics)
    finally:
        await admin.delete_topics(list(topics))
        await admin.close()


async def test_a_group_that_committed_a_keys_records_has_reached_the_end_of_its_partitions(bus: Bus) -> None:
    progress = bus.runtime.group_progress("test")
    publisher = bus.runtime.publisher("test")
    group = f"progress-{uuid.uuid4().hex}"
    consumer = bus.runtime.consumer(group, bus.topics, "test")
    try:
        empty = await progress.end_offsets(bus.topics, "QUIZ1")
        assert [topic for topic, _ in empty] == list(bus.topics) and set(empty.values()) == {0}
        records = [Record(bus.topics[0], "QUIZ1", b"a"), Record(bus.topics[0], "QUIZ1", b"b")]
        records.append(Record(bus.topics[1], "QUIZ1", b"c"))
        records += [Record(topic, f"other-{n}", b"x") for topic in bus.topics for n in range(8)]
        await publisher.publish(records, timeout_s=10)

        ends = await progress.end_offsets(bus.topics, "QUIZ1")
        assert list(ends) == list(empty)  # still the key's partitions
        assert await progress.committed(group, list(ends)) == dict.fromkeys(ends, 0)

        await consumer.start()
        consumed = []
        for _ in range(300):
            consumed += await consumer.poll(100, 0.1)
            if len(consumed) == len(records):
                break
        assert len(consumed) == len(records)
        # The key's records went to the partitions end_offsets named, whose ends count every record
        # (of any key) that landed there.
        assert {(r.topic, r.partition) for r in consumed if r.key == "QUIZ1"} == set(ends)
        assert ends == {p: sum(1 for r in consumed if (r.topic, r.partition) == p) for p in ends}
        await consumer.commit()
        assert await progress.committed(group, list(ends)) == ends
    finally:
        await consumer.close()
        await publisher.close()
        await progress.close()
