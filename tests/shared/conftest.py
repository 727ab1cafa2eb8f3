"""Fixtures of the tests that drive the Kafka engine directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@pytest.fixture
async def one_partition_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic of one partition on the real Kafka, deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    topic = f"test-{uuid.uuid4().hex[:12]}"
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        yield topic
    finally:
        await admin.delete_topics([topic])
        await admin.close()
