"""The Redis client quizmesh's stores share: one Redis, or a Redis Cluster, chosen by configuration.

Every store keeps one quiz's keys under one `{quiz_id}` hash tag, so each Lua script and each per-quiz
transaction touches a single cluster slot; a batch that spans quizzes is one pipeline, which the
cluster client splits by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from quizmesh.settings import RedisMode, SettingsError

RedisClient = Redis | RedisCluster

# One event loop gains nothing from more connections than it has calls worth pipelining in parallel.
REDIS_MAX_CONNECTIONS = 64
REDIS_POOL_WAIT_S = 5.0
# The cluster client has no blocking pool: past its bound a call fails at once (MaxConnectionsError).
# Its connections open only as calls need them, so a generous bound per node costs nothing until a
# burst, and a burst waits on Redis rather than failing in the client.
REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE = 1024
_SOCKET_TIMEOUT_S = 5.0


def connect(
    url: str, mode: RedisMode, *, max_connections: int = REDIS_MAX_CONNECTIONS, wait_s: float = REDIS_POOL_WAIT_S
) -> RedisClient:
    """A new client for one Redis or for a Redis Cluster; the caller closes it (`aclose`, which also
    closes its pools)."""
    if mode == "cluster":
        return connect_cluster(url)
    return connect_single(url, max_connections=max_connections, wait_s=wait_s)


def connect_single(
    url: str, *, max_connections: int = REDIS_MAX_CONNECTIONS, wait_s: float = REDIS_POOL_WAIT_S
) -> Redis:
    """A client for one Redis.

    redis-py's default pool raises MaxConnectionsError once 100 calls are in flight, which reached
    players as `internal`; a blocking pool makes a call beyond `max_connections` wait up to `wait_s`
    for a free connection instead (Redis answers in well under a millisecond, so the wait is short)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_s,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
    )
    return Redis.from_pool(pool)


def connect_cluster(url: str) -> RedisCluster:
    """A client for a Redis Cluster whose seed nodes `url` lists, comma-separated
    (`redis://h1:p1,redis://h2:p2`): any one that answers is enough to discover the others, so the
    client starts while a seed is down. It follows MOVED and ASK redirections and refreshes its slot
    map after a failover."""
    seeds = [urlsplit(item.strip()) for item in url.split(",") if item.strip()]
    if not seeds or any(seed.hostname is None for seed in seeds):
        raise SettingsError(f"QUIZMESH_REDIS_URL={url!r} must list the cluster's seed nodes as redis://host:port,...")
    return RedisCluster(
        startup_nodes=[ClusterNode(seed.hostname or "", seed.port or 6379) for seed in seeds],
        username=seeds[0].username,
        password=seeds[0].password,
        max_connections=REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
    )


async def run_script_per_key(
    client: RedisClient, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    """Runs `script` once per (keys, args) in one pipeline (on a cluster, one per node, in parallel);
    returns the replies in the order of `calls`.

    By EVALSHA alone: redis-py's pipelined Script objects send a SCRIPT EXISTS round trip before
    every pipeline. A call refused with NOSCRIPT did not run, so it is run again alone once the script
    is loaded: Redis lost its script cache in a restart or a flush, or a replica was promoted (scripts
    are not replicated). Any other error is raised, though other calls of the pipeline may have run."""
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            # Not pipe.evalsha: redis-py refuses that name on a cluster pipeline, although its router
            # sends EVALSHA by its keys (and refuses keys of different slots).
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for position, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            keys, args = calls[position]
            replies[position] = await script(keys=list(keys), args=list(args))
        elif isinstance(reply, Exception):
            raise reply
    return replies
