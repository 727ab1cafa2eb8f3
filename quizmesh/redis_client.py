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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

log = logging.getLogger(__name__)

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


# One script run: the script, its keys and its arguments.
ScriptCall = tuple[AsyncScript, Sequence[str], Sequence[Any]]


async def run_scripts(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    """Runs each (script, keys, args) in one pipeline (on a cluster, one per node, in parallel); returns
    the replies in the order of `calls`, a failed call's error in place of its reply.

    By EVALSHA alone: redis-py's pipelined Script objects send a SCRIPT EXISTS round trip before
    every pipeline. A call refused with NOSCRIPT did not run, so it is run again alone once the script
    is loaded: Redis lost its script cache in a restart or a flush, or a replica was promoted (scripts
    are not replicated).

    A pipeline gets a span only inside a recorded one. The Redis instrumentation formats every argument
    of a pipeline before it learns that its span will not be recorded: about 16 of the 150 µs of CPU
    that a script call of 20 arguments costs this client (docs/performance.md §14), on every batch of
    the unsampled majority of answers."""
    if trace.get_current_span().is_recording():
        return await _run_scripts(client, calls)
    with suppress_instrumentation():
        return await _run_scripts(client, calls)


async def _run_scripts(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            # Not pipe.evalsha: redis-py refuses that name on a cluster pipeline, although its router
            # sends EVALSHA by its keys (and refuses keys of different slots).
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for position, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            script, keys, args = calls[position]
            replies[position] = await script(keys=list(keys), args=list(args))
    return replies


async def run_script_per_key(
    client: RedisClient, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    """Runs `script` once per (keys, args) as run_scripts does; raises the first call's error, though
    other calls of the pipeline may have run."""
    replies = await run_scripts(client, [(script, keys, args) for keys, args in calls])
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


@dataclass(frozen=True)
class ReplicaAcks:
    """How many replicas must hold a write before it counts, and how long to wait for them (Redis WAIT).

    Redis replicates asynchronously: a primary that fails may take its last writes with it, and its
    promoted replica never saw them. Where that matters, a write is confirmed by WAIT on the connection
    that made it. replicas = 0 (one Redis without replicas) confirms nothing and waits for nothing."""

    replicas: int = 0
    timeout_ms: int = 500


# One Redis without replicas: nothing to wait for.
NO_REPLICAS = ReplicaAcks()


class Unconfirmed(Exception):
    """A call's writes were not confirmed on enough replicas in time, or its node failed before answering.
    The call may have run on the primary, and a failover may forget it."""


# Rounds of a confirmed run: a call refused with NOSCRIPT or MOVED (it did not run) goes again, once
# the script is loaded or the slot's new owner known.
_CONFIRMED_ROUNDS = 3

# Sends commands down one connection and returns their replies (a failed command's error as its reply);
# raises if the connection fails.
_Pipe = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


async def run_script_confirmed(
    client: RedisClient, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]], acks: ReplicaAcks
) -> list[Any]:
    """Runs `script` once per (keys, args): each node's calls in one pipeline followed, on the same
    connection, by `WAIT acks.replicas acks.timeout_ms`, the nodes in parallel; returns the replies in the
    order of `calls`, an Unconfirmed in place of each call whose writes no such WAIT confirmed (it may
    have run).

    WAIT counts the replicas that acknowledged the connection's last write; a primary's replication
    stream keeps its writes in order, so that covers every write the calls before it made. It must go
    down the connection that made them, which a cluster pipeline cannot promise (it routes a keyless
    command to any node, and resends a redirected command on another connection): the calls are grouped
    by node here instead. As in run_script_per_key, a script error other than NOSCRIPT is raised."""
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(_CONFIRMED_ROUNDS):
        if not todo:
            break
        groups = [
            ([todo[member] for member in members], node)
            for node, members in (await _nodes(client, script, [calls[p][0][0] for p in todo])).items()
        ]
        done = await asyncio.gather(
            *(_confirmed(node.pipe, script, [calls[p] for p in positions], acks) for positions, node in groups)
        )
        again: list[int] = []
        for (positions, node), node_replies in zip(groups, done, strict=True):
            for position, reply in zip(positions, node_replies, strict=True):
                if isinstance(reply, NoScriptError):
                    await node.load_script()
                    again.append(position)
                elif isinstance(reply, MovedError) and isinstance(client, RedisCluster):
                    await client.nodes_manager.move_slot(reply)
                    again.append(position)
                else:
                    replies[position] = reply
        todo = again
    for position in todo:
        replies[position] = Unconfirmed("the slot kept moving, or its script kept missing")
    return replies


# A node failing under a pipeline: its commands may or may not have run.
_NODE_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)


async def _confirmed(
    pipe: _Pipe, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]], acks: ReplicaAcks
) -> list[Any]:
    commands: list[tuple[Any, ...]] = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
    try:
        *replies, replicas = await pipe([*commands, ("WAIT", acks.replicas, acks.timeout_ms)])
    except (RedisError, OSError) as exc:
        return [Unconfirmed(f"the node failed: {exc!r}")] * len(calls)
    confirmed = isinstance(replicas, int) and replicas >= acks.replicas
    out: list[Any] = []
    for reply in replies:
        if isinstance(reply, (NoScriptError, MovedError)):
            out.append(reply)
        elif isinstance(reply, (AskError, TryAgainError, ClusterDownError)):
            out.append(Unconfirmed(f"the slot is moving: {reply!r}"))
        elif isinstance(reply, Exception):
            raise reply
        else:
            out.append(reply if confirmed else Unconfirmed(f"{replicas!r} of {acks.replicas} replicas in time"))
    return out


@dataclass(frozen=True)
class _Node:
    """Where a group of calls goes: a pipe down one connection, and what loads the script there."""

    pipe: _Pipe
    load_script: Callable[[], Awaitable[Any]]


async def _nodes(client: RedisClient, script: AsyncScript, keys: Sequence[str]) -> dict[_Node, list[int]]:
    """Groups the calls (by their first key): one group for a single Redis, one per primary of a cluster.
    A key whose slot no known primary serves gets a pipe that fails, so its calls come back Unconfirmed."""
    if isinstance(client, Redis):
        return {_Node(_single_pipe(client), lambda: client.script_load(script.script)): list(range(len(keys)))}
    await client.initialize()
    groups: dict[_Node, list[int]] = {}
    by_name: dict[str, _Node] = {}
    for member, key in enumerate(keys):
        try:
            node = client.get_node_from_key(key)
        except RedisError as exc:
            groups[_Node(_failing_pipe(exc), _nothing)] = [member]
            continue
        assert node is not None  # None only when asked for a replica
        if node.name not in by_name:
            by_name[node.name] = _Node(_node_pipe(client, node), _script_loader(node, script))
        groups.setdefault(by_name[node.name], []).append(member)
    return groups


def _single_pipe(client: Redis) -> _Pipe:
    async def pipe(commands: list[tuple[Any, ...]]) -> list[Any]:
        # A pipeline of one Redis goes down one connection; a failing connection raises.
        async with client.pipeline(transaction=False) as pipeline:
            for command in commands:
                pipeline.execute_command(*command)
            replies: list[Any] = await pipeline.execute(raise_on_error=False)
            return replies

    return pipe


def _node_pipe(client: RedisCluster, node: ClusterNode) -> _Pipe:
    async def pipe(commands: list[tuple[Any, ...]]) -> list[Any]:
        queued = [PipelineCommand(position, *command) for position, command in enumerate(commands)]
        failure: BaseException | None = None
        try:
            await node.execute_pipeline(queued)
        except (RedisError, OSError) as exc:
            failure = exc
        else:
            failure = next((c.result for c in queued if isinstance(c.result, _NODE_FAILURES)), None)
        if failure is not None:
            # The node is gone (a failover, say): learn the cluster's layout again for the next calls.
            try:
                await client.nodes_manager.initialize()
            except (RedisError, OSError) as exc:
                log.debug("refreshing the Redis Cluster's layout failed: %r", exc)
            raise failure
        return [command.result for command in queued]

    return pipe


def _failing_pipe(failure: Exception) -> _Pipe:
    async def pipe(commands: list[tuple[Any, ...]]) -> list[Any]:
        raise failure

    return pipe


def _script_loader(node: ClusterNode, script: AsyncScript) -> Callable[[], Awaitable[Any]]:
    return lambda: node.execute_command("SCRIPT", "LOAD", script.script)


async def _nothing() -> None:
    return None
