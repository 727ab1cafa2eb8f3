"""The answer window is the domain's rule (domain.answer_window_refusal and domain.receipt_after_open);
the Redis engine restates it inside its claim script, where it must be atomic with answer-once. One
table of cases runs against the domain functions and against both engines' claims, so the script
cannot drift from the rule."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from quiz_svc.domain import (
    AnswerRefusal,
    GameState,
    Phase,
    PointsMode,
    Question,
    QuizDefinition,
    answer_window_refusal,
    initial_state,
    receipt_after_open,
)
from quiz_svc.kinds import ChoiceAnswer, SingleChoice
from quiz_svc.ports import AnswerClaim, Claimant, Fresh, GameStore

Q = Question("q", SingleChoice(("a", "b"), frozenset({0})), 10, PointsMode.STANDARD)
OPEN, CLOSE = 4_000_000_001_000, 4_000_000_011_000
ME = Claimant("me", frozenset({"me"}))

# (phase, current question, close time, question answered, received, handled at)
CASES = [
    (Phase.LOBBY, -1, 0, 0, OPEN, OPEN),
    (Phase.QUESTION_OPEN, 1, CLOSE, 0, OPEN + 10, OPEN + 10),
    (Phase.QUESTION_OPEN, 1, CLOSE, 2, OPEN + 10, OPEN + 10),
    (Phase.QUESTION_OPEN, 1, CLOSE, 3, OPEN + 10, OPEN + 10),
    (Phase.QUESTION_OPEN, 1, CLOSE, 1, OPEN + 4_000, OPEN + 4_000),
    (Phase.QUESTION_OPEN, 1, CLOSE, 1, CLOSE, CLOSE + 5),
    (Phase.QUESTION_OPEN, 1, CLOSE, 1, CLOSE + 1, CLOSE + 1),
    (Phase.QUESTION_OPEN, 1, CLOSE, 1, OPEN - 500, OPEN + 6_000),  # sent ahead, held back: handled time
    (Phase.QUESTION_CLOSED, 1, OPEN + 7_000, 1, OPEN + 6_999, OPEN + 9_000),  # received before the close
    (Phase.QUESTION_CLOSED, 1, OPEN + 7_000, 1, OPEN + 7_001, OPEN + 7_001),
    (Phase.ENDED, 1, OPEN + 7_000, 1, OPEN + 6_000, OPEN + 8_000),
    (Phase.ENDED, 1, OPEN + 7_000, 0, OPEN + 6_000, OPEN + 8_000),
]


def _rule(state: GameState, index: int, received: int, now: int) -> AnswerRefusal | int:
    """The domain's verdict: a refusal, or the receipt time the answer is judged on."""
    if index == state.question_index:
        received = receipt_after_open(received, state.open_ms, now)
    return answer_window_refusal(state, index, received) or received


@pytest.mark.parametrize(("phase", "current", "close", "index", "received", "now"), CASES)
async def test_both_engines_claim_by_the_domains_window_rule(
    game_store: GameStore, phase: Phase, current: int, close: int, index: int, received: int, now: int
) -> None:
    quiz = QuizDefinition(uuid.uuid4().hex[:8].upper(), "t", (Q, Q, Q), True, 0)
    opened = OPEN if current >= 0 else 0
    state = dataclasses.replace(
        initial_state(quiz), phase=phase, question_index=current, open_ms=opened, close_ms=close, version=3
    )
    await game_store.create(state)
    await game_store.add_player(quiz.quiz_id, "p1", "Ada")
    claim = AnswerClaim(quiz.quiz_id, index, "p1", ChoiceAnswer(0), received, now, now + 5_000)
    [outcome] = await game_store.claim_answers([claim], ME)
    expected = _rule(state, index, received, now)
    if isinstance(expected, AnswerRefusal):
        assert outcome == expected
    else:
        assert isinstance(outcome, Fresh) and (outcome.received_ms, outcome.open_ms) == (expected, opened)


def test_the_table_covers_every_refusal_of_the_window_and_both_receipt_times() -> None:
    verdicts = set()
    for phase, current, close, index, received, now in CASES:
        quiz = QuizDefinition("TABLE", "t", (Q, Q, Q), True, 0)
        opened = OPEN if current >= 0 else 0
        state = dataclasses.replace(
            initial_state(quiz), phase=phase, question_index=current, open_ms=opened, close_ms=close
        )
        verdict = _rule(state, index, received, now)
        verdicts.add(verdict if isinstance(verdict, AnswerRefusal) else "received" if verdict == received else "now")
    assert verdicts == {
        AnswerRefusal.QUESTION_NOT_FOUND,
        AnswerRefusal.QUESTION_NOT_OPEN,
        AnswerRefusal.QUESTION_CLOSED,
        "received",
        "now",
    }
