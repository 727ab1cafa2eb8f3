"""Clients retry reads that met UNAVAILABLE, and never writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from quizmesh.grpc_retry import CHANNEL_OPTIONS, IDEMPOTENT_METHODS, target
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc


class FlakyQuizService(pb_grpc.QuizServiceServicer):
    """Refuses every method's first call with UNAVAILABLE, then answers."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def _first_refused(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] += 1
        if self.calls[method] == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")

    async def GetQuizState(
        self, request: pb.GetQuizStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQuizStateResponse:
        await self._first_refused("GetQuizState", context)
        return pb.GetQuizStateResponse(state=pb.QuizState(quiz_id=request.quiz_id))

    async def JoinQuiz(self, request: pb.JoinQuizRequest, context: grpc.aio.ServicerContext) -> pb.JoinQuizResponse:
        await self._first_refused("JoinQuiz", context)
        return pb.JoinQuizResponse(player_token="t")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyQuizService, pb_grpc.QuizServiceStub]]:
    service = FlakyQuizService()  # type: ignore[abstract]  # serves only the two methods under test
    server = grpc.aio.server()
    pb_grpc.add_QuizServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        yield service, pb_grpc.QuizServiceStub(channel)
    await server.stop(0)


async def test_a_read_is_retried_after_unavailable(flaky: tuple[FlakyQuizService, pb_grpc.QuizServiceStub]) -> None:
    service, stub = flaky
    reply = await stub.GetQuizState(pb.GetQuizStateRequest(quiz_id="Q"), timeout=5)
    assert reply.state.quiz_id == "Q"
    assert service.calls["GetQuizState"] == 2


async def test_a_write_is_not_retried(flaky: tuple[FlakyQuizService, pb_grpc.QuizServiceStub]) -> None:
    service, stub = flaky
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id="Q", nickname="n"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert service.calls["JoinQuiz"] == 1


def test_only_reads_are_listed() -> None:
    writes = {
        "CreateQuiz",
        "JoinQuiz",
        "SubmitAnswer",
        "BatchSubmitAnswers",
        "StreamAnswers",
        "StartQuiz",
        "NextQuestion",
        "CloseQuestion",
        "SetLeaderboardVisibility",
        "KickPlayer",
        "EndQuiz",
        "LeaveQuiz",
        "ResumeQuiz",
    }
    listed = {m for methods in IDEMPOTENT_METHODS.values() for m in methods}
    assert listed and not listed & writes


def test_one_target_names_every_replica_of_a_service() -> None:
    assert target(["127.0.0.1:50051"]) == "127.0.0.1:50051"
    assert target(["quiz-svc:50051"]) == "quiz-svc:50051"  # one DNS name may resolve to every replica
    assert target(["127.0.0.1:50051", "10.1.2.3:50061"]) == "ipv4:127.0.0.1:50051,10.1.2.3:50061"
    assert target(["[::1]:50051", "[::1]:50061"]) == "ipv6:[::1]:50051,[::1]:50061"
    for wrong in ([], ["quiz-a:50051", "quiz-b:50051"], ["127.0.0.1", "127.0.0.2:1"]):
        with pytest.raises(ValueError):
            target(wrong)
