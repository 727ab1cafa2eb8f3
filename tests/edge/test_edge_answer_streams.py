"""Answer batches on StreamAnswers calls: the unary call takes only the batches no server read, a failed
call's batches fail with its status, and calls are replaced as they age."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from bench.procs import free_port
from edge.upstream import Upstream
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from tests.edge.edge_fakes import FakeQuizService


def answer() -> quiz_pb2.Answer:
    """An answer from a token the fake does not know: its outcome is a verdict, so the batch was judged."""
    return quiz_pb2.Answer(player_token="nobody", question_index=0, choice=0)


@asynccontextmanager
async def served(service: FakeQuizService, **upstream: Any) -> AsyncIterator[Upstream]:
    """An upstream whose answers go to `service`, each batch on its own (no linger)."""
    address = f"127.0.0.1:{free_port()}"
    server = grpc.aio.server()
    quiz_grpc.add_QuizServiceServicer_to_server(service, server)
    server.add_insecure_port(address)
    await server.start()
    client = Upstream(address, f"127.0.0.1:{free_port()}", answer_batch_linger_s=0, **upstream)
    await client.open()
    try:
        yield client
    finally:
        await client.close(1)
        await server.stop(0)


async def test_batches_travel_on_streams_not_unary_calls() -> None:
    quiz = FakeQuizService()
    async with served(quiz, answer_streams=2) as upstream:
        outcomes = [await upstream.submit_answer(answer()) for _ in range(6)]
    assert all(o.error == quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED for o in outcomes)
    assert quiz.batch_sizes == [1] * 6
    assert quiz.unary_batches == 0
    assert quiz.answer_streams == 2  # taken in turn, each kept open


class NoStreams(FakeQuizService):
    """A quiz_svc from before StreamAnswers."""

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        self.answer_streams += 1
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        yield quiz_pb2.StreamAnswersResponse()


async def test_a_quiz_svc_without_streams_gets_unary_calls() -> None:
    quiz = NoStreams()
    async with served(quiz) as upstream:
        outcomes = [await upstream.submit_answer(answer()) for _ in range(4)]
    assert len(outcomes) == 4 and all(o.error == quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED for o in outcomes)
    assert quiz.unary_batches == 4
    assert quiz.answer_streams == 1  # refused once, then not tried again for a while


class Draining(FakeQuizService):
    """A replica that is stopping: it ends each answer stream with OK without reading it."""

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        self.answer_streams += 1
        return
        yield quiz_pb2.StreamAnswersResponse()


async def test_a_batch_a_draining_replica_left_unread_goes_as_a_unary_call() -> None:
    quiz = Draining()
    async with served(quiz) as upstream:
        outcome = await upstream.submit_answer(answer())
    assert outcome.error == quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED
    assert quiz.batch_sizes == [1] and quiz.unary_batches == 1


class FailsFirstStream(FakeQuizService):
    """The first stream breaks after reading a batch, as when its replica dies; later ones work."""

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        if self.answer_streams == 0:
            self.answer_streams += 1
            await anext(aiter(requests))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the replica went away")
        async for response in super().StreamAnswers(requests, context):
            yield response


async def test_a_broken_stream_fails_its_batches_with_its_status_and_the_next_batch_gets_a_new_one() -> None:
    quiz = FailsFirstStream()
    async with served(quiz, answer_streams=1) as upstream:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await upstream.submit_answer(answer())
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        # The server may have judged a batch it read, so it is not sent again: the player's retry is.
        assert quiz.unary_batches == 0
        outcome = await upstream.submit_answer(answer())
    assert outcome.error == quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED
    assert quiz.answer_streams == 2 and quiz.unary_batches == 0


class Silent(FakeQuizService):
    """Reads every batch and answers none."""

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        self.answer_streams += 1
        async for _ in requests:
            pass
        return
        yield quiz_pb2.StreamAnswersResponse()


async def test_a_batch_without_an_answer_fails_at_its_deadline() -> None:
    async with served(Silent(), answer_deadline_s=0.3) as upstream:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await upstream.submit_answer(answer())
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "0.3 s" in (failed.value.details() or "")


async def test_streams_are_replaced_as_they_age_and_every_batch_is_answered() -> None:
    quiz = FakeQuizService()
    async with served(quiz, answer_streams=1, answer_stream_max_age_s=0.05) as upstream:
        outcomes = []
        for _ in range(8):
            outcomes.append(await upstream.submit_answer(answer()))
            await asyncio.sleep(0.03)
    assert len(outcomes) == 8 and all(o.error == quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED for o in outcomes)
    assert quiz.answer_streams >= 3
    assert quiz.unary_batches == 0


class AnswersOutOfOrder(FakeQuizService):
    """Answers each four batches it reads in reverse order, each answer's outcome naming its player."""

    def _judge(self, answer: quiz_pb2.Answer) -> quiz_pb2.AnswerOutcome:
        return quiz_pb2.AnswerOutcome(error_message=answer.player_token)

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        self.answer_streams += 1
        read: list[quiz_pb2.StreamAnswersRequest] = []
        async for request in requests:
            read.append(request)
            if len(read) == 4:
                for held in reversed(read):
                    outcomes = self._judge_batch(held.answers)
                    yield quiz_pb2.StreamAnswersResponse(batch_id=held.batch_id, outcomes=outcomes)
                read.clear()


async def test_batches_in_flight_together_on_one_stream_each_get_their_own_outcomes() -> None:
    quiz = AnswersOutOfOrder()
    async with served(quiz, answer_streams=1, answer_batches_in_flight=4, answer_batch_size=1) as upstream:
        answers = [quiz_pb2.Answer(player_token=f"p{index}", question_index=0, choice=0) for index in range(12)]
        outcomes = await asyncio.gather(*(upstream.submit_answer(a) for a in answers))
    assert [o.error_message for o in outcomes] == [a.player_token for a in answers]
    assert quiz.answer_streams == 1 and quiz.unary_batches == 0
    assert len(quiz.batch_sizes) == 12
