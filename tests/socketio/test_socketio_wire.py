"""The Socket.IO wire format at the edge: packet parsing, event framing in the shared fan-out (one encoding
per broadcast whatever the mix of protocols), the Engine.IO heartbeat, and a raw handshake over a socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from edge.fanout import Fanout, Recipient
from edge.socketio_transport import (
    SOCKETIO_EVENTS,
    BadPacket,
    Heartbeat,
    Packet,
    PacketType,
    parse_packet,
    socketio_recipient,
)
from edge.wire import Pushed
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from tests.edge.edge_fakes import RecordingTransport, board, frame_payloads
from tests.support.stack import Stack

QUIZ = "q-sio"
RANKING = [("p1", "Ann", 3000), ("p2", "Bob", 2000), ("p3", "Cy", 1000)]


def socketio_events(transport: RecordingTransport) -> list[tuple[str, Any]]:
    """Decodes frames written to a Socket.IO socket, each of which must be `42["name",arg]`."""
    events = []
    for payload in frame_payloads(bytes(transport.data)):
        assert payload.startswith(b"42["), payload[:20]
        name, argument = orjson.loads(payload[2:])
        events.append((name, argument))
    return events


def plain_messages(transport: RecordingTransport) -> list[Any]:
    return [orjson.loads(payload) for payload in frame_payloads(bytes(transport.data))]


# --- packets ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Packet(PacketType.CONNECT, "/", None, None)),
        ('0{"token":"t"}', Packet(PacketType.CONNECT, "/", None, {"token": "t"})),
        ("0/admin,", Packet(PacketType.CONNECT, "/admin", None, None)),
        ("1", Packet(PacketType.DISCONNECT, "/", None, None)),
        ('2["join_quiz",{"quiz_id":"Q"}]', Packet(PacketType.EVENT, "/", None, ["join_quiz", {"quiz_id": "Q"}])),
        ('213["ping"]', Packet(PacketType.EVENT, "/", 13, ["ping"])),
        ('2/admin,7["ping"]', Packet(PacketType.EVENT, "/admin", 7, ["ping"])),
        ("35[]", Packet(PacketType.ACK, "/", 5, [])),
        (
            '51-9["upload",{"_placeholder":true,"num":0}]',
            Packet(PacketType.BINARY_EVENT, "/", 9, ["upload", {"_placeholder": True, "num": 0}]),
        ),
    ],
)
def test_socketio_v5_packets_parse(text: str, expected: Packet) -> None:
    assert parse_packet(text) == expected


@pytest.mark.parametrize("text", ["", "9", "x", "2[not json", "5[]", "2" + "1" * 16 + "[]"])
def test_what_is_not_a_socketio_v5_packet_is_refused(text: str) -> None:
    with pytest.raises(BadPacket):
        parse_packet(text)


# --- framing in the fan-out ---


class SilentSource:
    """A source whose watches stay open and deliver nothing; the tests deliver by hand."""

    async def _hold(self) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield  # pragma: no cover - never reached

    def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        return self._hold()

    def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[leaderboard_pb2.Leaderboard]:
        return self._hold()


def lobby() -> quiz_pb2.QuizState:
    state = quiz_pb2.QuizState(quiz_id=QUIZ, phase=quiz_pb2.QUIZ_PHASE_LOBBY, leaderboard_visible=True)
    state.server_time.FromMilliseconds(1_000)
    return state


def counting_dumps(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records what orjson.dumps is asked to encode from now on."""
    encoded: list[Any] = []
    original: Callable[..., bytes] = orjson.dumps

    def dumps(value: Any, *args: Any, **kwargs: Any) -> bytes:
        encoded.append(value)
        return original(value, *args, **kwargs)

    monkeypatch.setattr(orjson, "dumps", dumps)
    return encoded


async def test_one_broadcast_to_plain_and_socketio_sockets_encodes_its_json_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = Fanout(SilentSource(), top_n=2, max_buffered_bytes=1 << 20)
    sockets: dict[tuple[str, str], RecordingTransport] = {}
    # Every player on two devices, one per protocol; two hosts and a late joiner of each protocol.
    for protocol_name in ("plain", "socketio"):
        for player_id in ("p1", "p2", "p3", "p-new"):
            transport = sockets[(protocol_name, player_id)] = RecordingTransport()
            if protocol_name == "plain":
                hub.attach(Recipient(transport, QUIZ, player_id=player_id), lobby())
            else:
                hub.attach(socketio_recipient(transport, QUIZ, player_id=player_id), lobby())
        for host in ("host-a", "host-b"):
            transport = sockets[(protocol_name, host)] = RecordingTransport()
            if protocol_name == "plain":
                hub.attach(Recipient(transport, QUIZ, is_host=True), lobby())
            else:
                hub.attach(socketio_recipient(transport, QUIZ, is_host=True), lobby())

    encoded = counting_dumps(monkeypatch)
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 3, RANKING))
    messages = [value for value in encoded if isinstance(value, dict)]  # not the event names, once per process
    assert len([message for message in messages if "top" in message]) == 1
    assert len(messages) == 1
    # The personal parts: each ranked player's ID and nickname encoded once per broadcast, not once per socket.
    personal = [value for value in encoded if isinstance(value, str) and value != "leaderboard_updated"]
    assert sorted(personal) == sorted(text for player_id, nickname, _ in RANKING for text in (player_id, nickname))

    for player_id in ("p1", "p2", "p3", "p-new", "host-a"):
        [plain] = plain_messages(sockets[("plain", player_id)])
        [(event, argument)] = socketio_events(sockets[("socketio", player_id)])
        assert event == "leaderboard_updated"
        assert argument == plain
    assert plain_messages(sockets[("plain", "p3")])[0]["ahead"]["player_id"] == "p2"
    # All Socket.IO hosts received the very same bytes: one frame per broadcast per protocol.
    assert sockets[("socketio", "host-a")].data == sockets[("socketio", "host-b")].data

    encoded.clear()
    opened = quiz_pb2.WatchQuizResponse(state=lobby())
    opened.state.phase = quiz_pb2.QUIZ_PHASE_QUESTION_OPEN
    opened.state.server_time.FromMilliseconds(2_000)
    hub.deliver_quiz_update(QUIZ, opened)
    assert len([value for value in encoded if isinstance(value, dict)]) == 1
    [(event, argument)] = socketio_events(sockets[("socketio", "p1")])[1:]
    assert event == "quiz_state" and argument == plain_messages(sockets[("plain", "p1")])[1]
    assert argument["state"]["phase"] == "question_open"
    await hub.close()


def test_a_socketio_event_carries_the_plain_message_as_its_one_argument() -> None:
    [payload] = frame_payloads(Pushed("kicked", b'{"type":"kicked","quiz_id":"Q"}').frame(SOCKETIO_EVENTS))
    assert payload == b'42["kicked",{"type":"kicked","quiz_id":"Q"}]'


# --- heartbeat ---


class SignallingTransport(RecordingTransport):
    """Wakes a waiting test whenever something is written or the connection is cut."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.changed.set()

    def abort(self) -> None:
        super().abort()
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 1) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_heartbeat_pings_every_interval_and_cuts_a_client_that_stops_answering() -> None:
    transport = SignallingTransport()

    def pinged(times: int) -> Callable[[], bool]:
        return lambda: frame_payloads(bytes(transport.data)).count(b"2") == times

    heartbeat = Heartbeat(transport, interval_s=0.02, timeout_s=0.05)
    heartbeat.start()
    try:
        for round_trip in range(1, 4):
            await transport.until(pinged(round_trip))
            heartbeat.pong()
        assert not transport.aborted
        await transport.until(lambda: transport.aborted)
        assert pinged(4)()
    finally:
        heartbeat.stop()


# --- the raw protocol over a real socket ---


async def test_raw_handshake_namespaces_events_acks_and_a_parse_error(stack: Stack) -> None:
    url = f"{stack.edge_urls[0]}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:

        async def receive() -> str:
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            return str(message.data)

        opened = await receive()
        assert opened[0] == "0"
        handshake = orjson.loads(opened[1:])
        assert handshake["upgrades"] == [] and len(handshake["sid"]) == 20
        assert (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]) == (25000, 20000, 65536)

        await ws.send_str('42["ping",{}]')  # before CONNECT: ignored, as Socket.IO servers do
        await ws.send_str("40/admin,")
        assert await receive() == '44/admin,{"message":"Invalid namespace"}'
        await ws.send_str("40")
        connected = await receive()
        assert connected.startswith("40") and len(orjson.loads(connected[2:])["sid"]) == 20

        await ws.send_str('42["ping",{}]')
        event = await receive()
        assert event.startswith('42["pong",')
        await ws.send_str('4217["get_state",{"quiz_id":"NOSUCHQZ"}]')
        ack = await receive()
        assert ack.startswith("4317[")
        assert orjson.loads(ack[4:])[0]["code"] == "quiz_not_found"

        await ws.send_str("4x")
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.PROTOCOL_ERROR


async def test_a_packet_of_max_payload_bytes_is_answered_and_one_byte_more_closes_with_1009(stack: Stack) -> None:
    url = f"{stack.edge_urls[0]}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        opened = await ws.receive(timeout=10)
        max_payload = orjson.loads(str(opened.data)[1:])["maxPayload"]
        await ws.send_str("40")
        assert str((await ws.receive(timeout=10)).data).startswith("40")

        def ping(size: int) -> str:
            packet = '42["ping",{"pad":""}]'
            return packet[:-3] + "x" * (size - len(packet)) + '"}]'

        for size in (max_payload - 1, max_payload):
            await ws.send_str(ping(size))
            reply = await ws.receive(timeout=10)
            assert reply.type == aiohttp.WSMsgType.TEXT and str(reply.data).startswith('42["pong",'), (size, reply)
        await ws.send_str(ping(max_payload + 1))
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
