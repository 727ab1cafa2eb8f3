"""Ports of the event bus. Topics are keyed by quiz ID so one quiz's events stay ordered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

USER_JOINED_QUIZ = "user_joined_quiz"
USER_LEFT_QUIZ = "user_left_quiz"
ANSWER_SUBMITTED = "answer_submitted"
LEADERBOARD_UPDATED = "leaderboard_updated"


class EventBusUnavailable(Exception):
    """The bus could not confirm that records are durable within the deadline. Retrying is safe."""


@dataclass(frozen=True)
class Record:
    """One event to publish."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ConsumedRecord:
    """One event as consumed, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class EventPublisher(Protocol):
    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        """Returns once the bus holds every record durably; raises EventBusUnavailable otherwise."""
        ...

    async def close(self) -> None: ...


class EventConsumer(Protocol):
    """A member of a consumer group: at-least-once, offsets committed only when told."""

    async def start(self) -> None: ...

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        """The next records of the assigned partitions; an empty list when none arrived in time."""
        ...

    async def commit(self) -> None:
        """Commits everything returned by poll so far. Call only once its effect is durable."""
        ...

    async def close(self) -> None: ...


class TailReader(Protocol):
    """Reads every partition of topics from their current end, outside any group: for live relays."""

    async def start(self) -> None: ...

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]: ...

    async def close(self) -> None: ...


Partition = tuple[str, int]  # (topic, partition)


class GroupProgress(Protocol):
    """How far a consumer group has committed, on the partitions that hold one key's records: whether
    the group's effects already cover everything the bus held at a given moment."""

    async def end_offsets(self, topics: Sequence[str], key: str) -> dict[Partition, int]:
        """The current end (the offset the next record will take) of each topic's partition for `key`."""
        ...

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The group's committed offset on each partition (0 where it never committed)."""
        ...

    async def close(self) -> None: ...
