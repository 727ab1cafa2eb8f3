"""A server stream the client cancels ends cleanly under tracing: no `Failed to detach context` error.

OpenTelemetry's server interceptor keeps a span attached around each response stream. When a client
cancelled while a write was waiting on flow control, grpc.aio abandoned the stream's generator at its
`yield` and the event loop closed it later, in another task, which cannot detach that span's context
(open-telemetry/opentelemetry-python-contrib#2357). Here a client reads one response and stops reading
while the server's writes fill its small flow-control window, then cancels. A second stream on a
channel with an ordinary window sees every response, so the server had them all to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import pytest

from leaderboard_svc import main as leaderboard_main
from leaderboard_svc.settings import Settings as LeaderboardSettings
from quiz_svc import main as quiz_main
from quiz_svc.settings import Settings as QuizSettings
from quizmesh.eventcodec import timestamp_ms, to_record
from quizmesh.events.v1 import events_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from quizmesh.telemetry import setup_telemetry

Serve = Callable[[Runtime, asyncio.Event, Callable[[int], None]], Coroutine[Any, Any, None]]

# A 1 KiB stream window that never grows: a few unread responses block the server's next write.
SMALL_WINDOW = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
QUESTION = quiz_pb.Question(text="2+2?", choices=["3", "4"], correct_choices=[1], time_limit_seconds=5)
CANCELLED_STREAMS = 3


@contextlib.asynccontextmanager
async def served(serve: Serve) -> AsyncIterator[tuple[Runtime, grpc.aio.Channel, grpc.aio.Channel]]:
    """A service with tracing on, and a small-window and an ordinary channel to it. On exit the service
    is stopped and garbage collected, so what the cancelled streams left behind is closed by then."""
    telemetry = setup_telemetry("t", {"QUIZMESH_TRACE_SAMPLE_RATIO": "1"})
    runtime = Runtime(Engines.embedded(":memory:"), telemetry=telemetry)
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(runtime, stop, port.set_result))
    address = f"127.0.0.1:{await asyncio.wait_for(port, 30)}"
    try:
        async with (
            grpc.aio.insecure_channel(address, options=SMALL_WINDOW) as small,
            grpc.aio.insecure_channel(address) as ordinary,
        ):
            yield runtime, small, ordinary
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        telemetry.close()
        gc.collect()
        for _ in range(10):  # the loop closes a collected generator in a task of its own
            await asyncio.sleep(0)


def detach_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Failed to detach context" in r.getMessage()]


async def test_a_cancelled_watch_quiz_stream_logs_no_detach_error(caplog: pytest.LogCaptureFixture) -> None:
    async def serve(runtime: Runtime, stop: asyncio.Event, ready: Callable[[int], None]) -> None:
        settings = QuizSettings("127.0.0.1:0", "127.0.0.1:9", 5000, 50, 1, signing_key=b"t" * 32)
        await quiz_main.run(runtime, settings, stop, ready)

    caplog.set_level(logging.WARNING)
    async with served(serve) as (_, small, ordinary):
        stub = quiz_grpc.QuizServiceStub(small)
        created = await stub.CreateQuiz(quiz_pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
        quiz_id, host_token = created.quiz.quiz_id, created.host_token
        for _ in range(CANCELLED_STREAMS):
            stalled = stub.WatchQuiz(quiz_pb.WatchQuizRequest(quiz_id=quiz_id))
            observer = quiz_grpc.QuizServiceStub(ordinary).WatchQuiz(quiz_pb.WatchQuizRequest(quiz_id=quiz_id))
            await asyncio.wait_for(stalled.read(), 10)
            await asyncio.wait_for(observer.read(), 10)
            changes = [False, True] * 40  # each one a response of about 100 bytes
            for visible in changes:
                change = quiz_pb.SetLeaderboardVisibilityRequest(
                    quiz_id=quiz_id, host_token=host_token, visible=visible
                )
                await stub.SetLeaderboardVisibility(change, timeout=10)
            for _ in changes:
                await asyncio.wait_for(observer.read(), 10)
            stalled.cancel()
            observer.cancel()
    assert detach_errors(caplog) == []


async def test_a_cancelled_watch_leaderboard_stream_logs_no_detach_error(caplog: pytest.LogCaptureFixture) -> None:
    async def serve(runtime: Runtime, stop: asyncio.Event, ready: Callable[[int], None]) -> None:
        group = f"leaderboard_svc-test-{uuid.uuid4().hex}"
        settings = LeaderboardSettings("127.0.0.1:0", 100, group, ranking_ttl_s=600, batch_wait_ms=20)
        await leaderboard_main.run(runtime, settings, stop, ready)

    caplog.set_level(logging.WARNING)
    async with served(serve) as (runtime, small, ordinary):
        publisher = runtime.publisher("test")
        quiz_id = f"quiz-{uuid.uuid4().hex}"
        entries = [events_pb2.LeaderboardEntry(player_id=f"player-{n}", score=n) for n in range(100)]
        for _ in range(CANCELLED_STREAMS):
            stalled = lb_grpc.LeaderboardServiceStub(small).WatchLeaderboard(
                lb_pb.WatchLeaderboardRequest(quiz_id=quiz_id)
            )
            observer = lb_grpc.LeaderboardServiceStub(ordinary).WatchLeaderboard(
                lb_pb.WatchLeaderboardRequest(quiz_id=quiz_id)
            )
            first = await asyncio.wait_for(stalled.read(), 10)
            await asyncio.wait_for(observer.read(), 10)
            last = first.leaderboard.version + 5
            for version in range(first.leaderboard.version + 1, last + 1):  # each one a response of about 2 KiB
                update = events_pb2.LeaderboardUpdated(
                    event_id=uuid.uuid4().hex,
                    event_time=timestamp_ms(1_700_000_000_000),
                    quiz_id=quiz_id,
                    version=version,
                    entries=entries,
                )
                await publisher.publish([to_record(update)], timeout_s=10)
                assert (await asyncio.wait_for(observer.read(), 10)).leaderboard.version == version
            stalled.cancel()
            observer.cancel()
        await publisher.close()
    assert detach_errors(caplog) == []
