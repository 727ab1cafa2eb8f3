"""The JSON form of a quiz definition, as stored in the quiz database and the Redis cache."""

from __future__ import annotations

from typing import Any

import orjson

from quiz_svc.domain import GameState, Phase, PointsMode, Question, QuizDefinition


def encode(quiz: QuizDefinition) -> bytes:
    return orjson.dumps(
        {
            "quiz_id": quiz.quiz_id,
            "title": quiz.title,
            "allow_late_join": quiz.allow_late_join,
            "created_ms": quiz.created_ms,
            "questions": [
                {
                    "text": q.text,
                    "choices": list(q.choices),
                    "correct": sorted(q.correct_choices),
                    "limit_s": q.time_limit_s,
                    "points": q.points.name,
                }
                for q in quiz.questions
            ],
        }
    )


def decode(raw: bytes | str) -> QuizDefinition:
    data: dict[str, Any] = orjson.loads(raw)
    return QuizDefinition(
        quiz_id=data["quiz_id"],
        title=data["title"],
        allow_late_join=bool(data["allow_late_join"]),
        created_ms=int(data["created_ms"]),
        questions=tuple(
            Question(
                text=q["text"],
                choices=tuple(q["choices"]),
                correct_choices=frozenset(q["correct"]),
                time_limit_s=int(q["limit_s"]),
                points=PointsMode[q["points"]],
            )
            for q in data["questions"]
        ),
    )


def saved_state_row(state: GameState) -> tuple[str, str, int, int, int, int, bool, int]:
    """The durable columns of a live state; the participant count is derived, not kept."""
    return (
        state.quiz_id,
        state.phase.value,
        state.question_index,
        state.question_count,
        state.open_ms,
        state.close_ms,
        state.leaderboard_visible,
        state.version,
    )


def state_from_row(quiz_id: str, row: tuple[Any, ...]) -> GameState:
    phase, index, count, opened, closes, visible, version = row
    return GameState(
        quiz_id, Phase(phase), int(index), int(count), int(opened), int(closes), bool(visible), 0, int(version)
    )
