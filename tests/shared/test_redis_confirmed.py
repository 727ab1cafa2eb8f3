"""run_script_confirmed against the real Redis: a script call's writes confirmed by WAIT on the connection
that ran it, or reported Unconfirmed. (On the multi-node topology, tests/cluster/test_redis_failover.py
runs it across the Redis Cluster's nodes, through a failover.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from quizmesh.redis_client import RedisClient, ReplicaAcks, Unconfirmed, run_script_confirmed
from tests.support.infra import real_redis

pytestmark = pytest.mark.integration

COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def redis() -> AsyncIterator[RedisClient]:
    client = real_redis()
    yield client
    await client.aclose()


def _keys(n: int) -> list[str]:
    run = uuid.uuid4().hex
    return [f"test:{{{run}-{i}}}:count" for i in range(n)]


async def test_calls_the_replicas_confirm_return_their_replies_in_order(redis: RedisClient) -> None:
    script = redis.register_script(COUNT)
    keys = _keys(6)
    calls = [([k], [i + 1]) for i, k in enumerate(keys)]
    replies = await run_script_confirmed(redis, script, calls, ReplicaAcks(replicas=0))
    assert replies == [1, 2, 3, 4, 5, 6]


async def test_calls_too_few_replicas_confirm_are_unconfirmed_though_they_ran(redis: RedisClient) -> None:
    script = redis.register_script(COUNT)
    keys = _keys(3)
    replies = await run_script_confirmed(redis, script, [([k], [1]) for k in keys], ReplicaAcks(5, timeout_ms=20))
    assert all(isinstance(reply, Unconfirmed) for reply in replies)
    assert [int(await redis.get(k) or 0) for k in keys] == [1, 1, 1]


async def test_a_script_the_server_lost_is_loaded_and_the_call_confirmed(redis: RedisClient) -> None:
    script = redis.register_script(f"-- {uuid.uuid4().hex}\n{COUNT}")  # a script no server has loaded yet
    [key] = _keys(1)
    assert await run_script_confirmed(redis, script, [([key], [7])], ReplicaAcks(replicas=0)) == [7]
    assert await run_script_confirmed(redis, script, [([key], [1])], ReplicaAcks(replicas=0)) == [8]
