"""quiz_svc's composition root: builds the adapters the engines name, serves gRPC, and runs the
deadline scheduler until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from quiz_svc.adapters.cached_repo import CachedQuizRepository
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.persistence_results import PersistenceResults
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.grpc_api import QuizServicer
from quiz_svc.ports import GameStore, QuizRepository
from quiz_svc.service import QuizGame, SystemClock, Timeouts
from quiz_svc.settings import Settings
from quizmesh.auth import Credentials
from quizmesh.grpc_server import GrpcServer, ServiceBinding
from quizmesh.quiz.v1 import quiz_service_pb2_grpc
from quizmesh.runtime import Runtime

log = logging.getLogger(__name__)
SERVICE_NAME = "quizmesh.quiz.v1.QuizService"


async def open_repository(runtime: Runtime) -> QuizRepository:
    engines = runtime.engines
    if engines.database == "postgres":
        from quiz_svc.adapters.postgres_repo import PostgresQuizRepository

        return await PostgresQuizRepository.connect(engines.postgres_dsn)
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


async def run(
    runtime: Runtime, settings: Settings, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None
) -> None:
    # Every resource is closed however far start-up got, in reverse order of opening.
    async with contextlib.AsyncExitStack() as resources:
        redis = runtime.redis() if runtime.engines.state == "redis" else None
        store: GameStore
        if redis is not None:
            from quiz_svc.adapters.redis_game import RedisGameStore

            resources.push_async_callback(redis.aclose)
            store = RedisGameStore(redis)
        else:
            store = InMemoryGameStore()
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
            publisher,
            feed,
            Credentials(settings.signing_key),
            clock,
            results,
            Timeouts(publish_s=settings.publish_timeout_ms / 1000),
        )
        resources.push_async_callback(game.drain)
        server = GrpcServer(
            settings.address,
            [
                ServiceBinding(
                    SERVICE_NAME,
                    quiz_service_pb2_grpc.add_QuizServiceServicer_to_server,
                    QuizServicer(game, feed, clock, runtime.telemetry),
                )
            ],
            interceptors=runtime.telemetry.grpc_server_interceptors(),
        )
        resources.push_async_callback(server.stop, settings.shutdown_grace_s)
        await repository.migrate()
        if redis is not None:
            await asyncio.wait_for(redis.ping(), 5)
        await server.start()
        await server.set_serving(True)
        log.info("quiz_svc serving on port %d", server.port)
        if on_ready is not None:
            on_ready(server.port)
        await _schedule_deadlines(game, settings.scheduler_tick_ms / 1000, stop)
