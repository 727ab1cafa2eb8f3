"""An in-memory event bus with Kafka's semantics that matter here: partitions by key, consumer
groups with committed offsets, redelivery of uncommitted records to a new member."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from quizmesh.eventbus.ports import ConsumedRecord, Partition, Record


@dataclass
class _Topic:
    partitions: list[list[ConsumedRecord]]
    committed: dict[str, list[int]] = field(default_factory=dict)


class InMemoryBus:
    """The shared log. Publishers and consumers of one process hold the same instance."""

    def __init__(self, partitions: int = 8) -> None:
        self._partition_count = partitions
        self._topics: dict[str, _Topic] = {}
        self._arrived = asyncio.Condition()

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = _Topic(partitions=[[] for _ in range(self._partition_count)])
            self._topics[name] = topic
        return topic

    def partition_for(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self._partition_count

    async def append(self, records: Sequence[Record]) -> None:
        for record in records:
            partition = self.partition_for(record.key)
            log = self._topic(record.topic).partitions[partition]
            log.append(ConsumedRecord(record.topic, partition, len(log), record.key, record.value, record.headers))
        async with self._arrived:
            self._arrived.notify_all()

    def committed(self, group: str, topic: str) -> list[int]:
        return self._topic(topic).committed.setdefault(group, [0] * self._partition_count)

    def end_offsets(self, topic: str) -> list[int]:
        return [len(p) for p in self._topic(topic).partitions]

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[ConsumedRecord]:
        return self._topic(topic).partitions[partition][offset : offset + limit]

    async def wait_for_records(self, timeout_s: float) -> None:
        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)


class InMemoryPublisher:
    def __init__(self, bus: InMemoryBus) -> None:
        self._bus = bus

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        await self._bus.append(records)

    async def close(self) -> None:
        return None


class _Reader:
    """Reads topics from per-partition positions; shared by the group consumer and the tail reader."""

    def __init__(self, bus: InMemoryBus, topics: Sequence[str]) -> None:
        self._bus = bus
        self._topics = tuple(topics)
        self._positions: dict[str, list[int]] = {}

    def _take(self, max_records: int) -> list[ConsumedRecord]:
        taken: list[ConsumedRecord] = []
        for topic in self._topics:
            positions = self._positions[topic]
            for partition, offset in enumerate(positions):
                batch = self._bus.read(topic, partition, offset, max_records - len(taken))
                positions[partition] += len(batch)
                taken.extend(batch)
                if len(taken) >= max_records:
                    return taken
        return taken

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        records = self._take(max_records)
        if not records:
            await self._bus.wait_for_records(timeout_s)
            records = self._take(max_records)
        return records


class InMemoryConsumer(_Reader):
    """One member of a group. A single member per group is supported, as the embedded mode needs."""

    def __init__(self, bus: InMemoryBus, group: str, topics: Sequence[str]) -> None:
        super().__init__(bus, topics)
        self._group = group

    async def start(self) -> None:
        for topic in self._topics:
            self._positions[topic] = list(self._bus.committed(self._group, topic))

    async def commit(self) -> None:
        for topic in self._topics:
            committed = self._bus.committed(self._group, topic)
            committed[:] = self._positions[topic]

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind each partition's end, by (topic, partition)."""
        return {
            (topic, partition): end - position
            for topic, positions in self._positions.items()
            for partition, (end, position) in enumerate(zip(self._bus.end_offsets(topic), positions, strict=True))
        }

    async def close(self) -> None:
        return None


class InMemoryTailReader(_Reader):
    async def start(self) -> None:
        for topic in self._topics:
            self._positions[topic] = self._bus.end_offsets(topic)

    async def close(self) -> None:
        return None


class InMemoryGroupProgress:
    def __init__(self, bus: InMemoryBus) -> None:
        self._bus = bus

    async def end_offsets(self, topics: Sequence[str], key: str) -> dict[Partition, int]:
        partition = self._bus.partition_for(key)
        return {(topic, partition): self._bus.end_offsets(topic)[partition] for topic in topics}

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {(topic, p): self._bus.committed(group, topic)[p] for topic, p in partitions}

    async def close(self) -> None:
        return None
