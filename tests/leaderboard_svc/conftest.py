"""Fixtures for leaderboard_svc's tests: the store under test, on each engine, and the real infra."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from leaderboard_svc.adapters.memory_store import MemoryLeaderboardStore
from leaderboard_svc.adapters.redis_store import RedisLeaderboardStore
from leaderboard_svc.ports import LeaderboardStore
from quizmesh.redis_client import RedisClient, connect
from quizmesh.settings import Engines


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def require_infra(name: str, address: str) -> None:
    """Fails when the CI demands real infrastructure (QUIZMESH_REQUIRE_INFRA=1), else skips."""
    if _reachable(address):
        return
    reason = f"{name} is unreachable at {address}; start it with `bash scripts/infra.sh up`"
    if os.environ.get("QUIZMESH_REQUIRE_INFRA") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("QUIZMESH_REDIS_URL", "redis://127.0.0.1:16379/0")
    # A cluster's URL lists its seed nodes; the first stands for them.
    require_infra("Redis", url.split(",")[0].split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1])
    return url


@pytest.fixture
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("QUIZMESH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    require_infra("Kafka", bootstrap.split(",")[0])
    return bootstrap


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_url, Engines.from_env().redis_mode)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> LeaderboardStore:
    if request.param == "memory":
        return MemoryLeaderboardStore()
    return RedisLeaderboardStore(request.getfixturevalue("redis"), ttl_s=600)


@pytest.fixture
def quiz_id() -> str:
    return f"quiz-{uuid.uuid4().hex}"
