"""The Redis game store when replicas do not confirm an answer's steps in time (Redis WAIT falls short):
each step counts as not done, and what it reserved is released for the player's retry.

The store asks for more replicas than the configured Redis has (one node, or the topology's Redis
Cluster with one replica per primary), with a short wait: every WAIT falls short, as when a promoted
primary has no replica yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.domain import AnswerRefusal, Unavailable
from quiz_svc.ports import Fresh, Replay
from quizmesh.redis_client import ReplicaAcks
from tests.quiz_svc.test_game_store import ME, NOW, OTHER, OTHER_DEAD, claim, judged, key, started
from tests.support.infra import real_redis

pytestmark = pytest.mark.integration

UNREACHABLE = ReplicaAcks(replicas=5, timeout_ms=20)


@pytest.fixture
async def stores() -> AsyncIterator[tuple[RedisGameStore, RedisGameStore]]:
    """(a store whose replicas never confirm, a store that waits for none) on the same Redis."""
    redis = real_redis()
    yield RedisGameStore(redis, UNREACHABLE), RedisGameStore(redis)
    await redis.aclose()


async def test_an_unconfirmed_claim_is_unavailable_and_released_with_its_receipt_time(
    stores: tuple[RedisGameStore, RedisGameStore],
) -> None:
    waiting, plain = stores
    q = await started(plain, "p1")
    [outcome] = await waiting.claim_answers([claim(q, "p1", received=NOW + 50)], ME)
    assert outcome == AnswerRefusal.UNAVAILABLE
    # Released: another process takes it over at once (its owner is alive), with the first receipt time.
    [retry] = await plain.claim_answers([claim(q, "p1", at=NOW + 900)], OTHER)
    assert isinstance(retry, Fresh) and retry.received_ms == NOW + 50


async def test_unconfirmed_verdicts_are_not_written_and_the_judged_answer_stays_owed(
    stores: tuple[RedisGameStore, RedisGameStore],
) -> None:
    waiting, plain = stores
    q = await started(plain, "p1")
    [fresh] = await plain.claim_answers([claim(q, "p1")], ME)
    assert isinstance(fresh, Fresh)
    assert await waiting.record_verdicts([(key(q, "p1"), judged(700))], ME.instance_id) == [False]
    # The verdict reached the primary: released, the retry replays it rather than judging again.
    [retry] = await plain.claim_answers([claim(q, "p1", choice=2)], OTHER)
    assert isinstance(retry, Replay) and retry.answer.points == 700


async def test_an_unconfirmed_acknowledgement_is_not_reported_confirmed(
    stores: tuple[RedisGameStore, RedisGameStore],
) -> None:
    waiting, plain = stores
    q = await started(plain, "p1", "p2")
    await plain.claim_answers([claim(q, "p1"), claim(q, "p2")], ME)
    await plain.record_verdicts([(key(q, "p1"), judged(700)), (key(q, "p2"), judged(300))], ME.instance_id)
    assert await waiting.acknowledge([key(q, "p1")]) == set()
    assert await plain.acknowledge([key(q, "p2")]) == {key(q, "p2")}


async def test_an_unconfirmed_recovery_fails_so_that_it_is_run_again(
    stores: tuple[RedisGameStore, RedisGameStore],
) -> None:
    waiting, plain = stores
    q = await started(plain, "p1")
    await plain.claim_answers([claim(q, "p1")], OTHER)
    await plain.record_verdicts([(key(q, "p1"), judged(700))], OTHER.instance_id)
    with pytest.raises(Unavailable):
        await waiting.recover_answers([q.quiz_id], OTHER_DEAD, NOW + 200, NOW + 5_200)
