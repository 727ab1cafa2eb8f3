"""A TCP proxy that a fault test puts between one quiz_svc process and Redis, to stop that process at a
precise step of its work with no hook in its code.

Armed with a Trigger naming one of quiz_svc's Lua scripts by its SHA, the proxy freezes a connection
that calls the script (EVALSHA carries the SHA in clear): either it holds the call back, so the step
never happens, or it forwards the call and holds Redis's reply back, so the step happened and the
process never learns it. The test then SIGKILLs the process, stopped exactly there. Everything else
passes through untouched. One trigger may arm the proxies of several processes: whichever meets the
call first is frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "quiz_svc" / "adapters"
_CHUNK = 65536


def script_sha(name: str) -> bytes:
    """The SHA1 by which quiz_svc calls one of its scripts (redis-py's register_script hashes the text)."""
    return hashlib.sha1((SCRIPTS / name).read_bytes()).hexdigest().encode()


class Hold(enum.Enum):
    CALL = "call"  # the script is not run
    REPLY = "reply"  # the script runs; its reply is held


class Trigger:
    """The script call to freeze: on the first proxy that meets it (`once`), or on each that meets it
    until disarmed. `frozen` receives every connection it froze."""

    def __init__(self, sha: bytes, hold: Hold, *, once: bool) -> None:
        self.sha, self.hold, self.once = sha, hold, once
        self.armed = True
        self.frozen: asyncio.Queue[Link] = asyncio.Queue()

    def disarm(self) -> None:
        self.armed = False


class Link:
    """One proxied connection, of the process with the given index."""

    def __init__(
        self,
        process: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.process = process
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.holding: Hold | None = None
        self.held_reply = bytearray()
        self.reply_arrived = asyncio.Event()

    def thaw(self) -> None:
        """Lets a held reply (and what follows) through: the process carries on as if nothing happened."""
        self.holding = None
        if self.held_reply:
            self.client_writer.write(bytes(self.held_reply))
            self.held_reply.clear()


class FreezingProxy:
    def __init__(self, process: int, upstream_host: str, upstream_port: int) -> None:
        self._process = process
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._trigger: Trigger | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def arm(self, trigger: Trigger) -> None:
        self._trigger = trigger

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        link = Link(self._process, (reader, writer), server)
        pumps = [asyncio.create_task(self._calls(link)), asyncio.create_task(self._replies(link))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (link.client_writer, link.server_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    async def _calls(self, link: Link) -> None:
        tail = b""
        while data := await link.client_reader.read(_CHUNK):
            trigger = self._trigger
            if trigger is not None and trigger.armed and trigger.sha in tail + data:
                # No await before this: the first proxy to meet the call disarms the others' trigger.
                trigger.armed = not trigger.once
                link.holding = trigger.hold
                if trigger.hold is Hold.CALL:
                    trigger.frozen.put_nowait(link)
                    # Forward nothing more; reading on only notices the process dying.
                    while await link.client_reader.read(_CHUNK):
                        pass
                    return
                link.server_writer.write(data)
                await link.server_writer.drain()
                trigger.frozen.put_nowait(link)
            elif link.holding is not Hold.CALL:
                link.server_writer.write(data)
                await link.server_writer.drain()
            tail = data[-64:]

    async def _replies(self, link: Link) -> None:
        while data := await link.server_reader.read(_CHUNK):
            if link.holding is Hold.REPLY:
                link.held_reply.extend(data)
                link.reply_arrived.set()
                continue
            link.client_writer.write(data)
            await link.client_writer.drain()
