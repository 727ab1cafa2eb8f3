"""quiz_svc through its composition root and gRPC contract, on both engine sets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from quiz_svc import main
from quiz_svc.grpc_api import MAX_BATCH
from quiz_svc.settings import Settings
from quizmesh.eventbus.ports import ANSWER_SUBMITTED, TailReader
from quizmesh.events.v1 import events_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from tests.support.infra import REAL, migrate_database, require_real_stack

pytestmark = pytest.mark.integration


@dataclass
class Running:
    stub: pb_grpc.QuizServiceStub
    answers: TailReader
    stop: asyncio.Event


@pytest.fixture(params=["embedded", "real"])
async def quiz_service(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Running]:
    if request.param == "real":
        require_real_stack()
        await migrate_database()  # a fresh database too: quiz_svc refuses to start on an older schema
        runtime = Runtime(REAL)
    else:
        runtime = Runtime(Engines.embedded(":memory:"))
    answers = runtime.tail_reader([ANSWER_SUBMITTED], "test-tail")
    await answers.start()
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    settings = Settings(
        "127.0.0.1:0",
        "127.0.0.1:9",
        signing_key=b"t" * 32,
        publish_timeout_ms=5000,
        scheduler_tick_ms=50,
        shutdown_grace_s=1,
    )
    task = asyncio.create_task(main.run(runtime, settings, stop, port.set_result))
    bound = await asyncio.wait_for(port, 30)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound}") as channel:
        yield Running(pb_grpc.QuizServiceStub(channel), answers, stop)
    stop.set()
    await asyncio.wait_for(task, 15)
    with contextlib.suppress(Exception):
        await answers.close()


QUESTION = pb.Question(text="2+2?", choices=["3", "4"], correct_choices=[1], time_limit_seconds=5)


async def test_an_accepted_answer_is_already_in_the_event_bus(quiz_service: Running) -> None:
    stub = quiz_service.stub
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    quiz_id = created.quiz.quiz_id
    joined = await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id=quiz_id, nickname="Ada"), timeout=10)
    assert joined.state.phase == pb.QUIZ_PHASE_LOBBY
    started = await stub.StartQuiz(pb.StartQuizRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    assert list(started.state.question.choices) == ["3", "4"]
    answer = pb.Answer(player_token=joined.player_token, question_index=0, choice=1)
    result = (await stub.SubmitAnswer(pb.SubmitAnswerRequest(answer=answer), timeout=10)).result
    assert result.correct and 500 <= result.points <= 1000 and result.total_score == result.points

    seen: list[events_pb2.AnswerSubmitted] = []
    for _ in range(50):
        for record in await quiz_service.answers.poll(100, 0.2):
            event = events_pb2.AnswerSubmitted.FromString(record.value)
            if event.quiz_id == quiz_id:
                seen.append(event)
        if seen:
            break
    assert [(e.event_id, e.points, e.player_id) for e in seen] == [
        (result.event_id, result.points, joined.player.player_id)
    ]


async def _open_question(stub: pb_grpc.QuizServiceStub, players: int) -> tuple[str, list[str]]:
    """A quiz with its first question open: its ID, and the players' tokens."""
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    quiz_id = created.quiz.quiz_id
    tokens = []
    for n in range(players):
        joined = await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id=quiz_id, nickname=f"P{n}"), timeout=10)
        tokens.append(joined.player_token)
    await stub.StartQuiz(pb.StartQuizRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    return quiz_id, tokens


async def _answered(call: Any, count: int) -> dict[int, list[pb.AnswerOutcome]]:
    responses = [await asyncio.wait_for(call.read(), 10) for _ in range(count)]
    return {r.batch_id: list(r.outcomes) for r in responses}


async def test_answer_batches_on_a_stream_are_answered_under_their_batch_ids(quiz_service: Running) -> None:
    _, (first, second, third) = await _open_question(quiz_service.stub, 3)
    call = quiz_service.stub.StreamAnswers()
    await call.write(
        pb.StreamAnswersRequest(
            batch_id=7,
            answers=[
                pb.Answer(player_token=first, question_index=0, choice=1),
                pb.Answer(player_token=second, question_index=0, choice=0),
            ],
        )
    )
    await call.write(
        pb.StreamAnswersRequest(batch_id=9, answers=[pb.Answer(player_token=third, question_index=0, choice=5)])
    )
    answered = await _answered(call, 2)
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert [(o.error, o.result.correct) for o in answered[7]] == [
        (pb.ANSWER_ERROR_UNSPECIFIED, True),
        (pb.ANSWER_ERROR_UNSPECIFIED, False),
    ]
    assert [o.error for o in answered[9]] == [pb.ANSWER_ERROR_INVALID_CHOICE]


async def _stream_with_one_batch_answered(stub: pb_grpc.QuizServiceStub) -> tuple[Any, str, str]:
    """A StreamAnswers call on which one player's answer was accepted; the player's token, the quiz's ID."""
    quiz_id, [player] = await _open_question(stub, 1)
    call = stub.StreamAnswers()
    await call.write(
        pb.StreamAnswersRequest(batch_id=1, answers=[pb.Answer(player_token=player, question_index=0, choice=1)])
    )
    answered = await _answered(call, 1)
    assert [o.error for o in answered[1]] == [pb.ANSWER_ERROR_UNSPECIFIED]
    return call, player, quiz_id


async def test_an_oversized_batch_ends_the_stream_after_the_batches_before_it(quiz_service: Running) -> None:
    call, player, _ = await _stream_with_one_batch_answered(quiz_service.stub)
    oversized = [pb.Answer(player_token=player, question_index=0, choice=1)] * (MAX_BATCH + 1)
    await call.write(pb.StreamAnswersRequest(batch_id=2, answers=oversized))
    assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_BATCH} answers" in await call.details()


async def test_a_stopping_quiz_svc_answers_what_it_read_and_ends_its_long_lived_calls(quiz_service: Running) -> None:
    call, _, quiz_id = await _stream_with_one_batch_answered(quiz_service.stub)
    watch = quiz_service.stub.WatchQuiz(pb.WatchQuizRequest(quiz_id=quiz_id))
    assert (await asyncio.wait_for(watch.read(), 10)).state.phase == pb.QUIZ_PHASE_QUESTION_OPEN
    quiz_service.stop.set()
    # Ended by the server while the caller still writes: the caller sends its next batches elsewhere. Both
    # end after the lame duck (0.5 s), not after the grace period for calls in flight.
    assert await asyncio.wait_for(call.read(), 10) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert await asyncio.wait_for(watch.read(), 10) is grpc.aio.EOF
    assert await watch.code() == grpc.StatusCode.OK


async def test_client_mistakes_get_actionable_statuses(quiz_service: Running) -> None:
    stub = quiz_service.stub
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id="NOPE2345", nickname="x"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    bad = pb.Question(text="q", choices=["only one"], correct_choices=[0], time_limit_seconds=10)
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[bad]), timeout=10)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2 to 6 choices" in (invalid.value.details() or "")
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.StartQuiz(pb.StartQuizRequest(quiz_id=created.quiz.quiz_id, host_token="forged"), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    state = await stub.GetQuizState(pb.GetQuizStateRequest(quiz_id=created.quiz.quiz_id), timeout=10)
    assert state.state.phase == pb.QUIZ_PHASE_LOBBY


async def test_the_host_is_told_so_and_alone_sees_the_correct_choices(quiz_service: Running) -> None:
    stub = quiz_service.stub
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    other = await stub.CreateQuiz(pb.CreateQuizRequest(title="Other", questions=[QUESTION]), timeout=10)
    quiz_id = created.quiz.quiz_id
    public = await stub.GetQuiz(pb.GetQuizRequest(quiz_id=quiz_id), timeout=10)
    hosted = await stub.GetQuiz(pb.GetQuizRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    elsewhere = await stub.GetQuiz(pb.GetQuizRequest(quiz_id=quiz_id, host_token=other.host_token), timeout=10)
    assert (public.host_verified, list(public.quiz.questions[0].correct_choices)) == (False, [])
    assert (hosted.host_verified, list(hosted.quiz.questions[0].correct_choices)) == (True, [1])
    assert (elsewhere.host_verified, list(elsewhere.quiz.questions[0].correct_choices)) == (False, [])


async def test_watch_quiz_streams_the_state_then_each_change(quiz_service: Running) -> None:
    stub = quiz_service.stub
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    quiz_id = created.quiz.quiz_id
    stream = stub.WatchQuiz(pb.WatchQuizRequest(quiz_id=quiz_id))
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.state.phase == pb.QUIZ_PHASE_LOBBY
    await stub.StartQuiz(pb.StartQuizRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    opened = await asyncio.wait_for(stream.read(), 10)
    assert opened.state.phase == pb.QUIZ_PHASE_QUESTION_OPEN
    assert not opened.HasField("results")
    await stub.CloseQuestion(pb.CloseQuestionRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    closed = await asyncio.wait_for(stream.read(), 10)
    assert closed.state.phase == pb.QUIZ_PHASE_QUESTION_CLOSED
    assert list(closed.results.correct_choices) == [1]
    stream.cancel()


async def test_a_quiz_runs_again_as_a_new_session(quiz_service: Running) -> None:
    stub = quiz_service.stub
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="Q", questions=[QUESTION]), timeout=10)
    quiz_id = created.quiz.quiz_id
    request = pb.StartSessionRequest(quiz_id=quiz_id, host_token=created.host_token)
    started = await stub.StartSession(request, timeout=10)
    session_id = started.session.session_id
    assert session_id == started.quiz.quiz_id != quiz_id
    assert (started.session.quiz_id, started.session.phase) == (quiz_id, pb.QUIZ_PHASE_LOBBY)
    host = pb.StartQuizRequest(quiz_id=session_id, host_token=started.host_token)
    assert (await stub.StartQuiz(host, timeout=10)).state.phase == pb.QUIZ_PHASE_QUESTION_OPEN

    listed = await stub.ListSessions(pb.ListSessionsRequest(quiz_id=quiz_id, host_token=created.host_token))
    assert [s.session_id for s in listed.sessions] == [session_id, quiz_id]
    assert quiz_id in [q.quiz_id for q in (await stub.ListQuizzes(pb.ListQuizzesRequest(page_size=1000))).quizzes]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.StartSession(pb.StartSessionRequest(quiz_id=quiz_id, host_token=started.host_token), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id=session_id, identity_token="a.b.c"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "QUIZMESH_IDENTITY_MODE" in (refused.value.details() or "")
