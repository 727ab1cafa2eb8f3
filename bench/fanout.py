"""Benchmark 1: one edge process's leaderboard fan-out against a python-socketio room broadcast.

Both servers run alone on CPU 0; this process (the clients and the edge's leaderboard feed) runs on CPU 1.
The clients are real WebSocket connections (picows). The edge's players join a real quiz through the
edge and a quiz_svc (in-memory engines, CPU 1), so every frame goes through the edge's own fan-out:
a `WatchLeaderboard` stream message → `Fanout.deliver_leaderboard` → one personal frame per socket.
The feed serving that stream is this process (a LeaderboardService with the full ranking of the joined
players), so the trigger time of each broadcast is on this process's clock.

The Socket.IO clients speak Engine.IO v4 / Socket.IO v5 over the websocket transport (open packet,
`40` namespace connect, `3` for each ping); `verify_socketio_client` checks them against
python-socketio's own AsyncClient. The same client also measures the edge's own Socket.IO endpoint
(`/socket.io/`): it joins with `join_quiz` and an ack, and the frames come from the same fan-out.

Saturated: K broadcasts back to back; delivered messages/s = frames received / (last receipt − trigger).
Paced: one broadcast every `interval_s`; latency of each delivery = receipt − trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.loadtest import Host, percentiles, raise_fd_limit
from bench.procs import LOOPBACK_EDGE_LIMITS, Child, cpu_seconds, free_port, rss_bytes, spawn, spawn_service, wait_ready
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc

SERVER_CPUS: Final = (0,)
CLIENT_CPUS: Final = (1,)
SIGNING_KEY: Final = "bench-signing-key-0123456789abcdef0123456789"
_VERSION: Final = re.compile(rb'"version":(\d+)')


class Recorder:
    """Counts frames per broadcast version and keeps every paced delivery's latency."""

    def __init__(self) -> None:
        self.received = 0
        self.last_at = 0.0
        self.triggered: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.last_per_version: dict[int, float] = {}

    def frame(self, payload: bytes) -> None:
        now = time.monotonic()
        self.received += 1
        self.last_at = now
        match = _VERSION.search(payload, 0, 200)
        if match is None:
            return
        version = int(match.group(1))
        sent = self.triggered.get(version)
        if sent is not None:
            self.latencies_ms.append((now - sent) * 1000)
            self.last_per_version[version] = now - sent

    def reset(self) -> None:
        self.received, self.last_at = 0, 0.0
        self.triggered, self.latencies_ms, self.last_per_version = {}, [], {}


class _Client(WSListener):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.on_text(transport, frame.get_payload_as_bytes())

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()


class EdgePlayer(_Client):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.joined: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(b'{"type":"leaderboard_updated"'):
            self.recorder.frame(payload)
        elif not self.joined.done() and payload.startswith(b'{"type":"joined"'):
            self.joined.set_result(orjson.loads(payload)["player"]["player_id"])
        elif not self.joined.done() and payload.startswith(b'{"type":"error"'):
            self.joined.set_exception(RuntimeError(payload.decode()))


class SioPlayer(_Client):
    """The Engine.IO v4 / Socket.IO v5 client side, on the websocket transport."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.connected: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(b"42"):
            self.recorder.frame(payload)
        else:
            self.engine_io(transport, payload)

    def engine_io(self, transport: WSTransport, payload: bytes) -> None:
        """Engine.IO's PING, OPEN and Socket.IO's CONNECT: answered as a client does."""
        if payload == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif payload.startswith(b"0{"):
            transport.send(WSMsgType.TEXT, b"40")
        elif payload.startswith(b"40") and not self.connected.done():
            self.connected.set_result(True)
            self.on_connected(transport)

    def on_connected(self, transport: WSTransport) -> None:
        """Called once the default namespace is connected."""


class EdgeSioPlayer(SioPlayer):
    """A Socket.IO client of the edge: joins the quiz with `join_quiz` and an ack once connected."""

    def __init__(self, recorder: Recorder, join_event: bytes) -> None:
        super().__init__(recorder)
        self.join_event = join_event
        self.joined: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(b'42["leaderboard_updated"'):
            self.recorder.frame(payload)
        elif payload.startswith(b"430[") and not self.joined.done():
            reply = orjson.loads(payload[3:])[0]
            if reply["type"] == "joined":
                self.joined.set_result(reply["player"]["player_id"])
            else:
                self.joined.set_exception(RuntimeError(payload.decode()))
        else:
            self.engine_io(transport, payload)

    def on_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, self.join_event)


class Feed(lb_grpc.LeaderboardServiceServicer):
    """The edge's leaderboard upstream: streams whatever `push` is given to every watcher."""

    def __init__(self) -> None:
        self.watchers: list[asyncio.Queue[lb_pb2.Leaderboard]] = []
        self.watching = asyncio.Event()

    async def WatchLeaderboard(
        self, request: lb_pb2.WatchLeaderboardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[lb_pb2.WatchLeaderboardResponse]:
        queue: asyncio.Queue[lb_pb2.Leaderboard] = asyncio.Queue()
        self.watchers.append(queue)
        self.watching.set()
        try:
            while True:
                yield lb_pb2.WatchLeaderboardResponse(leaderboard=await queue.get())
        finally:
            self.watchers.remove(queue)

    async def GetLeaderboard(
        self, request: lb_pb2.GetLeaderboardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lb_pb2.GetLeaderboardResponse:
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("the fan-out feed only streams")
        return lb_pb2.GetLeaderboardResponse()

    async def ErasePlayers(
        self, request: lb_pb2.ErasePlayersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lb_pb2.ErasePlayersResponse:
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("the fan-out feed only streams")
        return lb_pb2.ErasePlayersResponse()

    def push(self, board: lb_pb2.Leaderboard) -> None:
        for queue in self.watchers:
            queue.put_nowait(board)


def ranking(quiz_id: str, player_ids: Sequence[str], version: int) -> lb_pb2.Leaderboard:
    count = len(player_ids)
    return lb_pb2.Leaderboard(
        quiz_id=quiz_id,
        version=version,
        entries=[
            lb_pb2.LeaderboardEntry(player_id=p, nickname=f"p{i}", score=(count - i) * 10, rank=i + 1)
            for i, p in enumerate(player_ids)
        ],
    )


def same_payload(board: lb_pb2.Leaderboard, top_n: int = 10) -> dict[str, Any]:
    """What the edge sends a mid-table player, as one dict for the Socket.IO room."""
    entries = board.entries

    def entry(e: lb_pb2.LeaderboardEntry) -> dict[str, Any]:
        return {"rank": e.rank, "player_id": e.player_id, "nickname": e.nickname, "score": e.score}

    middle = len(entries) // 2
    return {
        "type": "leaderboard_updated",
        "quiz_id": board.quiz_id,
        "version": board.version,
        "player_count": len(entries),
        "top": [entry(e) for e in entries[:top_n]],
        "me": {"rank": entries[middle].rank, "score": entries[middle].score},
        "ahead": entry(entries[middle - 1]) if middle else None,
    }


async def _wait_delivered(recorder: Recorder, expected: int, idle_s: float = 3.0, cap_s: float = 90.0) -> None:
    started = time.monotonic()
    while recorder.received < expected and time.monotonic() - started < cap_s:
        if recorder.last_at and time.monotonic() - recorder.last_at > idle_s:
            return
        await asyncio.sleep(0.05)


async def _connect_all(
    count: int, factory: Callable[[], _Client], url: str, ready: Callable[[Any], Any]
) -> list[_Client]:
    listeners: list[_Client] = []
    limit = asyncio.Semaphore(200)

    async def one() -> None:
        async with limit:
            _, listener = await ws_connect(factory, url, websocket_handshake_timeout=30)
            assert isinstance(listener, _Client)
            await asyncio.wait_for(ready(listener), 60)
            listeners.append(listener)

    await asyncio.gather(*(one() for _ in range(count)))
    return listeners


async def _measure(
    server: Child,
    recorder: Recorder,
    trigger: Callable[[int, int], Any],
    clients: int,
    saturated_count: int,
    paced_count: int,
    interval_s: float,
) -> dict[str, Any]:
    """trigger(first_version, count) starts `count` broadcasts back to back."""
    recorder.reset()
    version = 1_000
    cpu_before = cpu_seconds(server.pid)
    clients_cpu_before = cpu_seconds(os.getpid())
    started = time.monotonic()
    await trigger(version, saturated_count)
    await _wait_delivered(recorder, clients * saturated_count)
    elapsed = recorder.last_at - started
    cpu_used = cpu_seconds(server.pid) - cpu_before
    clients_cpu_used = cpu_seconds(os.getpid()) - clients_cpu_before
    delivered = recorder.received
    recorder.reset()
    version = 100_000
    for n in range(paced_count):
        recorder.triggered[version + n] = time.monotonic()
        await trigger(version + n, 1)
        await asyncio.sleep(interval_s)
    await _wait_delivered(recorder, clients * paced_count)
    last_client = sorted(recorder.last_per_version.values())
    return {
        "clients": clients,
        "saturated_broadcasts": saturated_count,
        "delivered": delivered,
        "expected": clients * saturated_count,
        "messages_per_s": round(delivered / elapsed) if elapsed > 0 else None,
        "server_cpu_us_per_message": round(cpu_used / delivered * 1e6, 2) if delivered else None,
        "server_cpu_busy": round(cpu_used / elapsed, 2) if elapsed > 0 else None,
        "clients_cpu_busy": round(clients_cpu_used / elapsed, 2) if elapsed > 0 else None,
        "paced_broadcasts": paced_count,
        "paced_interval_s": interval_s,
        "paced_delivered": recorder.received,
        "delivery_latency_ms": percentiles(recorder.latencies_ms),
        "last_client_ms_median": round(last_client[len(last_client) // 2] * 1000, 1) if last_client else None,
        "last_client_ms_max": round(last_client[-1] * 1000, 1) if last_client else None,
    }


@contextlib.asynccontextmanager
async def _feed_server() -> AsyncIterator[tuple[Feed, str]]:
    feed = Feed()
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    lb_grpc.add_LeaderboardServiceServicer_to_server(feed, server)
    checks = health.aio.HealthServicer()
    await checks.set("quizmesh.leaderboard.v1.LeaderboardService", health_pb2.HealthCheckResponse.SERVING)
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield feed, f"127.0.0.1:{port}"
    finally:
        await server.stop(1)


async def run_edge(
    clients: int,
    quiz_addr: str,
    log_dir: Path,
    saturated: int,
    paced: int,
    interval_s: float,
    socketio: bool = False,
) -> dict[str, Any]:
    """The edge's fan-out to plain WebSocket clients, or with `socketio` to clients of its /socket.io/."""
    async with _feed_server() as (feed, feed_addr):
        port = free_port()
        env = {
            **os.environ,
            "QUIZMESH_EDGE_PORT": str(port),
            "QUIZMESH_QUIZ_ADDR": quiz_addr,
            "QUIZMESH_LEADERBOARD_ADDR": feed_addr,
            "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
            **LOOPBACK_EDGE_LIMITS,
        }
        tag = f"-fanout-{'socketio-' if socketio else ''}{clients}"
        edge = spawn_service("edge", env, log_dir, SERVER_CPUS, tag=tag)
        try:
            await wait_ready([edge], [], [f"http://127.0.0.1:{port}/readyz"])
            url = f"ws://127.0.0.1:{port}/ws"
            host = await Host.connect(url)
            created = await host.request(
                "create_quiz",
                title="fan-out",
                questions=[{"text": "?", "choices": ["a", "b"], "correct_choices": [0], "time_limit_seconds": 60}],
            )
            quiz_id = created["quiz"]["quiz_id"]
            rss_before = rss_bytes(edge.pid)
            recorder = Recorder()
            player_ids: list[str] = []
            names = itertools.count()

            def make() -> EdgePlayer:
                return EdgePlayer(recorder)

            async def join(listener: EdgePlayer) -> None:
                assert listener.transport is not None
                listener.transport.send(
                    WSMsgType.TEXT,
                    orjson.dumps({"type": "join_quiz", "id": "j", "quiz_id": quiz_id, "nickname": f"p{next(names)}"}),
                )
                player_ids.append(await listener.joined)

            def make_sio() -> EdgeSioPlayer:
                fields = {"quiz_id": quiz_id, "nickname": f"p{next(names)}"}
                return EdgeSioPlayer(recorder, b"420" + orjson.dumps(["join_quiz", fields]))

            async def join_sio(listener: EdgeSioPlayer) -> None:
                player_ids.append(await listener.joined)

            joined_at = time.monotonic()
            if socketio:
                sio_url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
                listeners = await _connect_all(clients, make_sio, sio_url, join_sio)
            else:
                listeners = await _connect_all(clients, make, url, join)
            join_s = time.monotonic() - joined_at
            await asyncio.wait_for(feed.watching.wait(), 10)
            rss_after = rss_bytes(edge.pid)

            base = ranking(quiz_id, player_ids, 1)
            # Built before the clock starts: the stream serializes each message when it sends it.
            boards = {}
            for version in [*range(1_000, 1_000 + saturated), *range(100_000, 100_000 + paced)]:
                board = boards[version] = lb_pb2.Leaderboard()
                board.CopyFrom(base)
                board.version = version

            async def trigger(first: int, count: int) -> None:
                for version in range(first, first + count):
                    feed.push(boards[version])

            result = await _measure(edge, recorder, trigger, clients, saturated, paced, interval_s)
            result.update(
                server="quizmesh edge, Socket.IO" if socketio else "quizmesh edge",
                payload_bytes=len(orjson.dumps(same_payload(base))),
                joins_per_s=round(clients / join_s),
                rss_per_connection_bytes=round((rss_after - rss_before) / clients),
            )
            for listener in listeners:
                listener.close()
            host.close()
            return result
        finally:
            edge.stop()


async def run_socketio(
    clients: int, board: lb_pb2.Leaderboard, log_dir: Path, saturated: int, paced: int, interval_s: float
) -> dict[str, Any]:
    port = free_port()
    server = spawn(
        f"sio-server-{clients}", [sys.executable, "-m", "bench.sio_server", str(port)], os.environ, log_dir, SERVER_CPUS
    )
    try:
        await wait_ready([server], [], [f"http://127.0.0.1:{port}/readyz"])
        rss_before = rss_bytes(server.pid)
        recorder = Recorder()
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"

        async def connected(listener: SioPlayer) -> None:
            await listener.connected

        listeners = await _connect_all(clients, lambda: SioPlayer(recorder), url, connected)
        rss_after = rss_bytes(server.pid)
        payload = same_payload(board)
        async with aiohttp.ClientSession() as http:

            async def trigger(first: int, count: int) -> None:
                body = {"payload": {**payload, "version": first}, "count": count}
                async with http.post(f"http://127.0.0.1:{port}/broadcast", json=body) as response:
                    response.raise_for_status()

            result = await _measure(server, recorder, trigger, clients, saturated, paced, interval_s)
        result.update(
            server="python-socketio",
            payload_bytes=len(orjson.dumps(payload)),
            rss_per_connection_bytes=round((rss_after - rss_before) / clients),
        )
        for listener in listeners:
            listener.close()
        return result
    finally:
        server.stop()


async def verify_socketio_client(log_dir: Path) -> bool:
    """The hand-written Socket.IO client receives exactly what python-socketio's own client does."""
    import socketio

    port = free_port()
    server = spawn("sio-verify", [sys.executable, "-m", "bench.sio_server", str(port)], os.environ, log_dir)
    try:
        await wait_ready([server], [], [f"http://127.0.0.1:{port}/readyz"])
        reference: list[Any] = []
        client = socketio.AsyncClient()
        client.on("leaderboard_updated", reference.append)
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        raw: list[bytes] = []

        class Keeping(Recorder):
            def frame(self, payload: bytes) -> None:
                raw.append(payload)

        ours = SioPlayer(Keeping())
        await ws_connect(lambda: ours, f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        await asyncio.wait_for(ours.connected, 10)
        payload = {"type": "leaderboard_updated", "version": 1, "top": [{"rank": 1, "score": 5}]}
        async with aiohttp.ClientSession() as http:
            await http.post(f"http://127.0.0.1:{port}/broadcast", json={"payload": payload, "count": 3})
        for _ in range(50):
            if len(reference) == 3 and len(raw) == 3:
                break
            await asyncio.sleep(0.1)
        await client.disconnect()
        decoded = [orjson.loads(frame[2:])[1] for frame in raw]
        return decoded == reference and len(reference) == 3
    finally:
        server.stop()


PROTOCOLS: Final = ("plain", "socketio", "python-socketio")
# Each protocol's key in a result row: the edge to plain WebSocket clients, the edge to its Socket.IO
# clients, and the python-socketio room broadcast.
_ROW_KEYS: Final = {"plain": "edge", "socketio": "edge_socketio", "python-socketio": "socketio"}


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator or not numerator["messages_per_s"] or not denominator["messages_per_s"]:
        return None
    return round(float(numerator["messages_per_s"]) / float(denominator["messages_per_s"]), 1)


async def run(
    sizes: Sequence[int],
    log_dir: Path,
    interval_s: float = 1.5,
    paced: int = 8,
    protocols: Sequence[str] = PROTOCOLS,
) -> dict[str, Any]:
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; choose from {PROTOCOLS}")
    raise_fd_limit()
    os.sched_setaffinity(0, CLIENT_CPUS)
    verified = await verify_socketio_client(log_dir)
    quiz_port = free_port()
    quiz_addr = f"127.0.0.1:{quiz_port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "QUIZMESH_EVENT_BUS": "memory",
            "QUIZMESH_STATE_STORE": "memory",
            "QUIZMESH_DATABASE": "sqlite",
            "QUIZMESH_SQLITE_PATH": str(Path(tmp) / "quiz.sqlite3"),
            "QUIZMESH_QUIZ_ADDR": quiz_addr,
            "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        }
        quiz_svc = spawn_service("quiz-svc", env, log_dir, CLIENT_CPUS, tag="-fanout")
        rows = []
        try:
            await wait_ready([quiz_svc], [quiz_addr], [])
            for clients in sizes:
                measured: dict[str, dict[str, Any]] = {}
                edge_saturated = max(20, 300_000 // clients)
                for protocol in protocols:
                    if protocol == "python-socketio":
                        board = ranking("BENCH", [f"player-{i:06d}abcdefghij" for i in range(clients)], 1)
                        saturated = max(10, math.ceil(100_000 / clients))
                        measured[protocol] = await run_socketio(clients, board, log_dir, saturated, paced, interval_s)
                    else:
                        measured[protocol] = await run_edge(
                            clients, quiz_addr, log_dir, edge_saturated, paced, interval_s, protocol == "socketio"
                        )
                sio = measured.get("python-socketio")
                row: dict[str, Any] = {"clients": clients}
                row.update({_ROW_KEYS[protocol]: result for protocol, result in measured.items()})
                row["ratio_messages_per_s"] = _ratio(measured.get("plain"), sio)
                row["ratio_edge_socketio_messages_per_s"] = _ratio(measured.get("socketio"), sio)
                rows.append(row)
                print(orjson.dumps(rows[-1]).decode(), file=sys.stderr, flush=True)
        finally:
            quiz_svc.stop()
    return {
        "socketio_client_verified": verified,
        "server_cpus": list(SERVER_CPUS),
        "client_cpus": list(CLIENT_CPUS),
        "rows": rows,
    }
