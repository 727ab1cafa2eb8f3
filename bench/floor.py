"""The fan-out's floor: the edge's `Fanout` against one write of a pre-built frame per socket.

Both write to the same real loopback TCP sockets, alternating broadcast by broadcast, in one process
pinned to CPU 0, while a draining reader process on CPU 1 holds the other ends. The raw write is what
no Python server can go below (one `write()` system call per socket and per message, whose loopback
cost includes part of the receiver's TCP work); the gap between the two rows is what the edge adds:
decoding the ranking, building each personal frame and the per-socket checks. No WebSocket handshake
is made: the reader only drains bytes, so the figures are the server's side alone.

Two more figures split that gap: the same writes of the edge's own personal frames, built beforehand (so
distinct bytes per socket, with no building and no lookup), and the CPU of building a board's personal
frames alone, per message, in the same process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.queues import Queue
from typing import Any, cast

import uvloop

from bench.fanout import ranking
from edge.fanout import Board, Fanout, Recipient
from edge.settings import LEADERBOARD_TOP_N
from edge.wire import PLAIN_JSON
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

WRITER_CPU = 0
READER_CPU = 1
QUIZ = "floor-quiz"
TOP_N = LEADERBOARD_TOP_N.default  # ranked entries in every frame, as the edge sends them


class _Drain(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


def _reader(ports: Queue[int]) -> None:
    os.sched_setaffinity(0, {READER_CPU})

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Drain, "127.0.0.1", 0, backlog=16384)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(serve())


class _NoFeed:
    """The fan-out's upstream, unused: updates are handed to it directly."""

    async def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        await asyncio.Event().wait()
        yield quiz_pb2.WatchQuizResponse()

    async def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[lb_pb2.Leaderboard]:
        await asyncio.Event().wait()
        yield lb_pb2.Leaderboard()


class _Backlog:
    """Which sockets still buffer unsent bytes: each writes with a zero high-water mark, so the transport
    pauses its protocol on the first byte it cannot send and resumes it once all are sent."""

    def __init__(self) -> None:
        self.paused = 0
        self.empty = asyncio.Event()
        self.empty.set()

    def connection(self) -> asyncio.Protocol:
        backlog = self

        class Writer(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # uvloop's TCPTransport has WriteTransport's methods without subclassing it.
                cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=0)

            def pause_writing(self) -> None:
                backlog.paused += 1
                backlog.empty.clear()

            def resume_writing(self) -> None:
                backlog.paused -= 1
                if not backlog.paused:
                    backlog.empty.set()

        return Writer()


async def _measure(port: int, clients: int, broadcasts: int) -> dict[str, Any]:
    os.sched_setaffinity(0, {WRITER_CPU})
    loop = asyncio.get_running_loop()
    backlog = _Backlog()
    transports: list[asyncio.Transport] = []
    for _ in range(clients):
        transport, _ = await loop.create_connection(backlog.connection, "127.0.0.1", port)
        transports.append(transport)
    player_ids = [f"player-{i:06d}-{os.urandom(6).hex()}" for i in range(clients)]
    fanout = Fanout(_NoFeed(), top_n=TOP_N, max_buffered_bytes=1 << 22)
    # The same sockets, written in one go: what slicing a broadcast costs, and what it saves a reply.
    whole = Fanout(_NoFeed(), top_n=TOP_N, max_buffered_bytes=1 << 22, broadcast_slice=clients)
    lobby = quiz_pb2.QuizState(quiz_id=QUIZ, leaderboard_visible=True)
    for player_id, transport in zip(player_ids, transports, strict=True):
        fanout.attach(Recipient(transport, QUIZ, player_id=player_id), lobby)
        whole.attach(Recipient(transport, QUIZ, player_id=player_id), lobby)
    base = ranking(QUIZ, player_ids, 1)
    # The raw row writes the frame a mid-table player gets, so both rows carry the same bytes.
    sample = Fanout(_NoFeed(), top_n=TOP_N, max_buffered_bytes=1 << 22)
    probe = _Probe()
    sample.attach(Recipient(probe, QUIZ, player_id=player_ids[clients // 2]), lobby)
    await sample.deliver_leaderboard(QUIZ, base)
    raw_frame = probe.frames[-1]
    versions = iter(range(2, 2 + 2 * broadcasts))

    def edge_broadcast(hub: Fanout) -> Callable[[], Awaitable[None]]:
        async def broadcast() -> None:
            board = lb_pb2.Leaderboard()
            board.CopyFrom(base)
            board.version = next(versions)
            await hub.deliver_leaderboard(QUIZ, board)

        return broadcast

    async def raw_broadcast() -> None:
        for transport in transports:
            transport.write(raw_frame)

    def build_personal_frames() -> dict[str, bytes]:
        return Board(base, top_n=TOP_N).personal_frames(PLAIN_JSON)

    personal = build_personal_frames()
    prebuilt = [personal[player_id] for player_id in player_ids]

    async def prebuilt_broadcast() -> None:
        for transport, frame in zip(transports, prebuilt, strict=True):
            transport.write(frame)

    runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("edge fan-out", edge_broadcast(fanout)),
        ("edge fan-out, one slice", edge_broadcast(whole)),
        ("raw pre-built frame", raw_broadcast),
        ("raw pre-built personal frames", prebuilt_broadcast),
    ]
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in runs}
    # How long a reply that became ready as the broadcast began waited for the event loop.
    reply_waits: dict[str, list[float]] = {name: [] for name, _ in runs}
    for round_number in range(broadcasts):
        for name, broadcast in runs if round_number % 2 == 0 else runs[::-1]:
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            loop.call_soon(_waited, reply_waits[name], wall_before)
            await broadcast()
            await backlog.empty.wait()
            rows[name].append((time.process_time() - cpu_before, time.perf_counter() - wall_before))
            await asyncio.sleep(0.05)
    for transport in transports:
        transport.close()
    builds = []
    for _ in range(broadcasts):
        cpu_before = time.process_time()
        build_personal_frames()
        builds.append(time.process_time() - cpu_before)
    result: dict[str, Any] = {"clients": clients, "broadcasts": broadcasts, "frame_bytes": len(raw_frame)}
    for name, samples in rows.items():
        cpu_us = statistics.median(cpu for cpu, _ in samples) / clients * 1e6
        result[name] = {
            "cpu_us_per_message_median": round(cpu_us, 2),
            "messages_per_cpu_second": round(1e6 / cpu_us),
            "broadcast_ms_median": round(statistics.median(wall for _, wall in samples) * 1e3, 1),
            "broadcast_ms_max": round(max(wall for _, wall in samples) * 1e3, 1),
            "reply_wait_ms_median": round(statistics.median(reply_waits[name]) * 1e3, 1),
            "reply_wait_ms_max": round(max(reply_waits[name]) * 1e3, 1),
        }
    result["building_personal_frames_cpu_us_per_message_median"] = round(statistics.median(builds) / clients * 1e6, 2)
    result["edge_over_raw_cpu"] = round(
        result["edge fan-out"]["cpu_us_per_message_median"]
        / result["raw pre-built frame"]["cpu_us_per_message_median"],
        2,
    )
    return result


def _waited(waits: list[float], since: float) -> None:
    waits.append(time.perf_counter() - since)


class _Probe:
    """Records the frames written to it: how the raw row gets the edge's own bytes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


async def run(sizes: list[int], broadcasts: int = 20) -> dict[str, Any]:
    """Each size with a fresh reader process; returns one row per size."""
    results: dict[str, Any] = {"writer_cpu": WRITER_CPU, "reader_cpu": READER_CPU, "rows": []}
    context = multiprocessing.get_context("spawn")
    affinity = os.sched_getaffinity(0)
    for clients in sizes:
        ports: Queue[int] = context.Queue()
        reader = context.Process(target=_reader, args=(ports,), daemon=True)
        reader.start()
        try:
            port = await asyncio.to_thread(ports.get, timeout=30)
            results["rows"].append(await _measure(port, clients, broadcasts))
        finally:
            os.sched_setaffinity(0, affinity)
            reader.kill()
            reader.join()
    return results
