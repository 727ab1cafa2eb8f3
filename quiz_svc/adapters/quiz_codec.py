"""The JSON form of a quiz definition, as stored in the quiz database and the Redis cache."""

from __future__ import annotations

from typing import Any

import orjson

from quiz_svc.domain import PointsMode, Question, QuizDefinition


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
