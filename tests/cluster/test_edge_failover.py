"""Cluster scenario 4: one of the two edges is SIGKILLed with 1,000 players on it; every player
resumes with its credential through HAProxy, on the other edge, and keeps answering.

The players join on the first edge directly (so that all 1,000 are on it), then reconnect through
HAProxy, as a client does after its socket died: HAProxy finds the dead edge refusing connections,
sends them to the living one, and takes the dead one out of rotation at its next health checks.
"""

from __future__ import annotations

import asyncio
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
# How many players reconnect at a time: a crowd of real clients has no such limit, this test's one
# process needs some.
AT_ONCE = int(os.environ.get("QUIZMESH_FAULT_EDGE_RECONNECT_AT_ONCE", "50"))
IDLE_S = 3.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        # Who is busy while they come back: the surviving edge, HAProxy, the services behind the edge
        # (both processes of each), or this test's own clients.
        parts = {
            "edge": [stack.processes["edge"][1].pid],
            "haproxy": [stack.balancer.pid] if stack.balancer else [],
            "quiz_svc": [p.pid for p in stack.processes["quiz-svc"]],
            "leaderboard_svc": [p.pid for p in stack.processes["leaderboard-svc"]],
        }
        # Their background work (heartbeats, publication ticks) goes on meanwhile: measured idle first.
        idle_before = {part: sum(_cpu_s(pid) for pid in pids) for part, pids in parts.items()}
        await asyncio.sleep(IDLE_S)
        cpu_before = {part: sum(_cpu_s(pid) for pid in pids) for part, pids in parts.items()}
        idle_per_s = {part: (cpu_before[part] - idle_before[part]) / IDLE_S for part in parts}
        cpu_before["test"] = time.process_time()
        started = time.monotonic()
        stop_process(stack.processes["edge"][0], kill=True)
        players.url = stack.ws_url()
        resumed = await players.reconnect_all(AT_ONCE)
        all_back_s = round(time.monotonic() - started, 2)
        cpu_after = {part: sum(_cpu_s(pid) for pid in pids) for part, pids in parts.items()}
        cpu_after["test"] = time.process_time()
        cpu_s = {f"{part}_cpu_s": round(cpu_after[part] - cpu_before[part], 2) for part in cpu_before}
        cpu_s.update({f"{part}_idle_cpu_s": round(rate * all_back_s, 2) for part, rate in idle_per_s.items()})
        back = sorted(players.resume_seconds)
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
            reconnecting_at_once=AT_ONCE,
            last_player_back_s=all_back_s,
            median_player_back_s=round(back[len(back) // 2], 2) if back else None,
            **cpu_s,
        )
        assert report["resumed"] == PLAYERS, report
        assert report["accepted"] == 2 * PLAYERS, report
        assert (report["lost"], report["duplicated"], report["drift"]) == (0, 0, 0), report
