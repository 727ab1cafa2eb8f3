"""Encoding Kafka events: protobuf payloads, keyed by quiz ID, one topic per event type."""

from __future__ import annotations

import time
import uuid

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from quizmesh.eventbus.ports import (
    ANSWER_SUBMITTED,
    LEADERBOARD_UPDATED,
    USER_JOINED_QUIZ,
    USER_LEFT_QUIZ,
    ConsumedRecord,
    Record,
)
from quizmesh.events.v1 import events_pb2

Event = events_pb2.UserJoinedQuiz | events_pb2.UserLeftQuiz | events_pb2.AnswerSubmitted | events_pb2.LeaderboardUpdated

TOPIC_OF: dict[type[Message], str] = {
    events_pb2.UserJoinedQuiz: USER_JOINED_QUIZ,
    events_pb2.UserLeftQuiz: USER_LEFT_QUIZ,
    events_pb2.AnswerSubmitted: ANSWER_SUBMITTED,
    events_pb2.LeaderboardUpdated: LEADERBOARD_UPDATED,
}
_TYPE_OF = {topic: cls for cls, topic in TOPIC_OF.items()}


class UndecodableEvent(ValueError):
    """A record on a known topic whose payload is not the expected message."""


def new_event_id() -> str:
    return uuid.uuid4().hex


def timestamp_ms(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_record(event: Event, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
    return Record(TOPIC_OF[type(event)], event.quiz_id, event.SerializeToString(), headers)


def decode(record: ConsumedRecord) -> Event:
    cls = _TYPE_OF.get(record.topic)
    if cls is None:
        raise UndecodableEvent(f"no event type for topic {record.topic!r}")
    event: Event = cls()  # type: ignore[assignment]
    try:
        event.ParseFromString(record.value)
    except DecodeError as exc:
        raise UndecodableEvent(f"{record.topic}@{record.partition}:{record.offset}: {exc}") from exc
    return event
