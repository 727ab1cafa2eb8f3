"""leaderboard_svc's composition root: builds the adapters, runs the loops, shuts down in order."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from leaderboard_svc.adapters.memory_store import MemoryLeaderboardStore
from leaderboard_svc.adapters.redis_store import RedisLeaderboardStore
from leaderboard_svc.domain import Coalescer
from leaderboard_svc.grpc_api import LeaderboardServicer
from leaderboard_svc.ports import LeaderboardStore, RankingHistory
from leaderboard_svc.projector import Projector
from leaderboard_svc.publisher import LeaderboardPublisher
from leaderboard_svc.rebuild import Rebuilder
from leaderboard_svc.relay import Relay
from leaderboard_svc.settings import Settings
from quizmesh.eventbus.ports import ANSWER_SUBMITTED, LEADERBOARD_UPDATED, USER_JOINED_QUIZ, USER_LEFT_QUIZ
from quizmesh.grpc_server import ServiceBinding
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc
from quizmesh.runtime import Runtime

log = logging.getLogger(__name__)

SERVICE_NAME = "quizmesh.leaderboard.v1.LeaderboardService"
STARTUP_DEADLINE_S = 30.0
SHUTDOWN_GRACE_S = 5.0
CLOSE_DEADLINE_S = 10.0


async def run(
    runtime: Runtime,
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    client_id = f"leaderboard_svc-{socket.gethostname()}"
    redis = runtime.redis() if runtime.engines.state == "redis" else None
    store: LeaderboardStore = (
        RedisLeaderboardStore(redis, ttl_s=settings.ranking_ttl_s, replica_acks=runtime.replica_acks())
        if redis is not None
        else MemoryLeaderboardStore()
    )
    consumer = runtime.consumer(
        settings.consumer_group,
        (USER_JOINED_QUIZ, ANSWER_SUBMITTED, USER_LEFT_QUIZ),
        client_id,
        batch_wait_ms=settings.batch_wait_ms,
    )
    publisher = runtime.publisher(client_id)
    tail_reader = runtime.tail_reader((LEADERBOARD_UPDATED,), client_id)
    relay = Relay(tail_reader)
    coalescer = Coalescer(settings.interval_ms)
    history = _history(settings, redis is not None)
    rebuilder = Rebuilder(store, history, coalescer) if history is not None else None
    traces = runtime.telemetry.record_traces("leaderboard_svc apply", remember_links=True)
    projector = Projector(consumer, store, coalescer, rebuilder, traces=traces)
    leaderboard_publisher = LeaderboardPublisher(store, publisher, coalescer, traces=traces)
    server = runtime.grpc_server(
        settings.address,
        ServiceBinding(
            SERVICE_NAME,
            leaderboard_service_pb2_grpc.add_LeaderboardServiceServicer_to_server,
            LeaderboardServicer(store, relay, rebuilder, coalescer),
        ),
    )

    stop_publishing = asyncio.Event()
    stop_relaying = asyncio.Event()
    stop_rebuilding = asyncio.Event()
    try:
        await server.start()
        async with asyncio.timeout(STARTUP_DEADLINE_S):
            await runtime.check_credentials(redis)
            await store.ping()
            await consumer.start()
            await relay.start()
        await server.ready(on_ready)
        log.info("leaderboard_svc serving on port %d", server.port)

        async with asyncio.TaskGroup() as tasks:
            projecting = tasks.create_task(projector.run(stop), name="projector")
            tasks.create_task(leaderboard_publisher.run(stop_publishing), name="leaderboard-publisher")
            tasks.create_task(relay.run(stop_relaying), name="relay")
            if rebuilder is not None:
                tasks.create_task(rebuilder.run(stop_rebuilding), name="rebuilder")
            await stop.wait()
            # Ordered: refuse new work, end the watches, drain unary calls; the projector stops on
            # its own (stop is set), then the publisher flushes what it applied last.
            await server.set_serving(False)
            relay.close()
            await server.stop(SHUTDOWN_GRACE_S)
            await projecting
            stop_rebuilding.set()
            stop_publishing.set()
            stop_relaying.set()
    finally:
        await server.stop(0)
        closers = [consumer.close, publisher.close, tail_reader.close]
        if history is not None:
            closers.append(history.close)
        if redis is not None:
            closers.append(redis.aclose)
        for close in closers:
            await _close_quietly(close)


def _history(settings: Settings, on_redis: bool) -> RankingHistory | None:
    """The durable history a Redis ranking is rebuilt from, read through PersistenceService. The
    in-memory store lives and dies with the process, so the embedded mode has nothing to rebuild."""
    if not on_redis:
        return None
    from leaderboard_svc.adapters.persistence_history import PersistenceRankingHistory

    return PersistenceRankingHistory(settings.persistence_address)


async def _close_quietly(close: Callable[[], Awaitable[None]]) -> None:
    """Closes one client within a deadline; a failure must not keep the others open."""
    try:
        async with asyncio.timeout(CLOSE_DEADLINE_S):
            await close()
    except Exception:
        log.exception("closing %r failed", close)
