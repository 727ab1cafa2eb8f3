"""Behaviour of the game store, the same for the in-memory and the Redis engine."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from quiz_svc.domain import (
    AnswerRefusal,
    HostAction,
    PlayerStanding,
    PointsMode,
    Question,
    QuizDefinition,
    apply_host_action,
    initial_state,
)
from quiz_svc.ports import AnswerClaim, AnswerKey, Fresh, GameStore, Replay, StoredAnswer

pytestmark = pytest.mark.integration

Q = Question("q", ("a", "b", "c"), frozenset({1}), 10, PointsMode.STANDARD)
# Far in the future: a quiz_svc scheduler sharing this Redis must never find these deadlines due.
NOW = 4_000_000_000_000


def quiz() -> QuizDefinition:
    return QuizDefinition(uuid.uuid4().hex[:8].upper(), "t", (Q, Q), True, 0)


async def started(store: GameStore) -> QuizDefinition:
    q = quiz()
    state = initial_state(q)
    await store.create(state)
    assert await store.replace_state(state, apply_host_action(state, q, HostAction.START, NOW))
    return q


def claim(q: QuizDefinition, player: str, index: int = 0, at: int = NOW + 100) -> AnswerClaim:
    return AnswerClaim(q.quiz_id, index, player, 1, at, at + 5_000)


def judged(total: int) -> StoredAnswer:
    return StoredAnswer(1, True, total, 0, 100, NOW + 100, PlayerStanding(total, 1, 0))


async def test_nicknames_are_unique_per_quiz_ignoring_case(game_store: GameStore) -> None:
    q = await started(game_store)
    assert await game_store.add_player(q.quiz_id, "p1", "Ada") is not None
    assert await game_store.add_player(q.quiz_id, "p2", "ADA") is None
    state = await game_store.add_player(q.quiz_id, "p3", "Bob")
    assert state is not None and state.participant_count == 2


async def test_one_hundred_concurrent_duplicates_reserve_exactly_one(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    results = await asyncio.gather(*(game_store.claim_answers([claim(q, "p1")]) for _ in range(100)))
    outcomes = [r[0] for r in results]
    assert sum(isinstance(o, Fresh) for o in outcomes) == 1
    assert outcomes.count(AnswerRefusal.ALREADY_ANSWERED) == 99


async def test_duplicates_inside_one_batch_reserve_once(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    outcomes = await game_store.claim_answers([claim(q, "p1")] * 3)
    assert isinstance(outcomes[0], Fresh)
    assert outcomes[1:] == [AnswerRefusal.ALREADY_ANSWERED] * 2


async def test_the_window_closes_on_server_time(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    await game_store.add_player(q.quiz_id, "p2", "Bob")
    [late] = await game_store.claim_answers([claim(q, "p1", at=NOW + 10_001)])
    [in_time] = await game_store.claim_answers([claim(q, "p2", at=NOW + 10_000)])
    assert late == AnswerRefusal.QUESTION_CLOSED
    assert isinstance(in_time, Fresh) and in_time.open_ms == NOW


async def test_strangers_and_unknown_quizzes_are_refused(game_store: GameStore) -> None:
    q = await started(game_store)
    [stranger] = await game_store.claim_answers([claim(q, "nobody")])
    [unknown] = await game_store.claim_answers([claim(quiz(), "p1")])
    assert (stranger, unknown) == (AnswerRefusal.NOT_A_PARTICIPANT, AnswerRefusal.QUIZ_NOT_FOUND)


async def test_an_unacknowledged_answer_is_replayed_after_release(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    [first] = await game_store.claim_answers([claim(q, "p1")])
    assert isinstance(first, Fresh)
    key = AnswerKey(q.quiz_id, 0, "p1")
    await game_store.record_verdicts([(key, judged(900))])
    # Publishing failed: the lease is released and the retry gets the judged answer back, even after close.
    await game_store.release([key])
    [retry] = await game_store.claim_answers([claim(q, "p1", at=NOW + 20_000)])
    assert isinstance(retry, Replay) and retry.answer == judged(900)
    await game_store.acknowledge([key])
    [again] = await game_store.claim_answers([claim(q, "p1", at=NOW + 30_000)])
    assert again == AnswerRefusal.ALREADY_ANSWERED
    player = await game_store.player(q.quiz_id, "p1")
    assert player is not None and player.standing.total == 900
    assert await game_store.choice_counts(q.quiz_id, 0, 3) == [0, 1, 0]


async def test_a_held_lease_blocks_a_takeover(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    await game_store.claim_answers([claim(q, "p1")])
    [during] = await game_store.claim_answers([claim(q, "p1", at=NOW + 200)])
    assert during == AnswerRefusal.ALREADY_ANSWERED


async def test_removed_players_cannot_answer(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    assert await game_store.remove_player(q.quiz_id, "p1", kicked=True)
    assert not await game_store.remove_player(q.quiz_id, "p1", kicked=True)
    [outcome] = await game_store.claim_answers([claim(q, "p1")])
    assert outcome == AnswerRefusal.NOT_A_PARTICIPANT
    state = await game_store.state(q.quiz_id)
    assert state is not None and state.participant_count == 0
    # The nickname is free again.
    assert await game_store.add_player(q.quiz_id, "p2", "ada") is not None


async def test_state_changes_are_compare_and_set(game_store: GameStore) -> None:
    q = await started(game_store)
    state = await game_store.state(q.quiz_id)
    assert state is not None
    closed = apply_host_action(state, q, HostAction.CLOSE, NOW + 1)
    assert await game_store.replace_state(state, closed)
    assert not await game_store.replace_state(state, closed)
    assert await game_store.state(q.quiz_id) == closed


async def test_due_deadlines_are_listed_once_scheduled(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.schedule_close(q.quiz_id, NOW + 10_000)
    assert q.quiz_id not in await game_store.due_closes(NOW + 9_999, 1000)
    assert q.quiz_id in await game_store.due_closes(NOW + 10_000, 1000)
    await game_store.unschedule_close(q.quiz_id)
    assert q.quiz_id not in await game_store.due_closes(NOW + 10_000, 1000)


async def test_a_lost_quiz_is_restored_with_its_answers_already_acknowledged(game_store: GameStore) -> None:
    from quiz_svc.ports import PlayerRecord

    q = quiz()
    state = apply_host_action(initial_state(q), q, HostAction.START, NOW)
    state = dataclasses.replace(state, participant_count=1)
    players = [
        PlayerRecord("p1", "Ada", PlayerStanding(900, 1, 0), True, False),
        PlayerRecord("p2", "Bob", PlayerStanding(0, 0, -1), False, True),
    ]
    answers = [(AnswerKey(q.quiz_id, 0, "p1"), judged(900))]
    assert await game_store.restore(state, players, answers)
    assert not await game_store.restore(state, players, answers)
    assert await game_store.state(q.quiz_id) == state
    [again] = await game_store.claim_answers([claim(q, "p1")])
    [removed] = await game_store.claim_answers([claim(q, "p2")])
    assert (again, removed) == (AnswerRefusal.ALREADY_ANSWERED, AnswerRefusal.NOT_A_PARTICIPANT)
    assert await game_store.answer(AnswerKey(q.quiz_id, 0, "p1")) == judged(900)
    assert await game_store.choice_counts(q.quiz_id, 0, 3) == [0, 1, 0]
    assert await game_store.add_player(q.quiz_id, "p3", "ada") is None  # Ada's nickname is still hers
    assert await game_store.add_player(q.quiz_id, "p4", "bob") is not None  # Bob's was freed
