from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.adapters.redis_instances import RedisInstanceRegistry
from quiz_svc.ports import GameStore, InstanceRegistry
from quizmesh.redis_client import RedisClient
from tests.support.infra import real_redis


@pytest.fixture(params=["memory", "redis"])
async def engine_redis(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient | None]:
    """The engine the store tests run on: None for the in-memory one, else a client of the real Redis."""
    if request.param == "memory":
        yield None
        return
    redis = real_redis()
    yield redis
    await redis.aclose()


@pytest.fixture
def game_store(engine_redis: RedisClient | None) -> GameStore:
    """The same behaviour tests run against both engines of the game store."""
    return InMemoryGameStore() if engine_redis is None else RedisGameStore(engine_redis)


@pytest.fixture
def instance_registry(engine_redis: RedisClient | None) -> InstanceRegistry:
    """The registry of quiz_svc processes, on both engines."""
    return InMemoryInstanceRegistry() if engine_redis is None else RedisInstanceRegistry(engine_redis)


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
