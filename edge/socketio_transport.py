"""Socket.IO clients at the edge: Engine.IO v4 and Socket.IO v5, websocket transport only.

The original design's clients speak Socket.IO, so the edge speaks it too, over the same handlers and the
same fan-out as the plain protocol; only the framing differs:

- A client event `42["join_quiz",{...}]` is dispatched exactly like the plain frame
  `{"type":"join_quiz",...}` (edge/routes.py), so validation and rules exist once.
- Its reply is the plain protocol's message, unchanged (`{"type":"joined",...}` or `{"type":"error",...}`):
  the acknowledgement `43<id>[reply]` when the client asked for one, else an event named after the reply
  (`joined` → `user_joined_quiz` and `answer_result` → `answer_submitted`, the original design's names;
  every other reply and `error` keep their type as the event name).
- Pushed messages become events named after their type, `leaderboard_updated`, `quiz_state` and `kicked`,
  whose one argument is the plain message. The fan-out encodes each update's JSON once and wraps it in
  `42["<type>",` ... `]` once per update (SOCKETIO_EVENTS), exactly as it frames it for plain sockets:
  no per-socket emit, task or re-encoding (why python-socketio fans out 4-9x slower: docs/performance.md §1).

Only `GET /socket.io/?EIO=4&transport=websocket` is served: clients must set `transports=["websocket"]`.
Anything else gets HTTP 400 with engine.io's JSON error body, e.g. `{"code":0,"message":"Transport
unknown"}` for HTTP long-polling. Binary events (attachments) are refused with `binary_not_supported`,
and only the default namespace `/` exists.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from edge import protocol, routes
from edge.fanout import Fanout, Recipient
from edge.limits import ConnectionLimits
from edge.protocol import ClientError
from edge.session import Session
from edge.settings import Settings
from edge.upstream import Upstream
from edge.wire import Framing, Transport, text_frame

log = logging.getLogger(__name__)

PATH: Final = "/socket.io/"
PING_INTERVAL_MS: Final = 25_000
# A PONG is read between two requests of its socket, so this must outlast the slowest handler (its gRPC
# deadlines are 5 s).
PING_TIMEOUT_MS: Final = 20_000
MAX_ACK_ID_DIGITS: Final = 15

# The original design's event names for two replies; every other reply is an event named after its type.
REPLY_EVENTS: Final[Mapping[str, str]] = {"joined": "user_joined_quiz", "answer_result": "answer_submitted"}

_PING_FRAME: Final = text_frame(b"2")
_BINARY_NOT_SUPPORTED: Final = protocol.encode_error(
    ClientError("binary_not_supported", "send JSON events; binary attachments are not supported")
)


# --- the handshake ---

# engine.io's error codes and messages (its Server.errors / Server.errorMessages), so clients and
# proxies that know engine.io read these refusals as they would read engine.io's.
_UNKNOWN_TRANSPORT: Final = (0, "Transport unknown")
_UNKNOWN_SID: Final = (1, "Session ID unknown")
_BAD_REQUEST: Final = (3, "Bad request")
_UNSUPPORTED_PROTOCOL_VERSION: Final = (5, "Unsupported protocol version")


def handshake_refusal(request: web.BaseRequest) -> web.Response | None:
    """engine.io's HTTP 400 for a request this websocket-only server cannot take, or None to go on."""
    query = request.query
    if query.get("transport") != "websocket":
        refusal = _UNKNOWN_TRANSPORT  # HTTP long-polling included: clients must use transports=["websocket"]
    elif query.get("EIO") != "4":
        refusal = _UNSUPPORTED_PROTOCOL_VERSION
    elif "sid" in query:
        refusal = _UNKNOWN_SID  # an upgrade of a polling session, and there are none
    elif request.headers.get("Upgrade", "").lower() != "websocket":
        refusal = _BAD_REQUEST
    else:
        return None
    code, message = refusal
    return web.json_response({"code": code, "message": message}, status=400)


def open_packet(sid: str, max_payload: int) -> str:
    """Engine.IO's OPEN: no upgrades, since the session starts on its only transport."""
    handshake = {
        "sid": sid,
        "upgrades": [],
        "pingInterval": PING_INTERVAL_MS,
        "pingTimeout": PING_TIMEOUT_MS,
        "maxPayload": max_payload,
    }
    return "0" + orjson.dumps(handshake).decode()


# --- packets ---


class PacketType(IntEnum):
    """Socket.IO v5 packet types (the digit after Engine.IO's MESSAGE `4`)."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class BadPacket(Exception):
    """Not a Socket.IO v5 packet; like engine.io on a parse error, the edge closes the connection."""


@dataclass(frozen=True)
class Packet:
    type: PacketType
    namespace: str
    ack_id: int | None
    data: Any  # the decoded JSON after the header, or None


def parse_packet(text: str) -> Packet:
    """`<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, the text after Engine.IO's `4`."""
    if not text or text[0] not in "0123456":
        raise BadPacket(f"unknown packet type {text[:1]!r}")
    packet_type = PacketType(int(text[0]))
    at = 1
    if packet_type in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        dash = text.find("-", at)
        if dash < 0 or not text[at:dash].isdigit():
            raise BadPacket("a binary packet without its attachment count")
        at = dash + 1
    namespace = "/"
    if text.startswith("/", at):
        comma = text.find(",", at)
        end = len(text) if comma < 0 else comma
        namespace, at = text[at:end], end + 1
    digits_end = at
    while digits_end < len(text) and text[digits_end].isdigit():
        digits_end += 1
    if digits_end - at > MAX_ACK_ID_DIGITS:
        raise BadPacket("the acknowledgement id is too long")
    ack_id = int(text[at:digits_end]) if digits_end > at else None
    data = None
    if digits_end < len(text):
        try:
            data = orjson.loads(text[digits_end:])
        except orjson.JSONDecodeError:
            raise BadPacket("the packet's data is not JSON") from None
    return Packet(packet_type, namespace, ack_id, data)


class _SocketIOEvents:
    """`42["<type>",<message>]`: the plain message as the one argument of an event named after its type."""

    def __init__(self) -> None:
        self._openings: dict[str, bytes] = {}

    def enclosure(self, message_type: str) -> tuple[bytes, bytes]:
        opening = self._openings.get(message_type)
        if opening is None:  # message types are the fan-out's few constant names
            opening = self._openings[message_type] = b"42[%b," % orjson.dumps(message_type)
        return opening, b"]"


SOCKETIO_EVENTS: Final[Framing] = _SocketIOEvents()


def socketio_recipient(transport: Transport, quiz_id: str, *, player_id: str = "", is_host: bool = False) -> Recipient:
    """A fan-out recipient framed as Socket.IO events, as a Socket.IO session's seat makes one; for
    benchmarks that attach raw sockets to a Fanout without the handshake."""
    return Recipient(transport, quiz_id, player_id=player_id, is_host=is_host, framing=SOCKETIO_EVENTS)


# --- liveness ---


class Heartbeat:
    """Engine.IO's liveness check, driven by the server: a PING every interval, and a socket whose PONG has
    not come back within the timeout is cut. Timer callbacks on the loop, not a task per socket."""

    def __init__(self, transport: Transport, interval_s: float, timeout_s: float) -> None:
        self._transport = transport
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_pong = False

    def start(self) -> None:
        self._timer = self._loop.call_later(self._interval_s, self._ping)

    def _ping(self) -> None:
        if self._transport.is_closing():
            return
        self._transport.write(_PING_FRAME)
        self._awaiting_pong = True
        self._timer = self._loop.call_later(self._timeout_s, self._timed_out)

    def _timed_out(self) -> None:
        log.info("cutting off a Socket.IO client that did not answer a ping within %.0f s", self._timeout_s)
        self._transport.abort()

    def pong(self) -> None:
        if not self._awaiting_pong:
            return  # an unsolicited PONG proves nothing new
        self._awaiting_pong = False
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


# --- a session ---


class SocketIOSession(Session):
    """A Session whose requests arrive as Socket.IO events and whose replies leave as ACKs or events."""

    framing = SOCKETIO_EVENTS

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: Transport,
        upstream: Upstream,
        fanout: Fanout,
        settings: Settings,
        heartbeat: Heartbeat,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(ws, transport, upstream, fanout, settings)
        self.heartbeat = heartbeat
        self.limits = limits
        self.connected = False  # to the default namespace
        # Requests are handled one at a time per socket, so the reply being sent is to this request.
        self._ack_id: int | None = None

    async def send(self, payload: bytes) -> None:
        """Sends the reply to the request at hand: as its ACK if it asked for one, else as an event."""
        ack_id, self._ack_id = self._ack_id, None
        if ack_id is not None:
            packet = b"43%d[%b]" % (ack_id, payload)
        else:
            # dispatch hands over the reply encoded; reading its type back is one small decode per request.
            reply_type = orjson.loads(payload)["type"]
            packet = b"42[%b,%b]" % (orjson.dumps(REPLY_EVENTS.get(reply_type, reply_type)), payload)
        await self.send_text(packet)

    async def receive(self, text: str) -> bool:
        """Handles one Engine.IO packet; returns False once the client has ended the session."""
        kind, body = text[:1], text[1:]
        if kind == "4":
            return await self._on_packet(parse_packet(body))
        if kind == "3":
            self.heartbeat.pong()
            return True
        if kind == "2":  # only Engine.IO v3 clients and upgrade probes ping; answering costs nothing
            await self.ws.send_str("3" + body)
            return True
        if kind == "6":  # NOOP
            return True
        if kind == "1":  # CLOSE
            return False
        raise BadPacket(f"unknown Engine.IO packet type {kind!r}")

    async def _on_packet(self, packet: Packet) -> bool:
        if packet.type == PacketType.CONNECT:
            await self._connect(packet)
        elif packet.type == PacketType.DISCONNECT:
            return packet.namespace != "/"
        elif packet.namespace != "/" or not self.connected:
            pass  # like Socket.IO servers, ignore packets for a namespace the client is not connected to
        elif packet.type == PacketType.EVENT:
            await self._on_event(packet)
        elif packet.type == PacketType.BINARY_EVENT:
            self._ack_id = packet.ack_id
            await self.send(_BINARY_NOT_SUPPORTED)
        elif packet.type == PacketType.CONNECT_ERROR:
            raise BadPacket("clients do not send CONNECT_ERROR")
        # ACK and BINARY_ACK answer server events that asked for one; this edge never asks.
        return True

    async def _connect(self, packet: Packet) -> None:
        if packet.namespace != "/":
            refusal = orjson.dumps({"message": "Invalid namespace"})
            await self.ws.send_frame(b"44%b,%b" % (packet.namespace.encode(), refusal), WSMsgType.TEXT)
            return
        self.connected = True
        await self.ws.send_frame(b"40%b" % orjson.dumps({"sid": secrets.token_urlsafe(15)}), WSMsgType.TEXT)

    async def _on_event(self, packet: Packet) -> None:
        data = packet.data
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise BadPacket("an EVENT's data must be a list that starts with the event's name")
        name, arguments = data[0], data[1:]
        fields = arguments[0] if arguments else {}
        self._ack_id = packet.ack_id
        try:
            if isinstance(fields, dict):
                # The same frame a plain client would send, through the same parser and handlers.
                await routes.dispatch(self, orjson.dumps({**fields, "type": name}), self.limits)
            else:
                error = ClientError("invalid_message", "an event's argument must be a JSON object of its fields")
                await self.send(protocol.encode_error(error))
        finally:
            self._ack_id = None


async def serve(
    request: web.Request,
    settings: Settings,
    upstream: Upstream,
    fanout: Fanout,
    sockets: set[web.WebSocketResponse],
    limits: ConnectionLimits,
) -> web.StreamResponse:
    """Runs one Socket.IO connection whose handshake request was checked (handshake_refusal) and admitted."""
    # Engine.IO's PING/PONG is the heartbeat here, so aiohttp's own WebSocket pings stay off.
    ws = web.WebSocketResponse(max_msg_size=settings.aiohttp_max_msg_size, compress=False)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client went away during the handshake
        return ws
    heartbeat = Heartbeat(transport, PING_INTERVAL_MS / 1000, PING_TIMEOUT_MS / 1000)
    session = SocketIOSession(ws, transport, upstream, fanout, settings, heartbeat, limits)
    sockets.add(ws)
    close_code, reason = WSCloseCode.OK, b""
    try:
        await ws.send_str(open_packet(secrets.token_urlsafe(15), settings.max_frame_bytes))
        heartbeat.start()
        async for message in ws:
            # Binary frames could only be attachments of binary events, which are refused as they arrive.
            if message.type == WSMsgType.TEXT and not await session.receive(message.data):
                break
    except BadPacket as exc:
        log.info("closing a Socket.IO connection: %s", exc)
        close_code, reason = WSCloseCode.PROTOCOL_ERROR, b"not a Socket.IO v5 / Engine.IO v4 packet"
    except ConnectionResetError:
        pass  # the client left while we were replying
    finally:
        heartbeat.stop()  # before closing: no PING may follow the close frame
        session.leave_seat()
        sockets.discard(ws)
    await ws.close(code=close_code, message=reason)  # does nothing if the client closed first
    return ws
