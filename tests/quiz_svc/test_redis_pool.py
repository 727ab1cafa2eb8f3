"""quiz_svc's Redis client under more concurrent calls than it has connections."""

from __future__ import annotations

import asyncio

import pytest

from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.domain import HostAction, apply_host_action, initial_state
from quiz_svc.ports import Fresh
from quizmesh.redis_client import REDIS_MAX_CONNECTIONS
from quizmesh.runtime import Runtime
from tests.quiz_svc.test_game_store import ME, NOW, claim, quiz
from tests.support.infra import REAL, require

pytestmark = pytest.mark.integration


async def test_three_hundred_concurrent_claims_wait_for_a_connection_instead_of_failing() -> None:
    require("Redis", REAL.redis_url)
    redis = Runtime(REAL).redis()
    try:
        store = RedisGameStore(redis)
        q = quiz()
        state = initial_state(q)
        await store.create(state)
        assert await store.replace_state(state, apply_host_action(state, q, HostAction.START, NOW))
        players = [f"p{i}" for i in range(300)]
        for player in players:
            await store.add_player(q.quiz_id, player, player)
        # redis-py's default pool raised MaxConnectionsError past 100 calls in flight.
        assert len(players) > REDIS_MAX_CONNECTIONS
        results = await asyncio.gather(*(store.claim_answers([claim(q, p)], ME) for p in players))
        assert all(isinstance(outcome, Fresh) for [outcome] in results)
    finally:
        await redis.aclose()
