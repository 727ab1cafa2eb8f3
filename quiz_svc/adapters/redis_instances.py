"""The registry of quiz_svc processes in Redis: a sorted set of heartbeats and, per process, the set of
quizzes where it may hold work (see ports.InstanceRegistry).

`qz:instances` scores each process ID with the time its heartbeat expires. A process's quizzes live in
`qz:instance:{<id>}:quizzes`, whose expiry each heartbeat pushes back; it outlives the process by a
day, so a recovery interrupted half way can read it again. Plain commands only: each touches one key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quiz_svc.ports import Heartbeat
from quizmesh.redis_client import RedisClient

INSTANCES = "qz:instances"
# How long a process's list of quizzes outlives its last heartbeat.
QUIZZES_KEPT_S = 24 * 3600
# Dead processes one heartbeat reports, at most; the next heartbeats report the rest.
DEAD_PER_BEAT = 32


def _quizzes(instance_id: str) -> str:
    return f"qz:instance:{{{instance_id}}}:quizzes"


def _adopted(instance_id: str) -> str:
    return f"qz:instance:{{{instance_id}}}:adopted"


class RedisInstanceRegistry:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def beat(self, instance_id: str, now_ms: int, ttl_ms: int, dead_for_ms: int = 0) -> Heartbeat:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(INSTANCES, {instance_id: now_ms + ttl_ms})
            pipe.expire(_quizzes(instance_id), QUIZZES_KEPT_S)
            pipe.zrangebyscore(INSTANCES, now_ms, "+inf")
            pipe.zrangebyscore(INSTANCES, "-inf", f"({now_ms - dead_for_ms}", start=0, num=DEAD_PER_BEAT)
            added, _, live, dead = await pipe.execute()
        return Heartbeat(
            live=frozenset(i.decode() for i in live),
            dead=tuple(i.decode() for i in dead),
            was_given_up=bool(added),
        )

    async def register(self, instance_id: str, quiz_ids: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(_quizzes(instance_id), *quiz_ids)
            pipe.expire(_quizzes(instance_id), QUIZZES_KEPT_S)
            await pipe.execute()

    async def quizzes(self, instance_id: str) -> list[str]:
        members: Any = await self._redis.smembers(_quizzes(instance_id))
        return sorted(m.decode() for m in members)

    async def adopt(self, dead_id: str, adopter_id: str, ttl_ms: int) -> bool:
        return bool(await self._redis.set(_adopted(dead_id), adopter_id, nx=True, px=ttl_ms))

    async def forget(self, instance_id: str) -> None:
        await self._redis.zrem(INSTANCES, instance_id)

    async def retire(self, instance_id: str) -> None:
        await self._redis.zadd(INSTANCES, {instance_id: 0}, xx=True)

    async def close(self) -> None:
        return None
