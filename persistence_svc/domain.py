"""What gets stored from which event, and how a batch of events becomes one idempotent write.

Rows are keyed as the database keys them: a participant by (quiz_id, player_id), an answer by
(quiz_id, question_index, player_id). Within a batch the first occurrence of a key wins, which is also
what the database does with a redelivery of a row it already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from quizmesh.events.v1 import events_pb2


class InvalidEvent(ValueError):
    """An event that decodes but cannot be stored; storing it would fail the batch on every retry."""


@dataclass(frozen=True)
class ParticipantRow:
    """A player who joined a quiz. left_at is set once they left or were removed."""

    quiz_id: str
    player_id: str
    nickname: str
    joined_at: datetime
    quiz_elapsed_ms: int
    left_at: datetime | None = None
    kicked: bool = False


@dataclass(frozen=True)
class LeaveRow:
    """A player leaving a quiz, or being removed from it by the host."""

    quiz_id: str
    player_id: str
    left_at: datetime
    kicked: bool


@dataclass(frozen=True)
class AnswerRow:
    """An accepted, judged answer: one per player per question."""

    quiz_id: str
    question_index: int
    player_id: str
    choice: int
    correct: bool
    points: int
    total_score: int
    streak: int
    response_time_ms: int
    answered_at: datetime
    quiz_elapsed_ms: int
    event_id: str


Row = ParticipantRow | AnswerRow | LeaveRow


@dataclass(frozen=True)
class StoreBatch:
    """Rows to write in one transaction, each key at most once per kind."""

    joins: tuple[ParticipantRow, ...] = ()
    answers: tuple[AnswerRow, ...] = ()
    leaves: tuple[LeaveRow, ...] = ()

    def __len__(self) -> int:
        return len(self.joins) + len(self.answers) + len(self.leaves)


@dataclass(frozen=True)
class ParticipantCursor:
    """Where a page of participants ended, in join order."""

    joined_at: datetime
    player_id: str


@dataclass(frozen=True)
class AnswerCursor:
    """Where a page of answers ended, in (question, answer time, player) order."""

    question_index: int
    answered_at: datetime
    player_id: str


ItemT = TypeVar("ItemT")
CursorT = TypeVar("CursorT")


@dataclass(frozen=True)
class Page(Generic[ItemT, CursorT]):
    """Some rows in order; next_after is where the following page starts, None after the last row."""

    items: tuple[ItemT, ...]
    next_after: CursorT | None


def participant_cursor(row: ParticipantRow) -> ParticipantCursor:
    return ParticipantCursor(row.joined_at, row.player_id)


def answer_cursor(row: AnswerRow) -> AnswerCursor:
    return AnswerCursor(row.question_index, row.answered_at, row.player_id)


def row_from_event(event: Message) -> Row:
    """The row an event stores. Raises InvalidEvent for events no database would accept."""
    if isinstance(event, events_pb2.UserJoinedQuiz):
        return ParticipantRow(
            quiz_id=_key(event.quiz_id, "quiz_id"),
            player_id=_key(event.player_id, "player_id"),
            nickname=_text(event.nickname, "nickname"),
            joined_at=_time(event.event_time, "event_time"),
            quiz_elapsed_ms=event.quiz_elapsed_ms,
        )
    if isinstance(event, events_pb2.AnswerSubmitted):
        if event.question_index < 0:
            raise InvalidEvent(f"question_index {event.question_index} is negative")
        return AnswerRow(
            quiz_id=_key(event.quiz_id, "quiz_id"),
            question_index=event.question_index,
            player_id=_key(event.player_id, "player_id"),
            choice=event.choice,
            correct=event.correct,
            points=event.points,
            total_score=event.total_score,
            streak=event.streak,
            response_time_ms=event.response_time_ms,
            answered_at=_time(event.answer_time, "answer_time"),
            quiz_elapsed_ms=event.quiz_elapsed_ms,
            event_id=_key(event.event_id, "event_id"),
        )
    if isinstance(event, events_pb2.UserLeftQuiz):
        return LeaveRow(
            quiz_id=_key(event.quiz_id, "quiz_id"),
            player_id=_key(event.player_id, "player_id"),
            left_at=_time(event.event_time, "event_time"),
            kicked=event.kicked,
        )
    raise InvalidEvent(f"{type(event).__name__} is not stored")


def batch_of(rows: Iterable[Row]) -> StoreBatch:
    """One write for many rows. Joins and answers keep their first occurrence; a player's leaves
    merge into one, since a PostgreSQL upsert may touch each row only once per statement."""
    joins: dict[tuple[str, str], ParticipantRow] = {}
    answers: dict[tuple[str, int, str], AnswerRow] = {}
    leaves: dict[tuple[str, str], LeaveRow] = {}
    for row in rows:
        if isinstance(row, ParticipantRow):
            joins.setdefault((row.quiz_id, row.player_id), row)
        elif isinstance(row, AnswerRow):
            answers.setdefault((row.quiz_id, row.question_index, row.player_id), row)
        else:
            key = (row.quiz_id, row.player_id)
            earlier = leaves.get(key)
            leaves[key] = row if earlier is None else _merge_leaves(earlier, row)
    return StoreBatch(tuple(joins.values()), tuple(answers.values()), tuple(leaves.values()))


def _merge_leaves(a: LeaveRow, b: LeaveRow) -> LeaveRow:
    """The latest departure counts, and a removal by the host is never forgotten."""
    return LeaveRow(a.quiz_id, a.player_id, max(a.left_at, b.left_at), a.kicked or b.kicked)


def _key(value: str, name: str) -> str:
    if not value:
        raise InvalidEvent(f"{name} is empty")
    return _text(value, name)


def _text(value: str, name: str) -> str:
    # PostgreSQL text cannot hold NUL; such a row would fail its batch on every redelivery.
    if "\x00" in value:
        raise InvalidEvent(f"{name} contains a NUL character")
    return value


def _time(ts: Timestamp, name: str) -> datetime:
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidEvent(f"{name} is unset")
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{name} is out of range: {exc}") from None
