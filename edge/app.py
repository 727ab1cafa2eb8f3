"""The aiohttp application: the WebSocket endpoint, health and readiness, and its resources' lifetimes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from edge import protocol, routes
from edge.fanout import Fanout
from edge.protocol import ClientError
from edge.session import Session
from edge.settings import Settings
from edge.upstream import Upstream

SETTINGS_KEY = web.AppKey("settings", Settings)
UPSTREAM_KEY = web.AppKey("upstream", Upstream)
FANOUT_KEY = web.AppKey("fanout", Fanout)
SOCKETS_KEY = web.AppKey[set[web.WebSocketResponse]]("sockets")
SHUTTING_DOWN_KEY = web.AppKey("shutting_down", list[bool])

_BINARY_NOT_SUPPORTED = protocol.encode_error(
    ClientError("binary_not_supported", "send JSON text frames; binary frames are not supported")
)


def create_app(settings: Settings, upstream: Upstream) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[UPSTREAM_KEY] = upstream
    app[SOCKETS_KEY] = set()
    app[SHUTTING_DOWN_KEY] = [False]
    app.cleanup_ctx.append(_upstream_lifetime)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def _upstream_lifetime(app: web.Application) -> AsyncIterator[None]:
    settings, upstream = app[SETTINGS_KEY], app[UPSTREAM_KEY]
    await upstream.open()
    app[FANOUT_KEY] = Fanout(upstream, top_n=settings.leaderboard_top_n, max_buffered_bytes=settings.max_buffered_bytes)
    yield
    await app[FANOUT_KEY].close()
    await upstream.close(settings.shutdown_grace_s)


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


async def _websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS_KEY]
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.allowed_origins):
        raise web.HTTPForbidden(text="this Origin may not open a WebSocket here")
    if app[SHUTTING_DOWN_KEY][0]:
        raise web.HTTPServiceUnavailable(text="the edge is shutting down; reconnect elsewhere")
    ws = web.WebSocketResponse(max_msg_size=settings.max_msg_size, compress=False, heartbeat=settings.heartbeat_s)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client went away during the handshake
        return ws
    session = Session(ws, transport, app[UPSTREAM_KEY], app[FANOUT_KEY], settings)
    app[SOCKETS_KEY].add(ws)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await routes.dispatch(session, message.data)
            elif message.type == WSMsgType.BINARY:
                await session.send(_BINARY_NOT_SUPPORTED)
    except ConnectionResetError:
        pass  # the client left while we were replying
    finally:
        session.leave_seat()
        app[SOCKETS_KEY].discard(ws)
    return ws


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[SHUTTING_DOWN_KEY][0]:
        return web.Response(status=503, text="shutting down")
    if not await request.app[UPSTREAM_KEY].ready():
        return web.Response(status=503, text="quiz or leaderboard service not serving")
    return web.Response(text="ready")
