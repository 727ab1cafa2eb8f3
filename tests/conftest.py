"""Fixtures shared by every test package: the real infrastructure started by scripts/infra.sh."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.infra import REAL, require


@pytest.fixture
def kafka_bootstrap() -> str:
    require("Kafka", REAL.kafka_bootstrap)
    return REAL.kafka_bootstrap


@pytest.fixture
def postgres_dsn() -> str:
    require("PostgreSQL", REAL.postgres_dsn)
    return REAL.postgres_dsn


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    require("Redis", REAL.redis_url)
    client = Redis.from_url(REAL.redis_url)
    yield client
    await client.aclose()
