"""Cluster scenario 6: client addresses through HAProxy, at the edges' production join limit.

Every player connects to HAProxy from an address of its own (any 127.x.y.z reaches loopback), and
HAProxy appends that address to X-Forwarded-For; the edges trust one hop. 1,000 players from 1,000
addresses are all admitted, joins from one address are limited, and X-Forwarded-For values a client
forges change nothing, all under QUIZMESH_EDGE_JOINS_PER_MIN=10 (the default).

The join limit is per edge process: an address may spend a bucket on each edge HAProxy sends it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.faults.harness import REPORT_DIR
from tests.support.client import EdgeClient, Message
from tests.support.infra import require_cluster
from tests.support.stack import Stack, process_stack

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow]

JOINS_PER_MIN = 10
PLAYERS = 1000
IN_FLIGHT = 50


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    require_cluster()
    async with process_stack(tmp_path / "logs", extra_env={"QUIZMESH_EDGE_JOINS_PER_MIN": str(JOINS_PER_MIN)}) as s:
        assert s.balancer is not None
        yield s


@contextlib.asynccontextmanager
async def _from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """HTTP and WebSockets whose TCP connections start at `address`."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as session:
        yield session


async def _quiz(stack: Stack) -> str:
    async with _from("127.0.0.1") as session:
        host = await EdgeClient.connect(session, stack.ws_url())
        question = {"text": "q", "choices": ["a", "b"], "correct_choices": [0], "time_limit_seconds": 60}
        created = await host.request("create_quiz", title="addresses", questions=[question])
        await host.close()
    assert created["type"] == "quiz_created", created
    return str(created["quiz"]["quiz_id"])


async def _join(
    stack: Stack, address: str, quiz_id: str, nickname: str, headers: Mapping[str, str] | None = None
) -> Message:
    async with _from(address) as session:
        ws = await session.ws_connect(stack.ws_url(), headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        client = EdgeClient(ws)
        try:
            return await client.request("join_quiz", quiz_id=quiz_id, nickname=nickname)
        finally:
            await client.close()


def _outcomes(replies: list[Message]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reply in replies:
        kind = str(reply["type"] if reply["type"] == "joined" else reply.get("code", reply["type"]))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _refilled(seconds: float) -> int:
    """Tokens a bucket regains in `seconds` (the limit refills continuously)."""
    return math.floor(seconds * JOINS_PER_MIN / 60)


async def test_client_addresses_through_the_load_balancer(stack: Stack) -> None:
    quiz_id = await _quiz(stack)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def player(n: int) -> Message:
        async with slots:
            return await _join(stack, f"127.1.{n // 250}.{n % 250 + 1}", quiz_id, f"p{n:04d}")

    started = time.monotonic()
    distinct = _outcomes(list(await asyncio.gather(*(player(n) for n in range(PLAYERS)))))
    distinct_s = time.monotonic() - started
    assert distinct == {"joined": PLAYERS}

    # One address, one socket (so one edge): its bucket admits 10, then refuses.
    started = time.monotonic()
    async with _from("127.2.0.1") as session:
        flooder = await EdgeClient.connect(session, stack.ws_url())
        one_socket = _outcomes(
            [await flooder.request("join_quiz", quiz_id=quiz_id, nickname=f"f{n}") for n in range(20)]
        )
        await flooder.close()
    refill = _refilled(time.monotonic() - started)
    assert JOINS_PER_MIN <= one_socket["joined"] <= JOINS_PER_MIN + refill
    assert one_socket["rate_limited"] == 20 - one_socket["joined"]

    # One address again, 30 sockets, each forging a different X-Forwarded-For: were the forged values
    # believed, all 30 would pass; read from HAProxy's entry, at most one bucket per edge does.
    started = time.monotonic()
    forged = _outcomes(
        [
            await _join(stack, "127.3.0.1", quiz_id, f"x{n}", {"X-Forwarded-For": f"198.51.100.{n + 1}"})
            for n in range(30)
        ]
    )
    refill = _refilled(time.monotonic() - started)
    edges = len(stack.direct_edge_urls)
    assert forged["joined"] <= edges * (JOINS_PER_MIN + refill)
    assert forged["rate_limited"] == 30 - forged["joined"]

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "cluster-6-client-addresses.json").write_text(
        json.dumps(
            {
                "joins_per_min": JOINS_PER_MIN,
                "edges": edges,
                "distinct_addresses": distinct,
                "distinct_addresses_s": round(distinct_s, 2),
                "one_address_one_socket": one_socket,
                "one_address_forged_xff_30_sockets": forged,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
