"""A python-socketio server doing what the original design's quiz service would: a room broadcast.

`python -m bench.sio_server PORT`. Clients that connect join room "quiz". POST /broadcast with
`{"payload": {...}, "count": K}` emits K `leaderboard_updated` events to the room back to back, the
payload's "version" counting up from its given value, as `await sio.emit(..., room=...)` does it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import socketio
from aiohttp import web

from quizmesh.garbage_collector import tune_garbage_collector
from quizmesh.process import ProcessSettings

ROOM = "quiz"


def create_app() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    background: set[asyncio.Task[None]] = set()

    async def connect(sid: str, environ: Any) -> None:
        await sio.enter_room(sid, ROOM)

    sio.on("connect", connect)

    async def emit_all(payload: dict[str, Any], count: int) -> None:
        first = int(payload.get("version", 0))
        for n in range(count):
            await sio.emit("leaderboard_updated", {**payload, "version": first + n}, room=ROOM)

    async def broadcast(request: web.Request) -> web.Response:
        body = await request.json()
        task = asyncio.create_task(emit_all(body["payload"], int(body.get("count", 1))))
        background.add(task)
        task.add_done_callback(background.discard)
        return web.json_response({"ok": True})

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    import uvloop

    # The same collector setting as the edge's, so the comparison is between the two servers, not GC settings.
    tune_garbage_collector(ProcessSettings.from_env(os.environ).gc_gen0_threshold)
    port = int(sys.argv[1])
    web.run_app(create_app(), host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
