"""The Redis client quizmesh's stores share: one Redis, or a Redis Cluster, chosen by configuration.

Every store keeps one quiz's keys under one `{quiz_id}` hash tag, so each Lua script and each per-quiz
transaction touches a single cluster slot; a batch that spans quizzes is one pipeline, which the
cluster client splits by node.

Every client logs in with the process's RedisCredentials (an ACL user; TLS with `rediss://` URLs).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, NoPermissionError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

from quizmesh.process import CannotStart
from quizmesh.settings import (
    REDIS_CA_FILE,
    REDIS_PASSWORD,
    REDIS_USERNAME,
    REDIS_WITHOUT_CREDENTIALS,
    RedisCredentials,
    RedisMode,
    SettingsError,
)

RedisClient = Redis | RedisCluster
log = logging.getLogger(__name__)

# One event loop gains nothing from more connections than it has calls worth pipelining in parallel.
REDIS_MAX_CONNECTIONS = 64
REDIS_POOL_WAIT_S = 5.0
# The cluster client has no blocking pool: past its bound a call fails at once (MaxConnectionsError).
# Its connections open only as calls need them, so a generous bound per node costs nothing until a
# burst, and a burst waits on Redis rather than failing in the client.
REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE = 1024
_SOCKET_TIMEOUT_S = 5.0


def connect(
    url: str,
    mode: RedisMode,
    *,
    max_connections: int = REDIS_MAX_CONNECTIONS,
    wait_s: float = REDIS_POOL_WAIT_S,
    credentials: RedisCredentials = REDIS_WITHOUT_CREDENTIALS,
) -> RedisClient:
    """A new client for one Redis or for a Redis Cluster; the caller closes it (`aclose`, which also
    closes its pools)."""
    if mode == "cluster":
        return connect_cluster(url, credentials=credentials)
    return connect_single(url, max_connections=max_connections, wait_s=wait_s, credentials=credentials)


def _login(url: str, credentials: RedisCredentials) -> dict[str, Any]:
    """The client options that log in as the configured user, over TLS for a rediss:// URL. A user and
    password written in the URL itself win over them."""
    options: dict[str, Any] = {}
    if credentials.username:
        options["username"] = credentials.username
    if credentials.password:
        options["password"] = credentials.password
    if urlsplit(url).scheme == "rediss" and credentials.ca_file:
        options["ssl_ca_certs"] = credentials.ca_file
    return options


def connect_single(
    url: str,
    *,
    max_connections: int = REDIS_MAX_CONNECTIONS,
    wait_s: float = REDIS_POOL_WAIT_S,
    credentials: RedisCredentials = REDIS_WITHOUT_CREDENTIALS,
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
        **_login(url, credentials),
    )
    return Redis.from_pool(pool)


def connect_cluster(url: str, *, credentials: RedisCredentials = REDIS_WITHOUT_CREDENTIALS) -> RedisCluster:
    """A client for a Redis Cluster whose seed nodes `url` lists, comma-separated
    (`redis://h1:p1,redis://h2:p2`): any one that answers is enough to discover the others, so the
    client starts while a seed is down. It follows MOVED and ASK redirections and refreshes its slot
    map after a failover."""
    seeds = [urlsplit(item.strip()) for item in url.split(",") if item.strip()]
    if not seeds or any(seed.hostname is None for seed in seeds):
        raise SettingsError(f"QUIZMESH_REDIS_URL={url!r} must list the cluster's seed nodes as redis://host:port,...")
    login = _login(url.split(",", maxsplit=1)[0], credentials)
    username, password = login.pop("username", None), login.pop("password", None)
    if seeds[0].scheme == "rediss":
        login["ssl"] = True
    return RedisCluster(
        startup_nodes=[ClusterNode(seed.hostname or "", seed.port or 6379) for seed in seeds],
        username=seeds[0].username or username,
        password=seeds[0].password or password,
        max_connections=REDIS_CLUSTER_MAX_CONNECTIONS_PER_NODE,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
        **login,
    )


_CHECK_TIMEOUT_S = 5.0


async def check_credentials(client: RedisClient, credentials: RedisCredentials) -> None:
    """One PING: raises CannotStart when Redis refuses the user or its certificate, which no retry
    mends. A Redis that cannot be reached is left to the caller, which waits for it or fails as it does."""
    user = repr(credentials.username) if credentials.username else "default"
    try:
        await asyncio.wait_for(client.ping(), _CHECK_TIMEOUT_S)
    except (AuthenticationError, NoPermissionError) as exc:
        raise CannotStart(
            f"Redis refused the user {user}: {str(exc).rstrip('.')}. Check {REDIS_USERNAME.name} and "
            f"{REDIS_PASSWORD.name} (or {REDIS_PASSWORD.name}_FILE), and that the user's rules allow PING "
            "(scripts/redis/quizmesh.acl)"
        ) from exc
    except RedisConnectionError as exc:
        if isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError):
            raise CannotStart(
                f"Redis presented a certificate that {REDIS_CA_FILE.name}="
                f"{credentials.ca_file or '(the system CAs)'} does not vouch for: {exc}"
            ) from exc
        log.warning("checking the credentials with Redis: unreachable (%r)", exc)
    except TimeoutError as exc:
        log.warning("checking the credentials with Redis: unreachable (%r)", exc)


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
