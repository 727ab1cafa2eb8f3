"""10,000+ malformed, oversized and hostile frames against a running edge process: no crash, every
frame answered with a reply, an error frame or a close, and the edge's memory bounded.

Hypothesis generates the frames (valid envelopes with hostile field values, broken JSON, random
text and bytes, frames past the 64 KiB cap); the edge runs as its own process over the real
services, so its resident memory is measured alone.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.protocol import PARSERS
from tests.support.stack import process_stack

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

FRAMES = int(os.environ.get("QUIZMESH_FUZZ_FRAMES", "10000"))
MAX_MESSAGE = 64 * 1024  # the largest frame the edge accepts
RSS_GROWTH_LIMIT_KIB = 64 * 1024
PUSHED = frozenset({"quiz_state", "leaderboard_updated", "kicked"})  # updates, not replies to a frame

HOSTILE_TEXT = [
    "'; DROP TABLE answers; --",
    "<script>alert(1)</script>",
    "\u202e\u200b\x00\x07",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "A" * 5000,
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = ["quiz_id", "nickname", "player_token", "host_token", "question_index", "choice", "title",
               "questions", "visible", "player_id", "allow_late_join", "id"]  # fmt: skip
envelopes = st.builds(
    lambda kind, fields: json.dumps({**fields, "type": kind}),
    st.one_of(st.sampled_from(sorted(PARSERS)), st.text(max_size=20)),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6),
)
text_frames = st.one_of(
    envelopes,
    envelopes.map(lambda frame: frame[: len(frame) // 2]),  # cut short
    json_values.map(json.dumps),  # valid JSON, not an envelope
    st.text(max_size=200),
    st.sampled_from(HOSTILE_TEXT),
)
frames = st.one_of(
    text_frames.map(lambda text: ("text", text)),
    st.binary(max_size=64).map(lambda data: ("binary", data)),
    st.integers(min_value=MAX_MESSAGE + 1, max_value=MAX_MESSAGE + 4096).map(lambda n: ("text", "x" * n)),
)


def generate(count: int) -> list[tuple[str, Any]]:
    """At least `count` frames: Hypothesis draws a fifth of them (it is the slow part), and each draw
    also goes out cut short, doubled, as bytes and with a stray byte, which are hostile frames too."""
    drawn: list[tuple[str, Any]] = []

    @settings(max_examples=count // 5, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def draw(frame: tuple[str, Any]) -> None:
        _, data = frame
        text = data if isinstance(data, str) else data.decode(errors="replace")
        drawn.append(frame)
        variants = [text[: len(text) // 3], text + text, text + "\x00"]
        drawn.extend([("text", v) for v in variants] + [("binary", text.encode())])

    draw()
    return drawn


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


async def test_hostile_frames_never_crash_the_edge(tmp_path: Path) -> None:
    batches = [generate(FRAMES)]
    outcomes: Counter[str] = Counter()
    async with process_stack(tmp_path / "logs") as stack, aiohttp.ClientSession() as session:
        edge = stack.processes["edge"][0]
        ws = await session.ws_connect(stack.ws_url())
        await ws.send_str('{"type": "ping", "id": "warm"}')
        await ws.receive(timeout=5)
        rss_before = rss_kib(edge.pid)
        for kind, data in (frame for batch in batches for frame in batch):
            if ws.closed:
                ws = await session.ws_connect(stack.ws_url())
            if kind == "binary":
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
            outcomes[await _answer(ws)] += 1
        await ws.close()
        rss_after = rss_kib(edge.pid)
        assert edge.poll() is None, "the edge process exited"
        async with session.get(f"{stack.edge_urls[0]}/healthz") as health:
            assert health.status == 200
    log = (tmp_path / "logs" / "edge-0.log").read_text(errors="replace")
    sent = sum(outcomes.values())
    print(f"fuzz: {sent} frames, outcomes {dict(outcomes)}, edge RSS {rss_before} -> {rss_after} KiB")
    assert sent >= FRAMES
    assert outcomes["no answer"] == 0, outcomes
    assert outcomes["error:internal"] == 0, outcomes
    assert "Traceback" not in log
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, (rss_before, rss_after)


async def _answer(ws: aiohttp.ClientWebSocketResponse) -> str:
    """What the edge did with the frame just sent: its reply's type, its error's code, or a close."""
    while True:
        try:
            message = await ws.receive(timeout=5)
        except TimeoutError:
            return "no answer"
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return f"close:{ws.close_code}"
        if message.type != aiohttp.WSMsgType.TEXT:
            return f"unexpected:{message.type.name}"
        reply = orjson.loads(message.data)
        if reply.get("type") not in PUSHED:
            return f"error:{reply['code']}" if reply["type"] == "error" else str(reply["type"])
