"""A python-socketio AsyncClient that keeps every event it receives, for assertions like EdgeClient's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import socketio

Event = tuple[str, Any]


class SocketIOPlayer:
    """The official python-socketio client, websocket transport only, recording events in arrival order."""

    def __init__(self, **client_options: Any) -> None:
        self.sio = socketio.AsyncClient(**client_options)
        self.events: list[Event] = []
        self.connects = 0
        self._arrived = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect", self._connected)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))
        self._arrived.set()

    async def _connected(self) -> None:
        self.connects += 1
        self._arrived.set()

    async def connect(self, base_url: str) -> None:
        await self.sio.connect(base_url, transports=["websocket"], wait_timeout=10)

    async def call(self, event: str, fields: dict[str, Any], timeout_s: float = 15) -> Any:
        """Emits with an acknowledgement and returns it: the plain protocol's reply message."""
        return await self.sio.call(event, fields, timeout=timeout_s)

    async def emit(self, event: str, fields: dict[str, Any]) -> None:
        await self.sio.emit(event, fields)

    async def wait_for(self, predicate: Callable[[str, Any], bool], timeout_s: float = 15) -> Any:
        """The data of the first event (already received or still to come) that satisfies predicate."""
        seen = 0
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for event, data in self.events[seen:]:
                        if predicate(event, data):
                            return data
                    seen = len(self.events)
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(f"no matching event in {timeout_s} s; the last ones: {self.events[-3:]}") from None

    async def wait_connected(self, times: int, timeout_s: float = 15) -> None:
        async with asyncio.timeout(timeout_s):
            while self.connects < times:
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.sio.shutdown()
