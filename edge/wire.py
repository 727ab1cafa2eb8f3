"""The edge's WebSocket wire layer: the frames it writes itself, and how it writes them.

Server-to-client text frames are built here and written straight to the socket's transport, by the
fan-out for pushed messages and by a session for its replies: aiohttp's writer costs several times as
much per frame (≈ 9% of the edge's CPU in the pipeline benchmark), and a pushed message is encoded once
for all its recipients. Only a socket that is closing, or whose client stopped reading, goes through
aiohttp's writer, which refuses the first and drains the second.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from aiohttp import WSMsgType, web

_TEXT_FIN: Final = 0x81
_PACK_LEN1: Final = struct.Struct("!BB").pack
_PACK_LEN2: Final = struct.Struct("!BBH").pack
_PACK_LEN3: Final = struct.Struct("!BBQ").pack


def _frame_header(length: int) -> bytes:
    if length < 126:
        return _PACK_LEN1(_TEXT_FIN, length)
    if length < 65536:
        return _PACK_LEN2(_TEXT_FIN, 126, length)
    return _PACK_LEN3(_TEXT_FIN, 127, length)


def text_frame(payload: bytes, suffix: bytes = b"") -> bytes:
    """A complete, unmasked, uncompressed server-to-client text frame carrying payload + suffix."""
    return b"".join((_frame_header(len(payload) + len(suffix)), payload, suffix))


def text_frames(prefix: bytes, suffixes: list[bytes]) -> list[bytes]:
    """The frames carrying prefix + each suffix, built together: a broadcast's personal frames. Their
    lengths almost always share the 16-bit header form, which is then packed without a call per frame."""
    base = len(prefix)
    lengths = [base + len(suffix) for suffix in suffixes]
    if lengths and min(lengths) >= 126 and max(lengths) < 65536:
        return [_PACK_LEN2(_TEXT_FIN, 126, n) + prefix + s for n, s in zip(lengths, suffixes, strict=True)]
    return [_frame_header(n) + prefix + s for n, s in zip(lengths, suffixes, strict=True)]


class Transport(Protocol):
    """The part of asyncio.Transport the edge writes its frames through."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...


async def send_text(ws: web.WebSocketResponse, transport: Transport, payload: bytes, max_buffered: int) -> None:
    """Sends one text frame: straight to the transport, or through aiohttp when the socket is closing or
    its client stopped reading (more than max_buffered bytes wait in its buffer)."""
    if ws.closed or transport.is_closing() or transport.get_write_buffer_size() > max_buffered:
        await ws.send_frame(payload, WSMsgType.TEXT)
        return
    transport.write(text_frame(payload))


class Framing(Protocol):
    """How one wire protocol carries a pushed message whose JSON is already encoded."""

    def enclosure(self, message_type: str) -> tuple[bytes, bytes]:
        """The constant bytes this protocol puts before and after the JSON of a message of this type."""
        ...


class _PlainJson:
    """The plain protocol: the message's JSON is the frame's payload."""

    def enclosure(self, message_type: str) -> tuple[bytes, bytes]:
        return b"", b""


PLAIN_JSON: Final[Framing] = _PlainJson()


class Pushed:
    """A pushed message encoded once; its frame for each wire protocol is built the first time it is needed."""

    __slots__ = ("_frames", "json", "message_type")

    def __init__(self, message_type: str, json: bytes) -> None:
        self.message_type = message_type
        self.json = json
        self._frames: dict[Framing, bytes] = {}

    def frame(self, framing: Framing) -> bytes:
        frame = self._frames.get(framing)
        if frame is None:
            opening, closing = framing.enclosure(self.message_type)
            frame = self._frames[framing] = text_frame(opening + self.json, closing)
        return frame
