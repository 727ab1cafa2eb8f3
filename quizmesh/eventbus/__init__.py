"""The event bus: Kafka in production, an in-memory engine for the embedded mode and unit tests."""

from quizmesh.eventbus.ports import (
    ConsumedRecord,
    EventBusUnavailable,
    EventConsumer,
    EventPublisher,
    GroupProgress,
    Partition,
    Record,
    TailReader,
)

__all__ = [
    "ConsumedRecord",
    "EventBusUnavailable",
    "EventConsumer",
    "EventPublisher",
    "GroupProgress",
    "Partition",
    "Record",
    "TailReader",
]
