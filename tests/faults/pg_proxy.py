"""A PostgreSQL proxy for fault tests: it holds back the server's reply to the first COMMIT of a
transaction that inserted rows, so a test can kill the client between its database commit and
whatever it does next (persistence_svc: committing its Kafka offsets).

The transaction is committed on the server when PostgreSQL sends `CommandComplete("COMMIT")`; the
proxy forwards everything else message by message, and from that reply on forwards nothing more on
that connection. The client must not ask for TLS (`sslmode=disable` in its DSN): the proxy reads the
protocol's messages, so it must see them in the clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Final

_HEADER: Final = struct.Struct("!cI")  # message type, then length (counting itself, not the type byte)
_COMMAND_COMPLETE: Final = b"C"


class CommitHoldingProxy:
    """Listens on 127.0.0.1; `held` resolves, with the rows the transaction inserted, once a COMMIT's
    reply is being held back."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.held: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def start(self) -> int:
        """Starts listening; returns the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

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
            await self._forward_replies(server, client)

    async def _forward_replies(self, server: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        inserted = 0  # rows the current transaction inserted, from its INSERT tags
        while True:
            header = await server.readexactly(_HEADER.size)
            kind, length = _HEADER.unpack(header)
            body = await server.readexactly(length - 4)
            if kind == _COMMAND_COMPLETE:
                tag = body.rstrip(b"\0").decode()
                if tag.startswith("INSERT "):
                    inserted += int(tag.rsplit(" ", 1)[1])
                elif tag in ("COMMIT", "ROLLBACK"):
                    if tag == "COMMIT" and inserted and not self.held.done():
                        self.held.set_result(inserted)
                        await asyncio.Event().wait()  # the reply never leaves; the test kills the client
                    inserted = 0
            client.write(header + body)
            await client.drain()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
