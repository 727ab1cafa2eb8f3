"""quiz_svc's composition root: builds the adapters the engines name, serves gRPC, and runs the
deadline scheduler and the heartbeat-and-recovery loop until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from quiz_svc.adapters.cached_repo import CachedQuizRepository
from quiz_svc.adapters.game_events import BusGameEvents
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.persistence_results import PersistenceResults
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.grpc_api import BATCH_SUBMIT_ANSWERS, SERVICE_NAME, STREAM_ANSWERS, QuizServicer
from quiz_svc.ports import GameStore, InstanceRegistry, QuizRepository
from quiz_svc.service import QuizGame, SystemClock, Timeouts
from quiz_svc.settings import Settings
from quizmesh.auth import Credentials
from quizmesh.grpc_server import ServiceBinding
from quizmesh.identity import Identities
from quizmesh.quiz.v1 import quiz_service_pb2_grpc
from quizmesh.runtime import Runtime

log = logging.getLogger(__name__)


async def open_repository(runtime: Runtime) -> QuizRepository:
    engines = runtime.engines
    if engines.database == "postgres":
        from quiz_svc.adapters.postgres_repo import PostgresQuizRepository

        return await PostgresQuizRepository.connect(
            engines.postgres_dsn, statement_cache_size=engines.postgres_statement_cache
        )
    from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository

    return await SqliteQuizRepository.open(engines.sqlite_file("quizzes"))


async def _schedule_deadlines(game: QuizGame, tick_s: float, stop: asyncio.Event) -> None:
    """One loop per process closes every quiz's expired question: no timer or task per quiz."""
    while not stop.is_set():
        try:
            await game.close_due_questions()
        except Exception:
            log.exception("closing due questions failed; retrying next tick")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)


# This process's own unfinished work (answers whose publication failed, say) waits this many heartbeats
# before the recovery comes back to it: the player's retry usually comes first, and gets its verdict.
_OWN_WORK_EVERY = 4


async def _keep_alive(game: QuizGame, tick_s: float, stop: asyncio.Event) -> None:
    """Renews this process's heartbeat every tick, and hands the dead processes it learns of to the
    recovery, which runs beside it: a long recovery must not delay the heartbeat, or this process would
    be taken for dead in turn."""
    found: asyncio.Queue[tuple[str, ...]] = asyncio.Queue(maxsize=1)
    recovering = asyncio.create_task(_recover(game, found, stop), name="quiz-svc-recovery")
    try:
        while not stop.is_set():
            try:
                dead = await game.heartbeat()
            except Exception as exc:
                log.warning("heartbeat failed; retrying next tick: %r", exc)
            else:
                with contextlib.suppress(asyncio.QueueFull):
                    found.put_nowait(dead)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
    finally:
        recovering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovering


async def _recover(game: QuizGame, found: asyncio.Queue[tuple[str, ...]], stop: asyncio.Event) -> None:
    beats = 0
    while not stop.is_set():
        dead = await found.get()
        beats += 1
        try:
            await game.recover_dead(dead)
            if beats % _OWN_WORK_EVERY == 0:
                await game.settle_unfinished()
        except Exception:
            log.exception("recovery failed; retrying next heartbeat")


async def run(
    runtime: Runtime, settings: Settings, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None
) -> None:
    # Every resource is closed however far start-up got, in reverse order of opening.
    async with contextlib.AsyncExitStack() as resources:
        redis = runtime.redis() if runtime.engines.state == "redis" else None
        store: GameStore
        instances: InstanceRegistry
        if redis is not None:
            from quiz_svc.adapters.redis_game import RedisGameStore
            from quiz_svc.adapters.redis_instances import RedisInstanceRegistry

            resources.push_async_callback(redis.aclose)
            store = RedisGameStore(redis, runtime.replica_acks())
            instances = RedisInstanceRegistry(redis)
        else:
            store = InMemoryGameStore()
            instances = InMemoryInstanceRegistry()
        await runtime.check_credentials(redis)
        clock = SystemClock()
        repository = CachedQuizRepository(await open_repository(runtime), redis)
        resources.push_async_callback(repository.close)
        results = PersistenceResults(settings.persistence_address)
        resources.push_async_callback(results.close)
        channels = runtime.channels(redis)
        resources.push_async_callback(channels.close)
        publisher = runtime.publisher("quiz_svc")
        resources.push_async_callback(publisher.close)
        feed = ChannelUpdateFeed(channels, clock)
        game = QuizGame(
            repository,
            store,
            BusGameEvents(publisher),
            feed,
            Credentials(settings.signing_key),
            clock,
            results,
            instances,
            Timeouts(
                publish_s=settings.publish_timeout_ms / 1000,
                liveness_ttl_ms=settings.liveness_ttl_ms,
                receipt_grace_ms=settings.receipt_grace_ms,
            ),
            identities=Identities(settings.identity.verifier(), anonymous_allowed=settings.identity.anonymous_allowed),
        )
        log.info("quiz_svc instance %s", game.instance_id)
        # Popped in reverse: drain the replied answers' marks, then declare this process gone.
        resources.push_async_callback(game.retire)
        resources.push_async_callback(game.drain)
        servicer = QuizServicer(game, feed, clock, runtime.telemetry)
        server = runtime.grpc_server(
            settings.address,
            ServiceBinding(
                SERVICE_NAME,
                quiz_service_pb2_grpc.add_QuizServiceServicer_to_server,
                servicer,
                traced_by_servicer=(BATCH_SUBMIT_ANSWERS, STREAM_ANSWERS),
                on_stop=servicer.end_streams,
            ),
        )
        resources.push_async_callback(server.stop, settings.shutdown_grace_s)
        await repository.ensure_schema()
        if redis is not None:
            await asyncio.wait_for(redis.ping(), 5)
        # Alive before serving: until its first heartbeat a process knows no other living one, and would
        # take over their answers in progress.
        await game.heartbeat()
        await server.start()
        await server.ready(on_ready)
        log.info("quiz_svc serving on port %d", server.port)
        async with asyncio.TaskGroup() as loops:
            loops.create_task(_keep_alive(game, settings.heartbeat_ms / 1000, stop))
            loops.create_task(_schedule_deadlines(game, settings.scheduler_tick_ms / 1000, stop))
