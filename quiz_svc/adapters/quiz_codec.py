"""The JSON form of a quiz definition, as stored in the quiz database and the Redis cache."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from quiz_svc.domain import GameState, Phase, PointsMode, Question, QuizDefinition
from quiz_svc.kinds import (
    Estimate,
    Kind,
    MultipleSelect,
    Ordering,
    Poll,
    SingleChoice,
    Spec,
    TrueFalse,
    TypeAnswer,
    number_text,
)
from quiz_svc.media import QuestionMedia


def _spec_fields(spec: Spec) -> dict[str, Any]:
    if isinstance(spec, SingleChoice | MultipleSelect):
        return {"choices": list(spec.choices), "correct": sorted(spec.correct)}
    if isinstance(spec, TrueFalse):
        return {"answer": spec.answer}
    if isinstance(spec, TypeAnswer):
        return {"accepted": list(spec.accepted), "accents": spec.accent_insensitive, "typos": spec.typo_tolerant}
    if isinstance(spec, Ordering):
        return {"items": list(spec.items), "shown": list(spec.shown)}
    if isinstance(spec, Estimate):
        return {"estimate": [number_text(n) for n in (spec.low, spec.high, spec.answer, spec.tolerance)]}
    return {"choices": list(spec.choices)}


def _spec(kind: Kind, q: dict[str, Any]) -> Spec:
    if kind == Kind.SINGLE_CHOICE:
        return SingleChoice(tuple(q["choices"]), frozenset(q["correct"]))
    if kind == Kind.MULTIPLE_SELECT:
        return MultipleSelect(tuple(q["choices"]), frozenset(q["correct"]))
    if kind == Kind.TRUE_FALSE:
        return TrueFalse(bool(q["answer"]))
    if kind == Kind.TYPE_ANSWER:
        return TypeAnswer(tuple(q["accepted"]), bool(q["accents"]), bool(q["typos"]))
    if kind == Kind.ORDERING:
        return Ordering(tuple(q["items"]), tuple(q["shown"]))
    if kind == Kind.ESTIMATE:
        low, high, answer, tolerance = (Decimal(n) for n in q["estimate"])
        return Estimate(low, high, answer, tolerance)
    return Poll(tuple(q["choices"]))


def _question(q: Question) -> dict[str, Any]:
    fields: dict[str, Any] = {"text": q.text, "kind": q.kind.value, "limit_s": q.time_limit_s, "points": q.points.name}
    if q.media.references():
        fields["media"] = [q.media.image, q.media.audio, list(q.media.choice_images)]
    return {**fields, **_spec_fields(q.spec)}


def encode(quiz: QuizDefinition) -> bytes:
    fields: dict[str, Any] = {
        "quiz_id": quiz.quiz_id,
        "title": quiz.title,
        "allow_late_join": quiz.allow_late_join,
        "created_ms": quiz.created_ms,
        "questions": [_question(q) for q in quiz.questions],
    }
    if quiz.requires_sign_in:
        fields["sign_in"] = True
    return orjson.dumps(fields)


def decode(raw: bytes | str) -> QuizDefinition:
    """A stored quiz; one stored before question kinds has single choice questions without "kind", one
    stored before sessions no "sign_in" (anonymous players welcome)."""
    data: dict[str, Any] = orjson.loads(raw)
    questions = []
    for q in data["questions"]:
        image, audio, choice_images = q.get("media", ("", "", ()))
        questions.append(
            Question(
                text=q["text"],
                spec=_spec(Kind(q.get("kind", Kind.SINGLE_CHOICE.value)), q),
                time_limit_s=int(q["limit_s"]),
                points=PointsMode[q["points"]],
                media=QuestionMedia(image, audio, tuple(choice_images)),
            )
        )
    return QuizDefinition(
        quiz_id=data["quiz_id"],
        title=data["title"],
        allow_late_join=bool(data["allow_late_join"]),
        created_ms=int(data["created_ms"]),
        questions=tuple(questions),
        requires_sign_in=bool(data.get("sign_in", False)),
    )


# The durable columns of a live state, in the order of saved_state_row (after quiz_id) and state_from_row.
_STATE_COLUMNS = ("phase", "question_index", "question_count", "open_ms", "close_ms", "leaderboard_visible", "version")


def save_state_statement(placeholder: Callable[[int], str]) -> str:
    """The upsert of saved_state_row's values, in the SQL of both engines given their n-th placeholder: a
    state replaces the stored one only if it is newer (its question count never changes)."""
    columns = ("quiz_id", *_STATE_COLUMNS)
    values = ", ".join(placeholder(n) for n in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS if c != "question_count")
    return (
        f"INSERT INTO quiz_states AS s ({', '.join(columns)}) VALUES ({values})"
        f" ON CONFLICT (quiz_id) DO UPDATE SET {updates} WHERE s.version < excluded.version"
    )


def saved_state_query(placeholder: str) -> str:
    """The read of a quiz's stored state, as state_from_row takes it."""
    return f"SELECT {', '.join(_STATE_COLUMNS)} FROM quiz_states WHERE quiz_id = {placeholder}"


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
