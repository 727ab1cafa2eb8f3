"""The upstream clients' readiness, without and with services."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator
from typing import cast

import grpc

from edge.upstream import Upstream
from quizmesh.grpc_retry import target
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from tests.edge.edge_fakes import FakeQuizService, FakeServices


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_not_ready_before_open_or_when_a_service_is_unreachable(services: FakeServices) -> None:
    upstream = Upstream(services.address, _unused_address(), readiness_deadline_s=0.3)
    assert not await upstream.ready()
    await upstream.open()
    try:
        assert not await upstream.ready()
    finally:
        await upstream.close(0)


async def test_ready_when_both_services_are_serving(services: FakeServices) -> None:
    upstream = Upstream(services.address, services.address)
    await upstream.open()
    try:
        assert await upstream.ready()
        await services.set_serving(False)
        assert not await upstream.ready()
    finally:
        await upstream.close(0)


async def _serve_quiz(service: FakeQuizService, address: str) -> grpc.aio.Server:
    server = grpc.aio.server()
    quiz_grpc.add_QuizServiceServicer_to_server(service, server)
    server.add_insecure_port(address)
    await server.start()
    return server


async def test_a_watch_waits_for_a_replica_to_serve_and_answers_spread_over_the_replicas() -> None:
    """Two quiz_svc replicas behind one target: the watch opened while neither serves resumes as soon
    as one does, and answers go to both once both serve (as the answer streams age and are replaced)."""
    first, second = _unused_address(), _unused_address()
    quiz = FakeQuizService()
    created = await quiz.CreateQuiz(quiz_pb2.CreateQuizRequest(title="t"), None)
    quiz_id = created.quiz.quiz_id
    upstream = Upstream(
        target([first, second]), _unused_address(), answer_batch_linger_s=0, answer_stream_max_age_s=0.05
    )
    await upstream.open()
    servers: list[grpc.aio.Server] = []
    try:
        stream = cast(AsyncGenerator[quiz_pb2.WatchQuizResponse], upstream.watch_quiz(quiz_id))
        reading = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        assert not reading.done()  # nobody serves yet: the watch waits instead of failing
        servers.append(await _serve_quiz(quiz, second))
        update = await asyncio.wait_for(reading, 10)
        assert update.state.quiz_id == quiz_id
        await stream.aclose()
        other = FakeQuizService()
        servers.append(await _serve_quiz(other, first))
        # round_robin: once the channel has connected to both replicas, new streams go to each in turn.
        for _ in range(500):
            await upstream.submit_answer(quiz_pb2.Answer(player_token="nobody", question_index=0, choice=0))
            if other.batch_sizes and quiz.batch_sizes:
                break
            await asyncio.sleep(0.01)
        assert other.batch_sizes and quiz.batch_sizes
    finally:
        await upstream.close(0)
        for server in servers:
            await server.stop(0)
