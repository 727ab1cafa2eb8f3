"""Events as quiz_svc produces them, for persistence_svc's tests."""

from __future__ import annotations

import uuid

from quizmesh.eventcodec import timestamp_ms
from quizmesh.events.v1 import events_pb2
from quizmesh.quiz.v1 import answer_value_pb2

BASE_MS = 1_760_000_000_000


def new_quiz_id() -> str:
    return f"quiz-{uuid.uuid4().hex}"


def joined(quiz_id: str, player_id: str, at_ms: int, nickname: str = "") -> events_pb2.UserJoinedQuiz:
    return events_pb2.UserJoinedQuiz(
        event_id=uuid.uuid4().hex,
        event_time=timestamp_ms(BASE_MS + at_ms),
        quiz_id=quiz_id,
        player_id=player_id,
        nickname=nickname or f"nick-{player_id}",
        quiz_elapsed_ms=at_ms,
    )


def left(quiz_id: str, player_id: str, at_ms: int, *, kicked: bool = False) -> events_pb2.UserLeftQuiz:
    return events_pb2.UserLeftQuiz(
        event_id=uuid.uuid4().hex,
        event_time=timestamp_ms(BASE_MS + at_ms),
        quiz_id=quiz_id,
        player_id=player_id,
        kicked=kicked,
    )


def answered(
    quiz_id: str,
    question_index: int,
    player_id: str,
    at_ms: int,
    *,
    choice: int = 1,
    points: int = 500,
    value: answer_value_pb2.AnswerValue | None = None,
) -> events_pb2.AnswerSubmitted:
    """An answer event; a single choice (`choice`) unless `value` says otherwise."""
    return events_pb2.AnswerSubmitted(
        value=value or answer_value_pb2.AnswerValue(choice=choice),
        answer_text=f"answer {choice}",
        credit="1" if points > 0 else "0",
        # quiz_svc derives the ID from the key, so a redelivery or a retry carries the same one.
        event_id=f"{quiz_id}/{question_index}/{player_id}",
        event_time=timestamp_ms(BASE_MS + at_ms + 1),
        quiz_id=quiz_id,
        player_id=player_id,
        question_index=question_index,
        choice=choice,
        correct=points > 0,
        points=points,
        total_score=points * (question_index + 1),
        streak=question_index + 1,
        response_time_ms=at_ms % 10_000,
        answer_time=timestamp_ms(BASE_MS + at_ms),
        quiz_elapsed_ms=at_ms,
    )
