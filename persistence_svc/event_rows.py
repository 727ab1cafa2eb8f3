"""Kafka's events as the rows persistence_svc stores: the one place it reads protobuf events.

The rules a row must keep (keys never empty, no NUL in text) are the domain's; this module only
translates, so the domain imports no generated code.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from persistence_svc.domain import AnswerRow, InvalidEvent, LeaveRow, ParticipantRow, Row, index, key, text
from quizmesh.answer_values import to_json
from quizmesh.events.v1 import events_pb2


def row_from_event(event: Message) -> Row:
    """The row an event stores. Raises InvalidEvent for events no database would accept."""
    if isinstance(event, events_pb2.UserJoinedQuiz):
        return ParticipantRow(
            quiz_id=key(event.quiz_id, "quiz_id"),
            player_id=key(event.player_id, "player_id"),
            nickname=text(event.nickname, "nickname"),
            joined_at=_time(event.event_time, "event_time"),
            quiz_elapsed_ms=event.quiz_elapsed_ms,
            user_id=text(event.user_id, "user_id") or None,
        )
    if isinstance(event, events_pb2.AnswerSubmitted):
        return AnswerRow(
            quiz_id=key(event.quiz_id, "quiz_id"),
            question_index=index(event.question_index, "question_index"),
            player_id=key(event.player_id, "player_id"),
            choice=event.choice,
            correct=event.correct,
            points=event.points,
            total_score=event.total_score,
            streak=event.streak,
            response_time_ms=event.response_time_ms,
            answered_at=_time(event.answer_time, "answer_time"),
            quiz_elapsed_ms=event.quiz_elapsed_ms,
            event_id=key(event.event_id, "event_id"),
            answer=_answer(event),
            answer_text=text(event.answer_text, "answer_text"),
            credit=text(event.credit or ("1" if event.correct else "0"), "credit"),
        )
    if isinstance(event, events_pb2.UserLeftQuiz):
        return LeaveRow(
            quiz_id=key(event.quiz_id, "quiz_id"),
            player_id=key(event.player_id, "player_id"),
            left_at=_time(event.event_time, "event_time"),
            kicked=event.kicked,
        )
    raise InvalidEvent(f"{type(event).__name__} is not stored")


def _answer(event: events_pb2.AnswerSubmitted) -> str:
    # PostgreSQL's jsonb refuses a NUL even escaped, so the typed text is checked before encoding.
    text(event.value.text, "value.text")
    return orjson.dumps(to_json(event.value, event.choice)).decode()


def _time(ts: Timestamp, name: str) -> datetime:
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidEvent(f"{name} is unset")
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{name} is out of range: {exc}") from None
