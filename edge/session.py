"""One WebSocket connection: what it is (a player, a host, or nothing yet) and how to reply to it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from edge.fanout import Fanout, Recipient
from edge.protocol import HostCredential
from edge.settings import Settings
from edge.upstream import Upstream
from edge.wire import PLAIN_JSON, Framing, Transport, send_text
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2


@dataclass
class Seat:
    """The quiz a socket belongs to, with the credential that proves it."""

    quiz_id: str
    recipient: Recipient
    player_token: str = ""  # set for players
    host: HostCredential | None = None  # set for hosts
    # (question index, ms) of the last question this seat answered, and when its first attempt arrived.
    _receipt: tuple[int, int] | None = field(default=None, repr=False)

    def receipt_ms(self, question_index: int) -> int:
        """When this seat's answer to the question first reached the edge, on the edge's clock: stamped
        at the first attempt and kept for its retries."""
        if self._receipt is None or self._receipt[0] != question_index:
            self._receipt = (question_index, time.time_ns() // 1_000_000)
        return self._receipt[1]


class Session:
    # How the fan-out frames this socket's pushed messages; a Socket.IO session frames them as events.
    framing: Framing = PLAIN_JSON

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: Transport,
        upstream: Upstream,
        fanout: Fanout,
        settings: Settings,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.upstream = upstream
        self.fanout = fanout
        self.settings = settings
        self.telemetry = upstream.telemetry
        self.seat: Seat | None = None

    async def send(self, payload: bytes) -> None:
        await self.send_text(payload)

    async def send_text(self, payload: bytes) -> None:
        """Writes one text frame, as the fan-out does (`edge/wire.py`)."""
        await send_text(self.ws, self.transport, payload, self.settings.max_buffered_bytes)

    def take_player_seat(self, quiz_id: str, player_id: str, player_token: str) -> Seat:
        self.leave_seat()
        recipient = Recipient(self.transport, quiz_id, player_id=player_id, framing=self.framing)
        seat = self.seat = Seat(quiz_id, recipient, player_token=player_token)
        recipient.on_kicked = lambda: self._drop(seat)
        return seat

    def take_host_seat(self, quiz_id: str, host: HostCredential) -> Seat:
        self.leave_seat()
        recipient = Recipient(self.transport, quiz_id, is_host=True, framing=self.framing)
        seat = self.seat = Seat(quiz_id, recipient, host=host)
        return seat

    def attach(self, state: quiz_pb2.QuizState) -> None:
        """Starts this socket's updates; called once the reply that seated it has been sent."""
        if self.seat is not None:
            self.fanout.attach(self.seat.recipient, state)

    def leave_seat(self) -> None:
        if self.seat is not None:
            self.fanout.detach(self.seat.recipient)
            self.seat = None

    def _drop(self, seat: Seat) -> None:
        """The fan-out detached this seat (its player was kicked)."""
        if self.seat is seat:
            self.seat = None
