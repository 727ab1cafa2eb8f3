from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.ports import GameStore
from tests.support.infra import real_redis


@pytest.fixture(params=["memory", "redis"])
async def game_store(request: pytest.FixtureRequest) -> AsyncIterator[GameStore]:
    """The same behaviour tests run against both engines of the game store."""
    if request.param == "memory":
        yield InMemoryGameStore()
        return
    redis = real_redis()
    yield RedisGameStore(redis)
    await redis.aclose()


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
