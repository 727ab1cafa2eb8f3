"""Session.send_text: replies go straight to the transport unless aiohttp must refuse or drain them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSMsgType, web

from edge.fanout import Fanout
from edge.session import Session
from edge.settings import Settings
from edge.upstream import Upstream
from tests.edge.edge_fakes import RecordingTransport

MAX_BUFFERED = 1000


class RecordingSocket:
    """Stands in for aiohttp's WebSocketResponse: records the frames sent through aiohttp's writer."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[tuple[bytes, WSMsgType]] = []

    async def send_frame(self, payload: bytes, opcode: WSMsgType) -> None:
        self.sent.append((payload, opcode))


class NoFeed:
    def watch_quiz(self, quiz_id: str) -> Any:
        raise AssertionError("no watch expected")

    def watch_leaderboard(self, quiz_id: str) -> Any:
        raise AssertionError("no watch expected")


def session(socket: RecordingSocket, transport: RecordingTransport) -> Session:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        quiz_addr="127.0.0.1:1",
        leaderboard_addr="127.0.0.1:2",
        allowed_origins=frozenset(),
        max_buffered_bytes=MAX_BUFFERED,
    )
    fanout = Fanout(NoFeed(), top_n=10, max_buffered_bytes=MAX_BUFFERED)
    ws: web.WebSocketResponse = socket  # type: ignore[assignment]
    return Session(ws, transport, Upstream("127.0.0.1:1", "127.0.0.1:2"), fanout, settings)


async def test_a_reply_is_one_complete_frame_written_to_the_transport() -> None:
    socket, transport = RecordingSocket(), RecordingTransport()
    await session(socket, transport).send(b'{"type":"pong","id":"1"}')
    assert transport.messages() == [{"type": "pong", "id": "1"}]
    assert socket.sent == []


@pytest.mark.parametrize("state", ["socket closed", "transport closing", "buffer full"])
async def test_a_closing_or_backed_up_socket_goes_through_aiohttp(state: str) -> None:
    socket, transport = RecordingSocket(), RecordingTransport()
    socket.closed = state == "socket closed"
    transport.closing = state == "transport closing"
    transport.buffered = MAX_BUFFERED + 1 if state == "buffer full" else 0
    await session(socket, transport).send(b'{"type":"pong","id":"1"}')
    assert socket.sent == [(b'{"type":"pong","id":"1"}', WSMsgType.TEXT)]
    assert transport.data == b""
