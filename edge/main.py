"""The edge's composition root: settings → upstream clients → aiohttp app → listening socket.

Of the runtime the edge uses only the process's telemetry: it holds no event bus or store of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from edge.app import create_app, start_draining
from edge.settings import HOST, PORT, Settings
from edge.telemetry import EdgeTelemetry
from edge.upstream import Upstream
from quizmesh.process import CannotStart
from quizmesh.runtime import Runtime

log = logging.getLogger(__name__)


def upstream_of(settings: Settings, telemetry: EdgeTelemetry | None = None) -> Upstream:
    """The edge's clients of the services, as its settings configure them."""
    return Upstream(
        settings.quiz_addr,
        settings.leaderboard_addr,
        persistence_addr=settings.persistence_addr,
        answer_batch_size=settings.answer_batch_size,
        answer_batch_linger_s=settings.answer_batch_linger_ms / 1000,
        answer_batches_in_flight=settings.answer_batches_in_flight,
        answer_streams=settings.answer_streams,
        answer_stream_max_age_s=settings.answer_stream_max_age_s,
        answer_deadline_s=settings.answer_deadline_s,
        call_deadline_s=settings.call_deadline_s,
        readiness_deadline_s=settings.readiness_deadline_s,
        telemetry=telemetry,
    )


async def run(
    runtime: Runtime, settings: Settings, stop: asyncio.Event, on_ready: Callable[[int], None] | None = None
) -> None:
    upstream = upstream_of(settings, EdgeTelemetry(runtime.telemetry))
    app = create_app(settings, upstream)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.shutdown_grace_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise CannotStart(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}. Stop the process that holds "
                f"the port, or set {PORT.name} (or {HOST.name})"
            ) from exc
        port = int(runner.addresses[0][1])
        log.info("edge listening on %s:%d", settings.host, port)
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
        if settings.drain_s > 0:
            start_draining(app)
            log.info("edge draining for %.1f s before closing its sockets", settings.drain_s)
            await asyncio.sleep(settings.drain_s)
    finally:
        # Closes sockets with 1012 (on_shutdown), then the fan-out and the upstream channels (cleanup_ctx).
        await runner.cleanup()
