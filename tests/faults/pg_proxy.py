"""PostgreSQL proxies for fault tests, holding back chosen replies of the server so a test can stop a
client (persistence_svc) at a precise step of its transaction, without a hook in the client.

- `CommitHoldingProxy` holds back the reply to the first COMMIT of a transaction that inserted rows:
  the transaction is committed on the server when PostgreSQL sends `CommandComplete("COMMIT")`, and the
  client, which never learns it, can be killed before whatever it does next (persistence_svc: committing
  its Kafka offsets). From that reply on it forwards nothing more on that connection.
- `InsertHoldingProxy`, once told to `hold()`, holds back the reply to every INSERT that inserted rows
  until `release()`: those transactions stay open and their rows invisible, so the client's writes
  stall while other connections (its reads) go on.

Each forwards everything else message by message. The client must not ask for TLS (`sslmode=disable`
in its DSN): the proxy reads the protocol's messages, so it must see them in the clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Final
from urllib.parse import urlsplit

_HEADER: Final = struct.Struct("!cI")  # message type, then length (counting itself, not the type byte)
_COMMAND_COMPLETE: Final = b"C"


class _ReplyHoldingProxy:
    """Listens on 127.0.0.1 and forwards to PostgreSQL; subclasses decide which replies wait."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Starts listening; returns the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def proxied_dsn(self, dsn: str) -> str:
        """Starts listening; returns `dsn` pointed at the proxy."""
        target = urlsplit(dsn)
        credentials = target.netloc.rpartition("@")[0]
        return target._replace(netloc=f"{credentials}@127.0.0.1:{await self.start()}", query="sslmode=disable").geturl()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        pumps = [
            asyncio.create_task(_copy(client_reader, server_writer)),
            asyncio.create_task(self._replies(server_reader, client_writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _replies(self, server: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            inserted = 0  # rows the connection's current transaction inserted, from its INSERT tags
            while True:
                header = await server.readexactly(_HEADER.size)
                kind, length = _HEADER.unpack(header)
                body = await server.readexactly(length - 4)
                if kind == _COMMAND_COMPLETE:
                    tag = body.rstrip(b"\0").decode()
                    if tag.startswith("INSERT "):
                        rows = int(tag.rsplit(" ", 1)[1])
                        inserted += rows
                        await self._before_insert_reply(rows)
                    elif tag in ("COMMIT", "ROLLBACK"):
                        if tag == "COMMIT" and inserted:
                            await self._before_commit_reply(inserted)
                        inserted = 0
                client.write(header + body)
                await client.drain()

    async def _before_insert_reply(self, rows: int) -> None:
        return None

    async def _before_commit_reply(self, inserted: int) -> None:
        return None


class CommitHoldingProxy(_ReplyHoldingProxy):
    """`held` resolves, with the rows the transaction inserted, once a COMMIT's reply is held back."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.held: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def _before_commit_reply(self, inserted: int) -> None:
        if not self.held.done():
            self.held.set_result(inserted)
            await asyncio.Event().wait()  # the reply never leaves; the test kills the client


class InsertHoldingProxy(_ReplyHoldingProxy):
    """`held` resolves once an INSERT's reply is held back after `hold()`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._holding = False
        self._released = asyncio.Event()

    def hold(self) -> None:
        self._holding = True
        self._released.clear()

    def release(self) -> None:
        self._holding = False
        self._released.set()

    async def _before_insert_reply(self, rows: int) -> None:
        if self._holding and rows:
            if not self.held.done():
                self.held.set_result(None)
            await self._released.wait()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
