"""WebSocket hardening at the edge: origin allow-list, message size cap, rate limits, validation of
every client message, nickname sanitising. On the embedded stack, with the production limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.client import EdgeClient
from tests.support.stack import Stack, embedded_stack

ALLOWED_ORIGIN = "https://quiz.example"
PRODUCTION_LIMITS = {
    "QUIZMESH_EDGE_MESSAGES_PER_S": "20",
    "QUIZMESH_EDGE_MESSAGES_BURST": "40",
    "QUIZMESH_EDGE_JOINS_PER_MIN": "10",
}
QUESTION = {"text": "1 + 1?", "choices": ["2", "3"], "correct_choices": [0], "time_limit_seconds": 60}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with embedded_stack(tmp_path, PRODUCTION_LIMITS) as running:
        yield running


async def new_quiz(client: EdgeClient) -> str:
    created = await client.request("create_quiz", title="hardening", questions=[QUESTION])
    assert created["type"] == "quiz_created", created
    return str(created["quiz"]["quiz_id"])


async def test_only_allowed_origins_can_open_a_socket(tmp_path: Path) -> None:
    async with (
        embedded_stack(tmp_path, {"QUIZMESH_EDGE_ALLOWED_ORIGINS": ALLOWED_ORIGIN}) as stack,
        aiohttp.ClientSession() as session,
    ):
        for refused_origin in ("https://evil.example", "null", "https://quiz.example.evil.example"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(stack.ws_url(), headers={"Origin": refused_origin})
            assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(stack.ws_url(), headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        ws = await session.ws_connect(stack.ws_url(), headers={"Origin": ALLOWED_ORIGIN})
        await ws.close()


MAX_FRAME_BYTES = 64 * 1024  # docs/protocol.md: text frames of at most 64 KiB, counted in bytes of UTF-8


def ping_of(size: int, pad: str = "x") -> str:
    """A ping frame of exactly `size` bytes of UTF-8, padded with `pad` (one or two bytes each)."""
    frame = orjson.dumps({"type": "ping", "id": "1", "pad": ""}).decode()
    width = len(pad.encode())
    assert (size - len(frame)) % width == 0, "pick a size the pad fills exactly"
    return frame[:-2] + pad * ((size - len(frame)) // width) + '"}'


async def closed_as_too_big(ws: aiohttp.ClientWebSocketResponse) -> None:
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_a_frame_of_64_kib_is_answered_and_one_byte_more_closes_the_socket_with_1009(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(stack.ws_url())
        for size in (MAX_FRAME_BYTES - 1, MAX_FRAME_BYTES):
            await ws.send_str(ping_of(size))
            reply = await ws.receive(timeout=5)
            assert reply.type == aiohttp.WSMsgType.TEXT, (size, reply)
            assert orjson.loads(reply.data)["type"] == "pong"
        await ws.send_str(ping_of(MAX_FRAME_BYTES + 1))
        await closed_as_too_big(ws)


async def test_the_frame_limit_counts_bytes_not_characters(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(stack.ws_url())
        frame = ping_of(MAX_FRAME_BYTES + 1, pad="é")  # two bytes each: far fewer than 65,536 characters
        assert len(frame) < MAX_FRAME_BYTES
        await ws.send_str(frame)
        await closed_as_too_big(ws)


async def test_a_message_flood_is_refused_past_the_connection_limit(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(stack.ws_url())
        for n in range(100):
            await ws.send_str(orjson.dumps({"type": "ping", "id": n}).decode())
        replies = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(100)]
        pongs = sum(r["type"] == "pong" for r in replies)
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        assert 40 <= pongs <= 60, replies[:3]  # the burst, plus what refilled meanwhile
        assert len(limited) == 100 - pongs and all(r["retryable"] and r["id"] is not None for r in limited)
        await asyncio.sleep(1)
        await ws.send_str(orjson.dumps({"type": "ping", "id": "after"}).decode())
        assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "pong"
        await ws.close()


async def test_joins_from_one_address_are_limited(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        host = await EdgeClient.connect(session, stack.ws_url())
        quiz_id = await new_quiz(host)
        outcomes = []
        for n in range(12):
            client = await EdgeClient.connect(session, stack.ws_url())
            reply = await client.request("join_quiz", quiz_id=quiz_id, nickname=f"bot{n}")
            outcomes.append(reply.get("code", reply["type"]))
            await client.close()
        assert outcomes.count("joined") == 10, outcomes
        assert outcomes[10:] == ["rate_limited", "rate_limited"], outcomes
        await host.close()


@pytest.mark.parametrize(
    ("frame", "codes"),
    [
        ("{not json", {"malformed_json"}),
        ("[1, 2]", {"invalid_message"}),
        ('{"id": "1"}', {"invalid_message"}),
        ('{"type": "launch_missiles", "id": "1"}', {"unknown_type"}),
        ('{"type": "submit_answer", "id": "1"}', {"invalid_field"}),
        ('{"type": "submit_answer", "id": "1", "question_index": -1, "choice": 0}', {"invalid_field"}),
        ('{"type": "join_quiz", "id": "1", "quiz_id": "A", "nickname": 7}', {"invalid_field"}),
        ('{"type": "ping", "id": {"nested": true}}', {"invalid_field"}),
    ],
)
async def test_every_invalid_message_gets_a_coded_error_and_the_socket_stays_open(
    stack: Stack, frame: str, codes: set[str]
) -> None:
    async with aiohttp.ClientSession() as session:
        client = await EdgeClient.connect(session, stack.ws_url())
        await client.send_raw(frame)
        error = await client.wait_for(lambda m: m.get("type") == "error", timeout_s=5)
        assert error["code"] in codes, error
        assert (await client.request("ping"))["type"] == "pong"
        await client.close()


@pytest.mark.parametrize(
    ("nickname", "shown"),
    [
        ("  Ada \u202e\u200b\x07 ", "Ada"),  # bidi override, zero-width space, bell: removed
        ("Ｂｏｂ", "Bob"),  # NFKC: full-width letters become plain ones
        ("<b onclick=x>hi</b>", "<b onclick=x>hi</b>"),  # kept as text; clients render it as text
        ("\u200b\u200b", None),  # nothing visible
        ("x" * 25, None),  # too long
    ],
)
async def test_nicknames_are_sanitised(stack: Stack, nickname: str, shown: str | None) -> None:
    async with aiohttp.ClientSession() as session:
        client = await EdgeClient.connect(session, stack.ws_url())
        quiz_id = await new_quiz(client)
        reply: dict[str, Any] = await client.request("join_quiz", quiz_id=quiz_id, nickname=nickname)
        if shown is None:
            assert reply["type"] == "error", reply
        else:
            assert reply["type"] == "joined", reply
            assert reply["player"]["nickname"] == shown
        await client.close()
