"""The aiohttp application: the WebSocket endpoint, the player and host pages, the results export, health
and readiness, and its resources' lifetimes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from edge import media, protocol, quiz_upload, results, routes, socketio_transport
from edge.fanout import Fanout
from edge.forwarded import client_address
from edge.limits import Limiter, RateLimits
from edge.protocol import ClientError
from edge.session import Session
from edge.settings import Settings
from edge.upstream import Upstream

SETTINGS_KEY = web.AppKey("settings", Settings)
UPSTREAM_KEY = web.AppKey("upstream", Upstream)
FANOUT_KEY = web.AppKey("fanout", Fanout)
SOCKETS_KEY = web.AppKey[set[web.WebSocketResponse]]("sockets")
SHUTTING_DOWN_KEY = web.AppKey("shutting_down", list[bool])
DRAINING_KEY = web.AppKey("draining", list[bool])
LIMITER_KEY = web.AppKey("limiter", Limiter)

WEB_DIR: Final = Path(__file__).parent / "web"
# The pages load only their own files and talk only to this edge, so injected markup could run nothing.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
}

_BINARY_NOT_SUPPORTED = protocol.encode_error(
    ClientError("binary_not_supported", "send JSON text frames; binary frames are not supported")
)


def create_app(settings: Settings, upstream: Upstream) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[LIMITER_KEY] = Limiter(RateLimits(settings.messages_per_s, settings.messages_burst, settings.joins_per_min))
    app[UPSTREAM_KEY] = upstream
    app[SOCKETS_KEY] = set()
    app[SHUTTING_DOWN_KEY] = [False]
    app[DRAINING_KEY] = [False]
    app.cleanup_ctx.append(_upstream_lifetime)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", _websocket)
    app.router.add_get(socketio_transport.PATH, _socketio)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/host", _page("host.html"))
    app.router.add_static("/static", WEB_DIR)
    app.router.add_get("/quizzes/{quiz_id}/results.csv", results.csv_handler(upstream))
    app.router.add_get("/api/v1/users/me/results", results.history_handler(upstream))
    app.router.add_post("/quizzes/{quiz_id}/sessions", results.session_handler(upstream))
    app.router.add_post("/quizzes", quiz_upload.create_handler(upstream))
    app.router.add_post("/quizzes/import", quiz_upload.import_handler(upstream))
    app.router.add_get(media.ROUTE, media.handler(media.MediaCache(upstream.get_media, settings.media_cache_bytes)))
    return app


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / name, headers=_PAGE_HEADERS)

    return page


async def _upstream_lifetime(app: web.Application) -> AsyncIterator[None]:
    settings, upstream = app[SETTINGS_KEY], app[UPSTREAM_KEY]
    await upstream.open()
    app[FANOUT_KEY] = Fanout(
        upstream,
        top_n=settings.leaderboard_top_n,
        max_buffered_bytes=settings.max_buffered_bytes,
        broadcast_slice=settings.broadcast_slice,
        telemetry=upstream.telemetry,
    )
    yield
    await app[FANOUT_KEY].close()
    await upstream.close(settings.shutdown_grace_s)


def start_draining(app: web.Application) -> None:
    """From now on /readyz says 503, so load balancers stop sending new clients; sockets stay open."""
    app[DRAINING_KEY][0] = True


def _client_address(request: web.Request) -> str | None:
    hops = request.app[SETTINGS_KEY].trusted_proxy_hops
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), hops)


async def _close_sockets(app: web.Application) -> None:
    """Tells every client the edge is restarting (1012), so they reconnect to another instance."""
    app[SHUTTING_DOWN_KEY][0] = True
    sockets: set[web.WebSocketResponse] = app[SOCKETS_KEY]
    await asyncio.gather(
        *(
            ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"service restart: reconnect elsewhere")
            for ws in list(sockets)
        ),
        return_exceptions=True,
    )


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """No Origin (a non-browser client) or a same-host page is fine unless an allow-list is set."""
    if origin is None:
        return not allowed
    normalized = origin.strip().rstrip("/").lower()
    if allowed:
        return normalized in allowed
    return host is not None and urlsplit(normalized).netloc == host.lower()


def _admit(request: web.Request) -> None:
    """Refuses a WebSocket, of either protocol, from a foreign page or while the edge shuts down."""
    if not origin_allowed(request.headers.get("Origin"), request.host, request.app[SETTINGS_KEY].allowed_origins):
        raise web.HTTPForbidden(text="this Origin may not open a WebSocket here")
    if request.app[SHUTTING_DOWN_KEY][0]:
        raise web.HTTPServiceUnavailable(text="the edge is shutting down; reconnect elsewhere")


async def _socketio(request: web.Request) -> web.StreamResponse:
    """Socket.IO clients (websocket transport only): the same admission, handlers and fan-out as /ws."""
    refusal = socketio_transport.handshake_refusal(request)
    if refusal is not None:
        return refusal
    _admit(request)
    app = request.app
    return await socketio_transport.serve(
        request,
        app[SETTINGS_KEY],
        app[UPSTREAM_KEY],
        app[FANOUT_KEY],
        app[SOCKETS_KEY],
        app[LIMITER_KEY].connection(_client_address(request)),
    )


async def _websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS_KEY]
    _admit(request)
    ws = web.WebSocketResponse(
        max_msg_size=settings.aiohttp_max_msg_size, compress=False, heartbeat=settings.heartbeat_s
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client went away during the handshake
        return ws
    session = Session(ws, transport, app[UPSTREAM_KEY], app[FANOUT_KEY], settings)
    limits = app[LIMITER_KEY].connection(_client_address(request))
    app[SOCKETS_KEY].add(ws)
    connections = session.telemetry.metrics.connections
    connections.add(1)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await routes.dispatch(session, message.data, limits)
            elif message.type == WSMsgType.BINARY:
                await session.send(_BINARY_NOT_SUPPORTED)
    except ConnectionResetError:
        pass  # the client left while we were replying
    finally:
        connections.add(-1)
        session.leave_seat()
        app[SOCKETS_KEY].discard(ws)
    return ws


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[SHUTTING_DOWN_KEY][0] or request.app[DRAINING_KEY][0]:
        return web.Response(status=503, text="shutting down")
    if not await request.app[UPSTREAM_KEY].ready():
        return web.Response(status=503, text="quiz or leaderboard service not serving")
    return web.Response(text="ready")
