"""quiz_svc's domain events (`quiz_svc/events.py`) published on the event bus, encoded by `messages`."""

from __future__ import annotations

from collections.abc import Sequence

from quiz_svc.events import GameEvent
from quiz_svc.messages import event_to_pb
from quiz_svc.ports import EventHeaders
from quizmesh.eventbus import EventPublisher
from quizmesh.eventcodec import to_record


class BusGameEvents:
    """The GameEvents port on the event bus (Kafka, or the in-memory bus)."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(
        self, events: Sequence[GameEvent], *, timeout_s: float, headers: Sequence[EventHeaders] = ()
    ) -> None:
        records = (
            [to_record(event_to_pb(e), h) for e, h in zip(events, headers, strict=True)]
            if headers
            else [to_record(event_to_pb(e)) for e in events]
        )
        await self._publisher.publish(records, timeout_s=timeout_s)
