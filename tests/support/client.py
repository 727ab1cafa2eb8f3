"""A WebSocket client of the edge's JSON protocol, for end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

Message = dict[str, Any]


class EdgeClient:
    """Sends requests and matches replies by id; keeps every pushed message for later assertions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[Message]] = {}
        self.pushed: list[Message] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.closed_with: int | None = None

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str) -> EdgeClient:
        return cls(await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)))

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message: Message = orjson.loads(frame.data)
            reply = self._replies.pop(str(message.get("id")), None) if "id" in message else None
            if reply is not None and not reply.done():
                reply.set_result(message)
            else:
                self.pushed.append(message)
                self._arrived.set()
        self.closed_with = self._ws.close_code
        self._arrived.set()

    async def request(self, message_type: str, *, timeout_s: float = 15, **fields: Any) -> Message:
        request_id = str(next(self._ids))
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        await self._ws.send_str(orjson.dumps({"type": message_type, "id": request_id, **fields}).decode())
        return await asyncio.wait_for(reply, timeout_s)

    async def send_raw(self, data: str) -> None:
        await self._ws.send_str(data)

    async def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float = 15) -> Message:
        """The first pushed message (already received or still to come) that satisfies predicate."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        seen = 0
        while True:
            for message in self.pushed[seen:]:
                if predicate(message):
                    return message
            seen = len(self.pushed)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._reader.done():
                raise TimeoutError(f"no matching message; last pushed: {self.pushed[-3:]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
