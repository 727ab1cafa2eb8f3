"""persistence_svc's composition root: the result store, the sink loop and the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from persistence_svc.adapters.live_copies import LeaderboardServiceCopies, QuizServiceCopies
from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.adapters.sqlite import SqliteResultStore
from persistence_svc.catch_up import CatchUp
from persistence_svc.consumer import SINK_TOPICS, ResultSink, SinkTuning
from persistence_svc.grpc_api import PersistenceServicer
from persistence_svc.ports import ResultStore, StoreUnavailable
from persistence_svc.settings import Settings
from quizmesh.backoff import Backoff
from quizmesh.eventbus.ports import EventConsumer
from quizmesh.grpc_server import ServiceBinding
from quizmesh.identity import Identities
from quizmesh.persistence.v1 import persistence_service_pb2_grpc
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines

log = logging.getLogger(__name__)

SERVICE_NAME = "quizmesh.persistence.v1.PersistenceService"
_CLIENT_ID = "persistence_svc"
_CONSUMER_START_TIMEOUT_S = 30.0
_CONSUMER_CLOSE_TIMEOUT_S = 10.0
_CONNECT_RETRY_INITIAL_S = 0.2
_CONNECT_RETRY_MAX_S = 5.0


async def run(
    runtime: Runtime,
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serves until stop is set, then: NOT_SERVING, finish the batch in hand, drain calls, close."""
    async with contextlib.AsyncExitStack() as resources:
        await runtime.check_credentials()
        store = await _open_store(runtime.engines, settings, stop)
        if store is None:
            return
        resources.push_async_callback(store.close)

        consumer = runtime.consumer(
            settings.group, SINK_TOPICS, client_id=_CLIENT_ID, batch_wait_ms=settings.batch_wait_ms
        )
        await asyncio.wait_for(consumer.start(), _CONSUMER_START_TIMEOUT_S)
        resources.push_async_callback(_close_consumer, consumer)
        progress = runtime.group_progress(_CLIENT_ID)
        resources.push_async_callback(progress.close)

        live_copies = (QuizServiceCopies(settings.quiz_address), LeaderboardServiceCopies(settings.leaderboard_address))
        for copy in live_copies:
            resources.push_async_callback(copy.close)
        server = runtime.grpc_server(
            settings.address,
            ServiceBinding(
                SERVICE_NAME,
                persistence_service_pb2_grpc.add_PersistenceServiceServicer_to_server,
                PersistenceServicer(
                    store,
                    CatchUp(progress, settings.group),
                    Identities(settings.identity.verifier()),
                    settings.history_service_token,
                    live_copies,
                ),
            ),
        )
        await server.start()
        resources.push_async_callback(server.stop, settings.shutdown_grace_s)

        sink = ResultSink(
            consumer,
            store,
            SinkTuning(
                max_records=settings.batch_max_records,
                poll_timeout_s=settings.poll_timeout_ms / 1000,
            ),
        )
        await server.ready(on_ready)
        log.info("persistence_svc serving on port %d, consuming as group %r", server.port, settings.group)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(sink.run(stop))
            await stop.wait()
            await server.set_serving(False)


async def _open_store(engines: Engines, settings: Settings, stop: asyncio.Event) -> ResultStore | None:
    """The store, once the database is reachable and its schema checked; None if stopped first."""
    backoff = Backoff(_CONNECT_RETRY_INITIAL_S, _CONNECT_RETRY_MAX_S)
    while not stop.is_set():
        try:
            store = await _connect(engines, settings)
        except StoreUnavailable as exc:
            log.warning("results database unreachable, retrying in %.1fs: %s", backoff.delay_s, exc)
        else:
            try:
                await store.ensure_schema()
                return store
            except BaseException as exc:
                await store.close()
                if not isinstance(exc, StoreUnavailable):
                    raise
                log.warning("checking the results schema failed, retrying in %.1fs: %s", backoff.delay_s, exc)
        await backoff.wait(stop)
    return None


async def _connect(engines: Engines, settings: Settings) -> ResultStore:
    if engines.database == "postgres":
        return await PostgresResultStore.connect(
            engines.postgres_dsn,
            pool_size=settings.db_pool_size,
            command_timeout_s=settings.db_command_timeout_s,
            replica_dsn=engines.postgres_replica_dsn,
            replica_max_lag_ms=settings.replica_max_lag_ms,
            statement_cache_size=engines.postgres_statement_cache,
        )
    return await SqliteResultStore.open(engines.sqlite_file("results"))


async def _close_consumer(consumer: EventConsumer) -> None:
    try:
        await asyncio.wait_for(consumer.close(), _CONSUMER_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("the event consumer did not close within %.0fs", _CONSUMER_CLOSE_TIMEOUT_S)
