"""The Redis stores on the multi-node topology's Redis Cluster, while its layout changes under them.

A failover and a slot migration each move a quiz's keys to another node behind the client's back:
its next call is refused with MOVED, and a promoted replica has no scripts loaded (NOSCRIPT). The
stores must carry on, with every reservation intact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from leaderboard_svc.adapters.redis_store import RedisLeaderboardStore
from leaderboard_svc.domain import AnswerScored, PlayerJoined
from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.domain import AnswerRefusal, QuizDefinition
from quiz_svc.ports import Fresh
from tests.quiz_svc.test_game_store import ME, claim, started
from tests.support.infra import real_redis, require_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

_SETTLE_S = 20.0


@dataclass(frozen=True)
class Node:
    node_id: str
    host: str
    port: int
    primary_id: str  # "-" for a primary

    def client(self) -> Redis:
        return Redis(host=self.host, port=self.port, socket_timeout=5)


async def _command(client: Redis, *args: str | int | bytes) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _nodes(admin: Redis) -> list[Node]:
    raw = (await _command(admin, "CLUSTER", "NODES")).decode()
    nodes = []
    for line in raw.strip().splitlines():
        node_id, address, _flags, primary_id, *_ = line.split()
        host, _, port = address.split("@")[0].rpartition(":")
        nodes.append(Node(node_id, host, int(port), primary_id))
    return nodes


async def _agreed(any_node: Node) -> None:
    """Waits until every node sees the same primaries and replicas (the cluster bus spreads a
    failover within a few heartbeats)."""
    async with contextlib.aclosing(any_node.client()) as admin, asyncio.timeout(_SETTLE_S):
        while True:
            nodes = await _nodes(admin)
            views = set()
            for node in nodes:
                async with contextlib.aclosing(node.client()) as client:
                    views.add(frozenset((n.node_id, n.primary_id) for n in await _nodes(client)))
            if len(views) == 1:
                return
            await asyncio.sleep(0.2)


def _address(cluster: RedisCluster, key: str) -> tuple[str, int]:
    """Where the client sends `key` now."""
    node = cluster.get_node_from_key(key)
    assert node is not None
    return node.host, int(node.port)


async def _owner(cluster: RedisCluster, key: str) -> tuple[Node, Node]:
    """The primary serving `key`'s slot, and its replica, as the cluster sees them now."""
    address = _address(cluster, key)
    async with contextlib.aclosing(Redis(host=address[0], port=address[1])) as admin:
        nodes = await _nodes(admin)
    primary = next(n for n in nodes if (n.host, n.port) == address)
    replica = next(n for n in nodes if n.primary_id == primary.node_id)
    return primary, replica


async def _cached_scripts(node: Node) -> int:
    async with contextlib.aclosing(node.client()) as client:
        return int((await client.info("memory"))["number_of_cached_scripts"])


async def _take_over(replica: Node) -> None:
    """A manual failover: the replica, once in sync with its primary, takes over its slots; nothing
    is lost. Redis gives up a manual failover after 5 s (its primary may not know this replica yet
    right after a previous failover): it is asked again until it takes."""
    async with contextlib.aclosing(replica.client()) as client, asyncio.timeout(3 * _SETTLE_S):
        while (await _command(client, "ROLE"))[0] != b"master":
            if (await client.info("replication"))["master_link_status"] != "up":
                await asyncio.sleep(0.1)
                continue
            await _command(client, "CLUSTER", "FAILOVER")
            for _ in range(60):
                if (await _command(client, "ROLE"))[0] == b"master":
                    return
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _failed_over(primary: Node, replica: Node) -> AsyncIterator[None]:
    """The replica takes over its primary's slots, and hands them back afterwards, so that the
    topology ends as it began."""
    await _take_over(replica)
    await _agreed(replica)
    try:
        yield
    finally:
        await _take_over(primary)
        await _agreed(primary)


async def _player_in(store: RedisGameStore, q: QuizDefinition, *players: str) -> None:
    for player in players:
        assert await store.add_player(q.quiz_id, player, player) is not None


@pytest.fixture
async def redis() -> AsyncIterator[RedisCluster]:
    require_cluster()
    redis = real_redis()
    assert isinstance(redis, RedisCluster)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_a_failover_moves_a_quiz_to_the_promoted_replica_and_its_reservations_hold(redis: RedisCluster) -> None:
    store = RedisGameStore(redis)
    q = await started(store)
    await _player_in(store, q, "p1", "p2")
    [first] = await store.claim_answers([claim(q, "p1")], ME)
    assert isinstance(first, Fresh)
    primary, replica = await _owner(redis, f"qz:{{{q.quiz_id}}}")
    # Scripts are not replicated, so a replica that never served as primary has none (this one
    # may have, in an earlier test: it starts afresh).
    async with contextlib.aclosing(replica.client()) as client:
        await client.script_flush()
    async with _failed_over(primary, replica):
        assert await _cached_scripts(replica) == 0
        # The client still sends to the old primary, now a replica: MOVED, then the new primary.
        again, second = await store.claim_answers([claim(q, "p1"), claim(q, "p2")], ME)
        # p1's reservation survived the failover: still in progress (judged by nobody yet), so a
        # repeat is refused as retryable, not reserved a second time.
        assert again == AnswerRefusal.UNAVAILABLE
        assert isinstance(second, Fresh)
        state = await store.state(q.quiz_id)
        assert state is not None and state.participant_count == 2
        assert await _cached_scripts(replica) > 0


async def test_a_quiz_whose_slot_migrates_to_another_primary_is_found_there(redis: RedisCluster) -> None:
    game = RedisGameStore(redis)
    rankings = RedisLeaderboardStore(redis, ttl_s=600)
    q = await started(game)
    await _player_in(game, q, "p1")
    await rankings.apply([PlayerJoined(q.quiz_id, "p1", "Ada", 0)])
    slot = redis.keyslot(f"qz:{{{q.quiz_id}}}")
    assert slot == redis.keyslot(f"lb:{{{q.quiz_id}}}")
    source, _ = await _owner(redis, f"qz:{{{q.quiz_id}}}")
    async with contextlib.aclosing(source.client()) as admin:
        target = next(n for n in await _nodes(admin) if n.primary_id == "-" and n.node_id != source.node_id)
    await _migrate(slot, source, target)
    try:
        # The client's slot map still names the source, which answers MOVED.
        [outcome] = await game.claim_answers([claim(q, "p1")], ME)
        assert isinstance(outcome, Fresh)
        changed = await rankings.apply([AnswerScored(q.quiz_id, "p1", 0, 900, 1_000, 2_000)])
        assert changed == {q.quiz_id}
        page = await rankings.top(q.quiz_id, 10, "p1")
        assert [(e.player_id, e.score) for e in page.top] == [("p1", 900)]
        assert _address(redis, f"qz:{{{q.quiz_id}}}") == (target.host, target.port)
    finally:
        await _migrate(slot, target, source)


async def _migrate(slot: int, source: Node, target: Node) -> None:
    """Moves one slot with its keys, as `redis-cli --cluster reshard` does, and tells every primary."""
    async with (
        contextlib.aclosing(source.client()) as src,
        contextlib.aclosing(target.client()) as dst,
    ):
        await _command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        await _command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := await _command(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            await _command(src, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for client in (dst, src):
            await _command(client, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for node in await _nodes(src):
            if node.primary_id == "-" and node.node_id not in (source.node_id, target.node_id):
                async with contextlib.aclosing(node.client()) as other:
                    await _command(other, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
