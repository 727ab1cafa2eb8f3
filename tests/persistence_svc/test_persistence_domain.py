"""Which rows events become, and how a batch keeps one row per key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from persistence_svc.domain import (
    AnswerRow,
    InvalidEvent,
    LeaveRow,
    ParticipantRow,
    batch_of,
)
from persistence_svc.event_rows import row_from_event
from quizmesh.eventcodec import timestamp_ms
from quizmesh.events.v1 import events_pb2
from quizmesh.quiz.v1 import answer_value_pb2
from tests.persistence_svc.persistence_factories import BASE_MS, answered, joined, left, new_quiz_id


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp((BASE_MS + ms) / 1000, tz=UTC)


def test_each_stored_event_becomes_its_row() -> None:
    quiz = new_quiz_id()
    assert row_from_event(joined(quiz, "p1", 10, "Ada")) == ParticipantRow(quiz, "p1", "Ada", _at(10), 10)
    assert row_from_event(left(quiz, "p1", 20, kicked=True)) == LeaveRow(quiz, "p1", _at(20), True)
    answer = row_from_event(answered(quiz, 2, "p1", 30, choice=3, points=700))
    assert answer == AnswerRow(
        quiz_id=quiz,
        question_index=2,
        player_id="p1",
        choice=3,
        correct=True,
        points=700,
        total_score=2100,
        streak=3,
        response_time_ms=30,
        answered_at=_at(30),
        quiz_elapsed_ms=30,
        event_id=f"{quiz}/2/p1",
        answer='{"choice":3}',
        answer_text="answer 3",
        credit="1",
    )
    typed = answer_value_pb2.AnswerValue(text="Ça va !")
    typed_row = row_from_event(answered(quiz, 3, "p1", 40, value=typed))
    assert isinstance(typed_row, AnswerRow) and typed_row.answer == '{"text":"Ça va !"}'


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (joined("", "p1", 1), "quiz_id is empty"),
        (answered("q", 0, "", 1), "player_id is empty"),
        (joined("q", "p\x001", 1), "player_id contains a NUL"),
        (joined("q", "p1", 1, nickname="a\x00b"), "nickname contains a NUL"),
        (events_pb2.UserLeftQuiz(quiz_id="q", player_id="p1"), "event_time is unset"),
        (answered("q", -1, "p1", 1), "question_index -1 is negative"),
        (answered("q", 0, "p1", 1, value=answer_value_pb2.AnswerValue(text="a\x00")), "value.text contains a NUL"),
        (events_pb2.LeaderboardUpdated(quiz_id="q", event_time=timestamp_ms(BASE_MS)), "is not stored"),
    ],
)
def test_events_no_database_would_accept_are_invalid(event: events_pb2.UserJoinedQuiz, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        row_from_event(event)


def test_a_batch_keeps_the_first_answer_and_join_per_key() -> None:
    quiz = new_quiz_id()
    first, retry = answered(quiz, 0, "p1", 100, choice=1), answered(quiz, 0, "p1", 200, choice=2)
    batch = batch_of(
        row_from_event(e)
        for e in [
            joined(quiz, "p1", 1, "first"),
            first,
            answered(quiz, 1, "p1", 300),
            joined(quiz, "p1", 2, "second"),
            retry,
        ]
    )
    assert [(r.player_id, r.nickname) for r in batch.joins] == [("p1", "first")]
    assert [(r.question_index, r.choice) for r in batch.answers] == [(0, 1), (1, 1)]
    assert len(batch) == 3


def test_a_batch_merges_a_players_leaves_into_the_latest_and_keeps_a_kick() -> None:
    quiz = new_quiz_id()
    batch = batch_of(
        row_from_event(e) for e in [left(quiz, "p1", 50, kicked=True), left(quiz, "p1", 40), left(quiz, "p2", 5)]
    )
    assert batch.leaves == (LeaveRow(quiz, "p1", _at(50), True), LeaveRow(quiz, "p2", _at(5), False))
