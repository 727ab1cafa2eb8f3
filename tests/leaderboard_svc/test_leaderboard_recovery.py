"""Recovery: the durable publication marks, and rankings rebuilt from the history persistence_svc stored."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from leaderboard_svc.adapters.memory_store import MemoryLeaderboardStore
from leaderboard_svc.adapters.persistence_history import PersistenceRankingHistory
from leaderboard_svc.domain import AnswerScored, Coalescer, PlayerJoined, PlayerLeft, RankingEvent
from leaderboard_svc.ports import HistoryUnavailable, LeaderboardStore
from leaderboard_svc.projector import Projector
from leaderboard_svc.publisher import LeaderboardPublisher
from leaderboard_svc.rebuild import Rebuilder, rebuild
from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.catch_up import CatchUp
from persistence_svc.domain import batch_of
from persistence_svc.event_rows import row_from_event
from persistence_svc.grpc_api import PersistenceServicer
from persistence_svc.main import SERVICE_NAME as PERSISTENCE
from quizmesh.eventbus.memory import InMemoryBus, InMemoryConsumer, InMemoryGroupProgress, InMemoryPublisher
from quizmesh.eventbus.ports import ANSWER_SUBMITTED, LEADERBOARD_UPDATED
from quizmesh.eventcodec import Event, decode, to_record
from quizmesh.events.v1 import events_pb2
from quizmesh.grpc_server import GrpcServer, ServiceBinding
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc
from tests.persistence_svc import persistence_factories as events
from tests.support.infra import migrate_database
from tests.support.loops import until

HISTORY: list[RankingEvent] = [
    PlayerJoined("q", "ann", "Ann", 10),
    PlayerJoined("q", "bob", "Bob", 20),
    PlayerJoined("q", "cy", "Cy", 30),
    AnswerScored("q", "ann", 0, 900, 1000, 5000),
    AnswerScored("q", "bob", 0, 950, 1100, 5100),
    AnswerScored("q", "ann", 1, 1800, 2000, 6000),
    PlayerLeft("q", "cy"),
]


class FakeHistory:
    def __init__(self, stored: list[RankingEvent], failures: int = 0) -> None:
        self.stored = stored
        self.failures = failures
        self.reads = 0

    async def events(self, quiz_id: str) -> list[RankingEvent]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise HistoryUnavailable("down for the test")
        return [e for e in self.stored if e.quiz_id == quiz_id]

    async def close(self) -> None:
        return None


async def ranking(store: LeaderboardStore, quiz_id: str = "q") -> list[tuple[str, str, int]]:
    snapshot = await store.ranking(quiz_id)
    return [(e.player_id, e.nickname, e.score) for e in snapshot.entries]


async def test_a_quiz_is_marked_before_it_changes_and_a_newer_mark_survives_clearing(
    store: LeaderboardStore, quiz_id: str
) -> None:
    await store.apply([PlayerJoined(quiz_id, "ann", "Ann", 1)])
    first = await store.dirty_marks([quiz_id])
    assert set(first) == {quiz_id}
    await store.apply([AnswerScored(quiz_id, "ann", 0, 500, 2, 3)])
    await store.clear_dirty(first)  # a publication that read the ranking before the second batch
    second = await store.dirty_marks([quiz_id])
    assert second and second != first
    await store.clear_dirty(second)
    assert await store.dirty_marks([quiz_id]) == {}


async def test_a_ranking_is_unbuilt_until_marked_and_its_version_only_rises(
    store: LeaderboardStore, quiz_id: str
) -> None:
    await store.apply([PlayerJoined(quiz_id, "ann", "Ann", 1)])
    assert await store.unbuilt([quiz_id]) == {quiz_id}
    await store.mark_built(quiz_id, 1_000)
    assert await store.unbuilt([quiz_id]) == set()
    await store.mark_built(quiz_id, 10)
    assert (await store.next_ranking(quiz_id)).version == 1_001


async def test_a_rebuild_gives_the_live_ranking_whatever_was_applied_before() -> None:
    live = MemoryLeaderboardStore()
    await live.apply(HISTORY)
    for already_applied in ([], HISTORY[:4], HISTORY[3:], HISTORY):
        rebuilt = MemoryLeaderboardStore()
        await rebuilt.apply(already_applied)
        assert await rebuild("q", rebuilt, FakeHistory(HISTORY), clock=lambda: 7) == len(HISTORY)
        assert await ranking(rebuilt) == await ranking(live) == [("ann", "Ann", 1800), ("bob", "Bob", 950)]
        assert await rebuilt.unbuilt(["q"]) == set()


async def test_the_projector_queues_unbuilt_quizzes_and_the_rebuilder_rebuilds_them() -> None:
    store = MemoryLeaderboardStore()
    coalescer = Coalescer(interval_ms=100)
    history = FakeHistory(HISTORY, failures=1)
    rebuilder = Rebuilder(store, history, coalescer)
    bus = InMemoryBus()
    # Redis lost everything but bob's second answer arrives: the ranking would hold bob alone.
    await bus.append([to_record(_answer("q", "bob", 1, 1900))])
    consumer = InMemoryConsumer(bus, "leaderboard_svc", (ANSWER_SUBMITTED,))
    await consumer.start()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(Projector(consumer, store, coalescer, rebuilder).run(stop)),
        asyncio.create_task(rebuilder.run(stop)),
    ]
    await until(lambda: history.reads >= 2 and not rebuilder.pending)  # a failed read, then the rebuild
    stop.set()
    await asyncio.gather(*tasks)
    assert await ranking(store) == [("bob", "Bob", 1900), ("ann", "Ann", 1800)]
    assert await store.unbuilt(["q"]) == set()
    assert "q" in coalescer.take_all()


async def test_a_stopping_rebuilder_leaves_the_quizzes_still_due_to_the_next_process() -> None:
    stop = asyncio.Event()

    class StoppedDuringFirstRead(FakeHistory):
        async def events(self, quiz_id: str) -> list[RankingEvent]:
            stop.set()  # the process is told to stop while the first of many rebuilds runs
            return await super().events(quiz_id)

    history = StoppedDuringFirstRead(HISTORY)
    rebuilder = Rebuilder(MemoryLeaderboardStore(), history, Coalescer(interval_ms=100))
    rebuilder.request(f"quiz-{n}" for n in range(100))
    async with asyncio.timeout(10):
        await rebuilder.run(stop)
    assert history.reads == 1


async def test_a_publisher_starting_after_a_crash_publishes_what_was_applied_but_not_published() -> None:
    store = MemoryLeaderboardStore()
    await store.apply(HISTORY)  # applied and committed; the process died before publishing
    bus = InMemoryBus()
    publisher = LeaderboardPublisher(store, InMemoryPublisher(bus), Coalescer(interval_ms=100))
    stop = asyncio.Event()
    running = asyncio.create_task(publisher.run(stop))
    await until(lambda: sum(bus.end_offsets(LEADERBOARD_UPDATED)) > 0)
    stop.set()
    await running
    partition = next(i for i, end in enumerate(bus.end_offsets(LEADERBOARD_UPDATED)) if end)
    published = decode(bus.read(LEADERBOARD_UPDATED, partition, 0, 1)[0])
    assert [e.player_id for e in published.entries] == ["ann", "bob"]  # type: ignore[union-attr]
    assert await store.dirty_marks() == {}


async def test_only_marks_unchanged_for_a_whole_scan_are_adopted() -> None:
    store = MemoryLeaderboardStore()
    coalescer = Coalescer(interval_ms=100)
    publisher = LeaderboardPublisher(store, InMemoryPublisher(InMemoryBus()), coalescer)
    await publisher.adopt_stale_marks()  # the first scan: nothing marked yet
    await store.apply([PlayerJoined("live", "ann", "Ann", 1), PlayerJoined("orphan", "bob", "Bob", 1)])
    await publisher.adopt_stale_marks()
    assert coalescer.take_all() == []  # both marks are new
    await store.apply([PlayerJoined("live", "cy", "Cy", 2)])  # its owner keeps applying
    await publisher.adopt_stale_marks()
    assert coalescer.take_all() == ["orphan"]


def _answer(quiz_id: str, player_id: str, question: int, total: int) -> events_pb2.AnswerSubmitted:
    event = events.answered(quiz_id, question, player_id, 5000 + question)
    event.total_score = total
    return event


@contextlib.asynccontextmanager
async def history_of(postgres_dsn: str, stored: Sequence[Event]) -> AsyncIterator[PersistenceRankingHistory]:
    """The events stored as persistence_svc stores them, read back through a real PersistenceService (whose
    bus holds nothing more: the history's caught-up reads wait for nothing)."""
    await migrate_database()
    results = await PostgresResultStore.connect(postgres_dsn)
    caught_up = CatchUp(InMemoryGroupProgress(InMemoryBus()), "persistence_svc")
    servicer = PersistenceServicer(results, caught_up)
    server = GrpcServer(
        "127.0.0.1:0", [ServiceBinding(PERSISTENCE, pb_grpc.add_PersistenceServiceServicer_to_server, servicer)]
    )
    try:
        await results.ensure_schema()
        await results.save(batch_of([row_from_event(e) for e in stored]))
        await server.start()
        await server.set_serving(True)
        history = PersistenceRankingHistory(f"127.0.0.1:{server.port}")
        try:
            yield history
        finally:
            await history.close()
    finally:
        await server.stop(1)
        await results.close()


@pytest.mark.integration
async def test_the_history_reads_what_persistence_svc_stored_through_its_grpc_api(postgres_dsn: str) -> None:
    quiz_id = f"quiz-{uuid.uuid4().hex}"
    stored: list[Event] = [
        events.joined(quiz_id, "ann", 10, "Ann"),
        events.joined(quiz_id, "bob", 20, "Bob"),
        events.answered(quiz_id, 1, "ann", 3000),
        events.answered(quiz_id, 0, "ann", 1000),
        events.left(quiz_id, "bob", 4000),
    ]
    async with history_of(postgres_dsn, stored) as history:
        replay = await history.events(quiz_id)
    assert replay == [
        PlayerJoined(quiz_id, "ann", "Ann", 10),
        PlayerJoined(quiz_id, "bob", "Bob", 20),
        AnswerScored(quiz_id, "ann", 0, 500, 1000, events.BASE_MS + 1000),
        AnswerScored(quiz_id, "ann", 1, 1000, 3000, events.BASE_MS + 3000),
        PlayerLeft(quiz_id, "bob"),
    ]


@pytest.mark.integration
async def test_a_ranking_rebuilt_from_postgres_keeps_who_reached_each_score_first(
    store: LeaderboardStore, postgres_dsn: str
) -> None:
    # Issue 14's two cases: twelve players joining a few milliseconds apart stay at 0, and two reach
    # 1,984 points with one answer each, at 312 and 316 ms after the question opened. Player IDs run
    # against the expected order, so a fallback to the player ID would show.
    quiz_id = f"quiz-{uuid.uuid4().hex}"
    joiners = [f"p{n:02}" for n in range(12)]
    opened = 61_000
    stored: list[Event] = [
        events.joined(quiz_id, player, 40_000 + 3 * n) for n, player in enumerate(["amy", "zed", *joiners])
    ]
    for player, response_ms in (("zed", 316), ("amy", 312)):
        answer = events.answered(quiz_id, 0, player, opened + response_ms, points=1_984)
        answer.total_score = 1_984
        stored.append(answer)
    async with history_of(postgres_dsn, stored) as history:
        await rebuild(quiz_id, store, history)
    assert [e.player_id for e in (await store.ranking(quiz_id)).entries] == ["amy", "zed", *joiners]


async def test_the_history_is_unavailable_while_persistence_svc_is_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    history = PersistenceRankingHistory(address, timeout_s=1.0)
    try:
        with pytest.raises(HistoryUnavailable, match="UNAVAILABLE"):
            await history.events("q")
    finally:
        await history.close()
