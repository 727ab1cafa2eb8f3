from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.adapters.redis_instances import RedisInstanceRegistry
from quiz_svc.ports import GameStore, InstanceRegistry
from quizmesh.redis_client import NO_REPLICAS, RedisClient, ReplicaAcks
from tests.support.infra import REAL, real_redis


@pytest.fixture(params=["memory", "redis", "redis-waiting-for-replicas"])
async def engine_redis(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RedisClient | None, ReplicaAcks]]:
    """The engine the store tests run on: None for the in-memory one, else a client of the real Redis;
    and the replicas its answers wait for (those of the configured Redis, which has some only on the
    multi-node topology: elsewhere that variant is skipped)."""
    if request.param == "memory":
        yield None, NO_REPLICAS
        return
    acks = NO_REPLICAS
    if request.param == "redis-waiting-for-replicas":
        if REAL.redis_wait_replicas == 0:
            pytest.skip("the configured Redis has no replicas to wait for (QUIZMESH_REDIS_WAIT_REPLICAS=0)")
        acks = ReplicaAcks(REAL.redis_wait_replicas, REAL.redis_wait_timeout_ms)
    redis = real_redis()
    yield redis, acks
    await redis.aclose()


@pytest.fixture
def game_store(engine_redis: tuple[RedisClient | None, ReplicaAcks]) -> GameStore:
    """The same behaviour tests run against both engines of the game store (Redis with and without WAIT)."""
    redis, acks = engine_redis
    return InMemoryGameStore() if redis is None else RedisGameStore(redis, acks)


@pytest.fixture
def instance_registry(engine_redis: tuple[RedisClient | None, ReplicaAcks]) -> InstanceRegistry:
    """The registry of quiz_svc processes, on both engines."""
    redis, _ = engine_redis
    return InMemoryInstanceRegistry() if redis is None else RedisInstanceRegistry(redis)


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
