"""Cluster scenario 4: one of the two edges is SIGKILLed with 1,000 players on it; every player
resumes with its credential through HAProxy, on the other edge, and keeps answering.

The players join on the first edge directly (so that all 1,000 are on it), then reconnect through
HAProxy, as a client does after its socket died: HAProxy finds the dead edge refusing connections,
sends them to the living one, and takes the dead one out of rotation at its next health checks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import pytest

from tests.faults.harness import GrpcGame, converge, write_report
from tests.faults.test_fault_scenarios import WsPlayers
from tests.support.infra import REAL, require_cluster
from tests.support.stack import process_stack, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(400)]

PLAYERS = int(os.environ.get("QUIZMESH_FAULT_EDGE_PLAYERS", "1000"))


async def test_every_player_of_a_killed_edge_resumes_on_the_other_through_the_balancer(tmp_path: Path) -> None:
    require_cluster()
    # limit=0: aiohttp's default pool of 100 connections would hold the 101st socket back forever.
    async with (
        process_stack(tmp_path / "logs") as stack,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        host = GrpcGame(stack.quiz_addrs, players=0, questions=3)
        await host.setup()
        players = WsPlayers(session, f"{stack.direct_edge_urls[0]}/ws", host.quiz_id)
        await players.join(PLAYERS)
        await players.answer(0)
        started = time.monotonic()
        stop_process(stack.processes["edge"][0], kill=True)
        players.url = stack.ws_url()
        resumed = await players.reconnect_all()
        all_back_s = round(time.monotonic() - started, 2)
        await host.next_question()
        await players.answer(1)
        await players.close()
        figures, converged_s = await converge(
            REAL.postgres_dsn, REAL.redis_url, host.quiz_id, players.ledger, redis_mode="cluster"
        )
        await host.close()
        report = write_report(
            "cluster-4-edge-killed",
            "pytest tests/cluster/test_edge_failover.py",
            figures,
            players.ledger,
            converged_s=converged_s,
            players=PLAYERS,
            resumed=resumed,
            last_player_back_s=all_back_s,
        )
        assert report["resumed"] == PLAYERS, report
        assert report["accepted"] == 2 * PLAYERS, report
        assert (report["lost"], report["duplicated"], report["drift"]) == (0, 0, 0), report
