"""PersistenceService over a real grpc.aio server: paging, validation, and the composition root."""

from __future__ import annotations

import asyncio
import base64
import pathlib
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from persistence_svc.catch_up import CatchUp
from persistence_svc.consumer import SINK_TOPICS, ResultSink
from persistence_svc.domain import batch_of
from persistence_svc.event_rows import row_from_event
from persistence_svc.grpc_api import PersistenceServicer
from persistence_svc.main import SERVICE_NAME, run
from persistence_svc.ports import ResultStore
from persistence_svc.settings import Settings
from quizmesh.eventbus.memory import InMemoryBus, InMemoryConsumer, InMemoryGroupProgress, InMemoryPublisher
from quizmesh.eventcodec import Event, to_record
from quizmesh.grpc_server import GrpcServer, ServiceBinding
from quizmesh.persistence.v1 import persistence_service_pb2 as pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from tests.persistence_svc.persistence_factories import answered, joined, new_quiz_id

PLAYERS = 7
QUESTIONS = 3


GROUP = "persistence_svc"


@pytest.fixture
def bus() -> InMemoryBus:
    """The event bus the servicer's `caught_up` listings wait on (the sink's group is GROUP)."""
    return InMemoryBus()


@pytest.fixture
async def stub(store: ResultStore, bus: InMemoryBus) -> AsyncIterator[pb_grpc.PersistenceServiceAsyncStub]:
    servicer = PersistenceServicer(store, CatchUp(InMemoryGroupProgress(bus), GROUP))
    server = GrpcServer(
        "127.0.0.1:0", [ServiceBinding(SERVICE_NAME, pb_grpc.add_PersistenceServiceServicer_to_server, servicer)]
    )
    await server.start()
    try:
        await server.set_serving(True)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            # The async stub type exists only for type checkers; grpc.aio builds it from the plain one.
            yield cast("pb_grpc.PersistenceServiceAsyncStub", pb_grpc.PersistenceServiceStub(channel))
    finally:
        await server.stop(1)


async def _stored_quiz(store: ResultStore) -> str:
    quiz = new_quiz_id()
    events: list[Event] = [joined(quiz, f"p{p}", 10 * p) for p in range(PLAYERS)]
    events += [
        answered(quiz, q, f"p{p}", 1000 * q + 10 * (PLAYERS - p)) for q in range(QUESTIONS) for p in range(PLAYERS)
    ]
    await store.save(batch_of(row_from_event(e) for e in events))
    return quiz


async def test_list_answers_pages_through_every_answer_once(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub
) -> None:
    quiz = await _stored_quiz(store)
    seen: list[tuple[int, str]] = []
    token, pages = "", 0
    while True:
        response = await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, page_size=4, page_token=token), timeout=5)
        assert len(response.answers) <= 4
        seen += [(a.question_index, a.player_id) for a in response.answers]
        pages += 1
        token = response.next_page_token
        if not token:
            break
    # Within a question, later players answered earlier.
    assert seen == [(q, f"p{p}") for q in range(QUESTIONS) for p in reversed(range(PLAYERS))]
    assert pages == -(-PLAYERS * QUESTIONS // 4)
    whole = await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz), timeout=5)
    assert len(whole.answers) == PLAYERS * QUESTIONS and whole.next_page_token == ""
    first = whole.answers[0]
    assert (first.event_id, first.points, first.correct, first.streak, first.total_score) == (
        f"{quiz}/0/p{PLAYERS - 1}",
        500,
        True,
        1,
        500,
    )
    assert first.answer_time.ToMilliseconds() % 1000 == 10


async def test_list_participants_pages_in_join_order(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub
) -> None:
    quiz = await _stored_quiz(store)
    seen: list[str] = []
    token = ""
    while True:
        response = await stub.ListParticipants(
            pb.ListParticipantsRequest(quiz_id=quiz, page_size=3, page_token=token), timeout=5
        )
        seen += [p.player_id for p in response.participants]
        token = response.next_page_token
        if not token:
            break
    assert seen == [f"p{p}" for p in range(PLAYERS)]
    page = await stub.ListParticipants(pb.ListParticipantsRequest(quiz_id=quiz, page_size=1), timeout=5)
    assert page.participants[0].nickname == "nick-p0"


async def _invalid_argument(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(raised.value.details())


async def test_bad_requests_are_invalid_arguments_with_actionable_messages(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub
) -> None:
    quiz = await _stored_quiz(store)
    other_quiz_token = (
        await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, page_size=1), timeout=5)
    ).next_page_token
    participants_token = (
        await stub.ListParticipants(pb.ListParticipantsRequest(quiz_id=quiz, page_size=1), timeout=5)
    ).next_page_token
    forged = base64.urlsafe_b64encode(b'{"v":1,"k":"a","q":"%s","i":-1,"t":0,"p":"x"}' % quiz.encode()).decode()

    assert "quiz_id is empty" in await _invalid_argument(stub.ListAnswers(pb.ListAnswersRequest(), timeout=5))
    assert "quiz_id is empty" in await _invalid_argument(stub.ListParticipants(pb.ListParticipantsRequest(), timeout=5))
    assert "page_size is -1" in await _invalid_argument(
        stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, page_size=-1), timeout=5)
    )
    for bad in ("not a token!", "e30", participants_token, forged):
        message = await _invalid_argument(
            stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, page_token=bad), timeout=5)
        )
        assert "pass next_page_token from the previous response unchanged" in message
    assert "another quiz" in await _invalid_argument(
        stub.ListAnswers(pb.ListAnswersRequest(quiz_id=new_quiz_id(), page_token=other_quiz_token), timeout=5)
    )


async def test_page_size_above_the_maximum_is_capped(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub
) -> None:
    quiz = await _stored_quiz(store)
    response = await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, page_size=2**31 - 1), timeout=5)
    assert len(response.answers) == PLAYERS * QUESTIONS and response.next_page_token == ""


async def test_a_caught_up_listing_waits_until_the_sink_stored_what_kafka_held(
    store: ResultStore, bus: InMemoryBus, stub: pb_grpc.PersistenceServiceAsyncStub
) -> None:
    """A rebuild after a Redis loss reads `caught_up`: it must see every answer the bus held when it asked,
    not only those the sink (stopped here) stored so far."""
    quiz = new_quiz_id()
    events: list[Event] = [joined(quiz, f"p{p}", p) for p in range(3)]
    events += [answered(quiz, q, f"p{p}", 100 * q + p) for q in range(2) for p in range(3)]
    await InMemoryPublisher(bus).publish([to_record(e) for e in events], timeout_s=1)

    stored_so_far = await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz), timeout=5)
    assert list(stored_so_far.answers) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, caught_up=True), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "had not stored every event Kafka holds" in (refused.value.details() or "")

    waiting = asyncio.ensure_future(stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, caught_up=True), timeout=10))
    consumer = InMemoryConsumer(bus, GROUP, SINK_TOPICS)
    await consumer.start()
    stop = asyncio.Event()
    sink = asyncio.create_task(ResultSink(consumer, store).run(stop))
    try:
        answers = (await waiting).answers
        participants = await stub.ListParticipants(pb.ListParticipantsRequest(quiz_id=quiz, caught_up=True), timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(sink, 10)
    assert sorted((a.question_index, a.player_id) for a in answers) == [
        (q, f"p{p}") for q in range(2) for p in range(3)
    ]
    assert [p.player_id for p in participants.participants] == ["p0", "p1", "p2"]


async def test_the_service_stores_events_and_serves_them_until_stopped(tmp_path: pathlib.Path) -> None:
    runtime = Runtime(Engines.embedded(sqlite_path=str(tmp_path / "embedded.sqlite3")))
    settings = Settings.from_env({"QUIZMESH_PERSISTENCE_ADDR": "127.0.0.1:0"})
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(run(runtime, settings, stop, on_ready=ready.set_result))
    try:
        port = await asyncio.wait_for(ready, 10)
        quiz = new_quiz_id()
        await runtime.publisher("test").publish(
            [to_record(joined(quiz, "p1", 1)), to_record(answered(quiz, 0, "p1", 5))], timeout_s=1
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.PersistenceServiceStub(channel)
            # Caught up: served once the service's own sink has stored what was just published.
            response = await stub.ListAnswers(pb.ListAnswersRequest(quiz_id=quiz, caught_up=True), timeout=5)
            assert [(a.question_index, a.player_id) for a in response.answers] == [(0, "p1")]
    finally:
        stop.set()
        await asyncio.wait_for(service, 10)
    assert service.exception() is None
