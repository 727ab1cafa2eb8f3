"""Behaviour of the game store and of the registry of quiz_svc processes, the same for the in-memory and
the Redis engines."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from fractions import Fraction
from unittest import mock

import orjson
import pytest

from quiz_svc.adapters.redis_game import RedisGameStore
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
from quiz_svc.kinds import ChoiceAnswer, SingleChoice
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    Claimant,
    Fresh,
    GameStore,
    InstanceRegistry,
    PlayerRecord,
    Replay,
    StoredAnswer,
)
from quizmesh.redis_client import RedisClient, ReplicaAcks

pytestmark = pytest.mark.integration

Q = Question("q", SingleChoice(("a", "b", "c"), frozenset({1})), 10, PointsMode.STANDARD)
# Far in the future: a quiz_svc scheduler sharing this Redis must never find these deadlines due.
NOW = 4_000_000_000_000
# Two quiz_svc processes sharing the store, both alive unless a test says otherwise.
ME = Claimant("me", frozenset({"me", "other"}))
OTHER = Claimant("other", frozenset({"me", "other"}))
OTHER_DEAD = Claimant("me", frozenset({"me"}))  # what "me" sees once "other" died


def quiz() -> QuizDefinition:
    return QuizDefinition(uuid.uuid4().hex[:8].upper(), "t", (Q, Q), True, 0)


async def started(store: GameStore, *players: str) -> QuizDefinition:
    q = quiz()
    state = initial_state(q)
    await store.create(state)
    assert await store.replace_state(state, apply_host_action(state, q, HostAction.START, NOW))
    for player in players:
        assert await store.add_player(q.quiz_id, player, f"nick-{player}") is not None
    return q


def claim(
    q: QuizDefinition, player: str, *, at: int = NOW + 100, received: int | None = None, choice: int = 1
) -> AnswerClaim:
    return AnswerClaim(q.quiz_id, 0, player, ChoiceAnswer(choice), at if received is None else received, at, at + 5_000)


def key(q: QuizDefinition, player: str) -> AnswerKey:
    return AnswerKey(q.quiz_id, 0, player)


def judged(total: int) -> StoredAnswer:
    return StoredAnswer(
        ChoiceAnswer(1), True, total, 0, 100, NOW + 100, PlayerStanding(total, 1, 0), Fraction(1), ("1",)
    )


async def test_nicknames_are_unique_per_quiz_ignoring_case(game_store: GameStore) -> None:
    q = await started(game_store)
    assert await game_store.add_player(q.quiz_id, "p1", "Ada") is not None
    assert await game_store.add_player(q.quiz_id, "p2", "ADA") is None
    state = await game_store.add_player(q.quiz_id, "p3", "Bob")
    assert state is not None and state.participant_count == 2


async def test_a_player_id_is_one_seat_whatever_the_nickname(game_store: GameStore) -> None:
    """A signed-in user's player ID is the same from every device: two joins racing under two nicknames
    make one player."""
    q = await started(game_store)
    joins = await asyncio.gather(
        game_store.add_player(q.quiz_id, "user-player", "Phone"),
        game_store.add_player(q.quiz_id, "user-player", "Laptop"),
    )
    assert sum(j is not None for j in joins) == 1
    record = await game_store.player(q.quiz_id, "user-player")
    assert record is not None and record.nickname in ("Phone", "Laptop")
    state = await game_store.state(q.quiz_id)
    assert state is not None and state.participant_count == 1


async def test_one_hundred_concurrent_duplicates_reserve_exactly_one(game_store: GameStore) -> None:
    q = await started(game_store, "p1")
    results = await asyncio.gather(*(game_store.claim_answers([claim(q, "p1")], ME) for _ in range(100)))
    outcomes = [r[0] for r in results]
    assert sum(isinstance(o, Fresh) for o in outcomes) == 1
    # In progress: the first may still fail, so a repeat is told to retry, never "already answered".
    assert outcomes.count(AnswerRefusal.UNAVAILABLE) == 99
    await game_store.record_verdicts([(key(q, "p1"), judged(900))], "me")
    await game_store.acknowledge([key(q, "p1")])
    [after] = await game_store.claim_answers([claim(q, "p1")], OTHER)
    assert after == AnswerRefusal.ALREADY_ANSWERED


async def test_duplicates_inside_one_batch_reserve_once(game_store: GameStore) -> None:
    q = await started(game_store, "p1")
    outcomes = await game_store.claim_answers([claim(q, "p1")] * 3, ME)
    assert isinstance(outcomes[0], Fresh)
    assert outcomes[1:] == [AnswerRefusal.UNAVAILABLE] * 2


async def test_the_window_closes_on_the_receipt_time(game_store: GameStore) -> None:
    q = await started(game_store, "p1", "p2")
    [late] = await game_store.claim_answers([claim(q, "p1", at=NOW + 10_001)], ME)
    [in_time] = await game_store.claim_answers([claim(q, "p2", at=NOW + 10_000)], ME)
    assert late == AnswerRefusal.QUESTION_CLOSED
    assert isinstance(in_time, Fresh) and in_time.open_ms == NOW


async def test_strangers_and_unknown_quizzes_are_refused(game_store: GameStore) -> None:
    q = await started(game_store)
    [stranger] = await game_store.claim_answers([claim(q, "nobody")], ME)
    [unknown] = await game_store.claim_answers([claim(quiz(), "p1")], ME)
    assert (stranger, unknown) == (AnswerRefusal.NOT_A_PARTICIPANT, AnswerRefusal.QUIZ_NOT_FOUND)


async def test_an_unacknowledged_answer_is_replayed_after_release(game_store: GameStore) -> None:
    q = await started(game_store, "p1")
    [first] = await game_store.claim_answers([claim(q, "p1")], ME)
    assert isinstance(first, Fresh)
    assert await game_store.record_verdicts([(key(q, "p1"), judged(900))], "me") == [True]
    # Publishing failed: the reservation is released and the retry gets the judged answer back, even
    # after the close.
    await game_store.release([key(q, "p1")], "me")
    [retry] = await game_store.claim_answers([claim(q, "p1", at=NOW + 20_000)], ME)
    assert isinstance(retry, Replay) and retry.answer == judged(900)
    await game_store.acknowledge([key(q, "p1")])
    [again] = await game_store.claim_answers([claim(q, "p1", at=NOW + 30_000)], ME)
    assert again == AnswerRefusal.ALREADY_ANSWERED
    player = await game_store.player(q.quiz_id, "p1")
    assert player is not None and player.standing.total == 900
    assert await game_store.tallies(q.quiz_id, 0) == {"1": 1}


async def test_a_living_owner_within_its_lease_keeps_its_reservation(game_store: GameStore) -> None:
    q = await started(game_store, "p1")
    await game_store.claim_answers([claim(q, "p1")], OTHER)
    [during] = await game_store.claim_answers([claim(q, "p1", at=NOW + 200)], ME)
    assert during == AnswerRefusal.UNAVAILABLE
    # The lease is a backstop for an owner that is alive but stuck: past it, the reservation is taken.
    [after_lease] = await game_store.claim_answers([claim(q, "p1", at=NOW + 5_100)], ME)
    assert isinstance(after_lease, Fresh) and after_lease.received_ms == NOW + 100


async def test_a_dead_owners_reservation_is_taken_over_by_the_retry_with_its_first_receipt_time(
    game_store: GameStore,
) -> None:
    q = await started(game_store, "p1", "p2")
    await game_store.claim_answers([claim(q, "p1"), claim(q, "p2")], OTHER)
    await game_store.record_verdicts([(key(q, "p2"), judged(900))], "other")
    # "other" died: p1's answer was never judged, p2's was judged and never published.
    unjudged, replayed = await game_store.claim_answers(
        [claim(q, "p1", at=NOW + 300, choice=2), claim(q, "p2", at=NOW + 300)], OTHER_DEAD
    )
    assert isinstance(unjudged, Fresh) and unjudged.received_ms == NOW + 100
    assert isinstance(replayed, Replay) and replayed.answer == judged(900)
    # Had "other" only stalled, it could no longer write its verdict: the reservation is "me"'s now.
    assert await game_store.record_verdicts([(key(q, "p1"), judged(1))], "other") == [False]
    assert await game_store.record_verdicts([(key(q, "p1"), judged(700))], "me") == [True]
    player = await game_store.player(q.quiz_id, "p1")
    assert player is not None and player.standing.total == 700


async def test_the_recovery_publishes_judged_reservations_and_frees_the_others(game_store: GameStore) -> None:
    q = await started(game_store, "p1", "p2", "p3", "p4")
    await game_store.claim_answers([claim(q, "p1"), claim(q, "p2")], OTHER)
    await game_store.claim_answers([claim(q, "p3"), claim(q, "p4")], ME)
    await game_store.record_verdicts([(key(q, "p2"), judged(900))], "other")
    await game_store.record_verdicts([(key(q, "p4"), judged(800))], "me")
    await game_store.acknowledge([key(q, "p4")])
    # Both alive and within their leases: nothing to recover.
    assert await game_store.recover_answers([q.quiz_id], ME, NOW + 200, NOW + 5_200) == []
    taken = await game_store.recover_answers([q.quiz_id], OTHER_DEAD, NOW + 200, NOW + 5_200)
    assert taken == [(key(q, "p2"), judged(900))]
    # p1's unjudged answer is free again, with its receipt time; p2's is now "me"'s to publish; p3's
    # belongs to "me", alive; p4's is acknowledged.
    outcomes = await game_store.claim_answers([claim(q, p, at=NOW + 300) for p in ("p1", "p2", "p3", "p4")], OTHER)
    assert isinstance(outcomes[0], Fresh) and outcomes[0].received_ms == NOW + 100
    assert outcomes[1:] == [AnswerRefusal.UNAVAILABLE, AnswerRefusal.UNAVAILABLE, AnswerRefusal.ALREADY_ANSWERED]
    await game_store.acknowledge([key(q, "p2")])
    lone = Claimant("third", frozenset({"third"}))
    assert [k for k, _ in await game_store.recover_answers([q.quiz_id], lone, NOW + 400, NOW + 5_400)] == []


async def test_a_released_judged_answer_stays_owed_to_the_recovery(game_store: GameStore) -> None:
    q = await started(game_store, "p1", "p2")
    await game_store.claim_answers([claim(q, "p1"), claim(q, "p2")], ME)
    await game_store.record_verdicts([(key(q, "p1"), judged(900))], "me")
    await game_store.release([key(q, "p1"), key(q, "p2")], "me")
    # A release by a process that no longer owns the reservation changes nothing.
    await game_store.claim_answers([claim(q, "p2", at=NOW + 200)], OTHER)
    await game_store.release([key(q, "p2")], "me")
    taken = await game_store.recover_answers([q.quiz_id], ME, NOW + 300, NOW + 5_300)
    assert taken == [(key(q, "p1"), judged(900))]
    [p2] = await game_store.claim_answers([claim(q, "p2", at=NOW + 400)], ME)
    assert p2 == AnswerRefusal.UNAVAILABLE  # "other" holds it, alive and within its lease


async def test_an_answer_received_in_time_counts_after_the_close_but_not_after_the_next_question(
    game_store: GameStore,
) -> None:
    q = await started(game_store, "p1", "p2", "p3")
    await game_store.claim_answers([claim(q, "p3", at=NOW + 500)], OTHER)
    state = await game_store.state(q.quiz_id)
    assert state is not None
    closed = apply_host_action(state, q, HostAction.CLOSE, NOW + 1_000)
    assert await game_store.replace_state(state, closed, 0)
    late, early = await game_store.claim_answers(
        [claim(q, "p1", at=NOW + 2_000, received=NOW + 1_001), claim(q, "p2", at=NOW + 2_000, received=NOW + 900)],
        ME,
    )
    assert late == AnswerRefusal.QUESTION_CLOSED
    assert isinstance(early, Fresh) and (early.received_ms, early.open_ms) == (NOW + 900, NOW)
    assert await game_store.replace_state(closed, apply_host_action(closed, q, HostAction.NEXT, NOW + 3_000))
    # p3's reservation was never judged: judging it after the next question opened is refused.
    [stale] = await game_store.claim_answers([claim(q, "p3", at=NOW + 3_100)], OTHER_DEAD)
    assert stale == AnswerRefusal.QUESTION_CLOSED


async def test_a_receipt_time_before_the_question_opened_is_not_taken(game_store: GameStore) -> None:
    q = await started(game_store, "p1")
    [outcome] = await game_store.claim_answers([claim(q, "p1", at=NOW + 700, received=NOW - 50)], ME)
    assert isinstance(outcome, Fresh) and outcome.received_ms == NOW + 700


async def test_removed_players_cannot_answer(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    assert await game_store.remove_player(q.quiz_id, "p1", kicked=True)
    assert not await game_store.remove_player(q.quiz_id, "p1", kicked=True)
    [outcome] = await game_store.claim_answers([claim(q, "p1")], ME)
    assert outcome == AnswerRefusal.NOT_A_PARTICIPANT
    state = await game_store.state(q.quiz_id)
    assert state is not None and state.participant_count == 0
    # The nickname is free again.
    assert await game_store.add_player(q.quiz_id, "p2", "ada") is not None


async def test_an_erased_player_keeps_seat_and_score_under_the_replacement_and_frees_their_nickname(
    game_store: GameStore,
) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada Lovelace")
    await game_store.add_player(q.quiz_id, "p2", "Bob")
    [fresh] = await game_store.claim_answers([claim(q, "p1")], ME)
    assert isinstance(fresh, Fresh)
    await game_store.record_verdicts([(key(q, "p1"), judged(900))], "me")
    await game_store.acknowledge([key(q, "p1")])
    before = await game_store.player(q.quiz_id, "p1")

    assert await game_store.erase_player(q.quiz_id, "p1", "Deleted player")

    after = await game_store.player(q.quiz_id, "p1")
    assert before is not None and after is not None
    assert after == dataclasses.replace(before, nickname="Deleted player")
    state = await game_store.state(q.quiz_id)
    assert state is not None and state.participant_count == 2
    # Their own nickname is free; the replacement is nobody's, so erasing another player shares it.
    assert await game_store.add_player(q.quiz_id, "p3", "ada lovelace") is not None
    assert await game_store.erase_player(q.quiz_id, "p2", "Deleted player")
    assert await game_store.add_player(q.quiz_id, "p4", "Bob") is not None
    # Again, or for a player or a session not held: nothing to change.
    assert not await game_store.erase_player(q.quiz_id, "p1", "Deleted player")
    assert not await game_store.erase_player(q.quiz_id, "nobody", "Deleted player")
    assert not await game_store.erase_player("no-such-session", "p1", "Deleted player")
    # Still the same player, whose answer stays theirs.
    [again] = await game_store.claim_answers([claim(q, "p1")], ME)
    assert again == AnswerRefusal.ALREADY_ANSWERED


async def test_an_erased_player_who_left_keeps_the_nickname_they_freed_free(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.add_player(q.quiz_id, "p1", "Ada")
    await game_store.remove_player(q.quiz_id, "p1", kicked=False)
    assert await game_store.add_player(q.quiz_id, "p2", "ADA") is not None

    assert await game_store.erase_player(q.quiz_id, "p1", "Deleted player")

    taken = await game_store.add_player(q.quiz_id, "p3", "ada")
    assert taken is None, "p2 still holds the nickname: erasing p1 must not free it"
    record = await game_store.player(q.quiz_id, "p1")
    assert record is not None and (record.nickname, record.active) == ("Deleted player", False)


async def test_state_changes_are_compare_and_set(game_store: GameStore) -> None:
    q = await started(game_store)
    state = await game_store.state(q.quiz_id)
    assert state is not None
    closed = apply_host_action(state, q, HostAction.CLOSE, NOW + 1)
    assert await game_store.replace_state(state, closed, 0)
    assert not await game_store.replace_state(state, closed, 0)
    assert await game_store.state(q.quiz_id) == closed


async def test_a_transition_owes_its_effects_until_they_are_done(game_store: GameStore) -> None:
    fresh = quiz()
    await game_store.create(initial_state(fresh))
    created = await game_store.live(fresh.quiz_id)
    assert created is not None and not created.owes_effects  # a new quiz owes nobody anything
    q = await started(game_store)
    opened = await game_store.live(q.quiz_id)
    assert opened is not None and (opened.owes_effects, opened.closed_question) == (True, -1)
    closed = apply_host_action(opened.state, q, HostAction.CLOSE, NOW + 1)
    assert await game_store.replace_state(opened.state, closed, 0)
    await game_store.effects_done(q.quiz_id, opened.state.version)  # a late finisher of the opening
    live = await game_store.live(q.quiz_id)
    assert live is not None and (live.state, live.owes_effects, live.closed_question) == (closed, True, 0)
    await game_store.effects_done(q.quiz_id, closed.version)
    live = await game_store.live(q.quiz_id)
    assert live is not None and (live.owes_effects, live.closed_question) == (False, -1)


async def test_due_deadlines_are_listed_once_scheduled(game_store: GameStore) -> None:
    q = await started(game_store)
    await game_store.schedule_close(q.quiz_id, NOW + 10_000)
    assert q.quiz_id not in await game_store.due_closes(NOW + 9_999, 1000)
    assert q.quiz_id in await game_store.due_closes(NOW + 10_000, 1000)
    await game_store.unschedule_close(q.quiz_id)
    assert q.quiz_id not in await game_store.due_closes(NOW + 10_000, 1000)


async def test_a_lost_quiz_is_restored_with_its_answers_already_acknowledged(game_store: GameStore) -> None:
    q = quiz()
    state = apply_host_action(initial_state(q), q, HostAction.START, NOW)
    state = dataclasses.replace(state, participant_count=1)
    players = [
        PlayerRecord("p1", "Ada", PlayerStanding(900, 1, 0), True, False),
        PlayerRecord("p2", "Bob", PlayerStanding(0, 0, -1), False, True),
    ]
    answers = [(key(q, "p1"), judged(900))]
    assert await game_store.restore(state, players, answers)
    assert not await game_store.restore(state, players, answers)
    live = await game_store.live(q.quiz_id)
    assert live is not None and (live.state, live.owes_effects) == (state, False)
    [again] = await game_store.claim_answers([claim(q, "p1")], ME)
    [removed] = await game_store.claim_answers([claim(q, "p2")], ME)
    assert (again, removed) == (AnswerRefusal.ALREADY_ANSWERED, AnswerRefusal.NOT_A_PARTICIPANT)
    assert await game_store.answer(key(q, "p1")) == judged(900)
    assert await game_store.tallies(q.quiz_id, 0) == {"1": 1}
    assert await game_store.add_player(q.quiz_id, "p3", "ada") is None  # Ada's nickname is still hers
    assert await game_store.add_player(q.quiz_id, "p4", "bob") is not None  # Bob's was freed


# --- the registry of processes ---


async def test_a_process_is_alive_until_its_heartbeat_expires(instance_registry: InstanceRegistry) -> None:
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    first = await instance_registry.beat(a, NOW, 3_000)
    assert first.was_given_up  # never seen before
    await instance_registry.beat(b, NOW + 1_000, 3_000)
    seen = await instance_registry.beat(a, NOW + 2_000, 3_000)
    assert {a, b} <= seen.live and not seen.was_given_up
    later = await instance_registry.beat(a, NOW + 4_500, 3_000, 1_000)
    assert b not in later.live and b not in later.dead  # dead, but not for 1 s yet
    later = await instance_registry.beat(a, NOW + 5_500, 3_000, 1_000)
    assert b not in later.live and b in later.dead
    await instance_registry.forget(b)
    assert b not in (await instance_registry.beat(a, NOW + 5_600, 3_000)).dead
    # A process that retires is dead at once for the others.
    await instance_registry.beat(b, NOW + 5_700, 3_000)
    await instance_registry.retire(b)
    assert b in (await instance_registry.beat(a, NOW + 5_800, 3_000, 1_000)).dead
    await instance_registry.forget(b)
    await instance_registry.forget(a)


async def test_a_dead_process_is_recovered_by_one_adopter_from_its_list_of_quizzes(
    instance_registry: InstanceRegistry,
) -> None:
    dead = f"dead-{uuid.uuid4().hex[:8]}"
    await instance_registry.register(dead, ["Q1", "Q2"])
    await instance_registry.register(dead, ["Q2", "Q3"])
    assert await instance_registry.quizzes(dead) == ["Q1", "Q2", "Q3"]
    assert await instance_registry.adopt(dead, "a", 10_000)
    assert not await instance_registry.adopt(dead, "b", 10_000)


async def test_an_answer_judged_before_kinds_reads_as_its_single_choice(
    engine_redis: tuple[RedisClient | None, ReplicaAcks],
) -> None:
    """During a rolling upgrade a reservation may hold an answer judged by a quiz_svc from before kinds."""
    redis, acks = engine_redis
    if redis is None:
        pytest.skip("only Redis keeps answers across processes of two versions")
    quiz_id = uuid.uuid4().hex[:8].upper()
    before_kinds = {"c": 2, "ok": 1, "p": 900, "b": 0, "rt": 100, "rcv": NOW, "t": 900, "s": 1, "l": 0, "ack": 1}
    await redis.hset(f"qz:{{{quiz_id}}}:a:0", "p1", orjson.dumps(before_kinds))
    stored = await RedisGameStore(redis, acks).answer(AnswerKey(quiz_id, 0, "p1"))
    assert stored is not None
    assert (stored.value, stored.credit, stored.tally, stored.points) == (ChoiceAnswer(2), Fraction(1), ("2",), 900)


async def test_without_replicas_a_mark_rides_with_the_next_claim_or_goes_alone_soon(
    engine_redis: tuple[RedisClient | None, ReplicaAcks],
) -> None:
    redis, acks = engine_redis
    if redis is None or acks.replicas:
        pytest.skip("Redis without replicas to wait for: there a mark takes no round trip of its own")
    store = RedisGameStore(redis, acks)
    q = await started(store, "p1", "p2", "p3")
    for player in ("p1", "p2"):
        [fresh] = await store.claim_answers([claim(q, player)], ME)
        assert isinstance(fresh, Fresh)
        assert await store.record_verdicts([(key(q, player), judged(900))], "me") == [True]
    with mock.patch.object(redis, "pipeline", wraps=redis.pipeline) as pipelines:
        marking = asyncio.create_task(store.acknowledge([key(q, "p1")]))
        await asyncio.sleep(0)
        assert not marking.done()  # waiting for a ride
        # The next claim carries the mark, ahead of its own calls: a repeat in it is already answered.
        outcomes = await store.claim_answers([claim(q, "p1"), claim(q, "p3")], OTHER)
        await asyncio.sleep(0)  # the marking task resumes; the timer that would send it alone is cancelled
        assert marking.done() and marking.result() == {key(q, "p1")}
    assert pipelines.call_count == 1  # one round trip for the mark and the claim
    assert outcomes[0] == AnswerRefusal.ALREADY_ANSWERED and isinstance(outcomes[1], Fresh)
    # With no claim to ride with, a mark goes alone after MARKS_RIDE_WAIT_S.
    assert await asyncio.wait_for(store.acknowledge([key(q, "p2")]), 2.0) == {key(q, "p2")}
    [repeat] = await store.claim_answers([claim(q, "p2")], OTHER)
    assert repeat == AnswerRefusal.ALREADY_ANSWERED
