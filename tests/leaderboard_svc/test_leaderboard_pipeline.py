"""The projector, publisher and relay against in-memory engines and fakes of the ports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from leaderboard_svc.adapters.memory_store import MemoryLeaderboardStore
from leaderboard_svc.domain import Coalescer, PlayerJoined, RankingEvent
from leaderboard_svc.ports import StoreUnavailable
from leaderboard_svc.projector import Projector
from leaderboard_svc.publisher import LeaderboardPublisher
from leaderboard_svc.relay import Relay, Watcher
from quizmesh.eventbus.memory import InMemoryBus, InMemoryConsumer, InMemoryPublisher, InMemoryTailReader
from quizmesh.eventbus.ports import LEADERBOARD_UPDATED, USER_JOINED_QUIZ, EventBusUnavailable, Record
from quizmesh.eventcodec import decode, to_record
from quizmesh.events.v1 import events_pb2
from tests.support.loops import until

GROUP = "leaderboard_svc"


class FlakyStore(MemoryLeaderboardStore):
    """Unavailable for its first `failures` applies."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def apply(self, events: Sequence[RankingEvent]) -> set[str]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("down for the test")
        return await super().apply(events)


class FlakyPublisher(InMemoryPublisher):
    def __init__(self, bus: InMemoryBus, failures: int) -> None:
        super().__init__(bus)
        self.failures = failures

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        if self.failures:
            self.failures -= 1
            raise EventBusUnavailable("down for the test")
        await super().publish(records, timeout_s=timeout_s)


def joined(quiz_id: str, player_id: str) -> events_pb2.UserJoinedQuiz:
    return events_pb2.UserJoinedQuiz(event_id=player_id, quiz_id=quiz_id, player_id=player_id, nickname=player_id)


async def test_projector_skips_undecodable_records_and_commits_after_applying() -> None:
    bus = InMemoryBus()
    good = to_record(joined("q1", "ann"))
    await bus.append([Record(USER_JOINED_QUIZ, "q1", b"\xff\xff not protobuf"), good])
    store = MemoryLeaderboardStore()
    coalescer = Coalescer(interval_ms=100)
    consumer = InMemoryConsumer(bus, GROUP, [USER_JOINED_QUIZ])
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(Projector(consumer, store, coalescer).run(stop))
    await until(lambda: bus.committed(GROUP, USER_JOINED_QUIZ)[bus.partition_for("q1")] == 2)
    stop.set()
    await task
    assert [e.player_id for e in (await store.ranking("q1")).entries] == ["ann"]
    assert coalescer.take_due(now_ms=0) == ["q1"]


async def _projecting_a_join(store: FlakyStore) -> tuple[InMemoryBus, asyncio.Event, asyncio.Task[None]]:
    """A projector running over a bus that holds one join; stop the event to end it."""
    bus = InMemoryBus()
    await bus.append([to_record(joined("q1", "ann"))])
    consumer = InMemoryConsumer(bus, GROUP, [USER_JOINED_QUIZ])
    await consumer.start()
    stop = asyncio.Event()
    return bus, stop, asyncio.create_task(Projector(consumer, store, Coalescer(interval_ms=100)).run(stop))


async def test_projector_retries_the_same_batch_while_the_store_is_down() -> None:
    store = FlakyStore(failures=2)
    bus, stop, task = await _projecting_a_join(store)
    await until(lambda: store.failures == 0)
    assert sum(bus.committed(GROUP, USER_JOINED_QUIZ)) == 0, "committed before the store applied"
    await until(lambda: sum(bus.committed(GROUP, USER_JOINED_QUIZ)) == 1)
    assert [e.player_id for e in (await store.ranking("q1")).entries] == ["ann"]
    stop.set()
    await task


async def test_projector_stopping_while_the_store_is_down_leaves_the_batch_uncommitted() -> None:
    store = FlakyStore(failures=1_000)
    bus, stop, task = await _projecting_a_join(store)
    await until(lambda: store.failures < 1_000)
    stop.set()
    async with asyncio.timeout(5):
        await task
    assert sum(bus.committed(GROUP, USER_JOINED_QUIZ)) == 0


async def test_publisher_publishes_the_full_ranking_with_a_new_version() -> None:
    bus = InMemoryBus()
    store = MemoryLeaderboardStore()
    await store.apply([PlayerJoined("q1", "ann", "Ann", 10), PlayerJoined("q1", "bob", "Bob", 5)])
    coalescer = Coalescer(interval_ms=100)
    publisher = LeaderboardPublisher(store, InMemoryPublisher(bus), coalescer, clock=lambda: 0)
    coalescer.mark(["q1"])
    await publisher.publish(coalescer.take_due(now_ms=0))
    [record] = bus.read(LEADERBOARD_UPDATED, bus.partition_for("q1"), 0, 10)
    update = decode(record)
    assert isinstance(update, events_pb2.LeaderboardUpdated)
    assert (update.quiz_id, update.version) == ("q1", 1)
    assert [(e.player_id, e.nickname, e.score) for e in update.entries] == [("bob", "Bob", 0), ("ann", "Ann", 0)]
    assert not update.HasField("last_answer_time")


async def test_publisher_keeps_the_quiz_due_when_the_bus_is_down() -> None:
    bus = InMemoryBus()
    store = MemoryLeaderboardStore()
    await store.apply([PlayerJoined("q1", "ann", "Ann", 10)])
    coalescer = Coalescer(interval_ms=100)
    now = [0]
    publisher = LeaderboardPublisher(store, FlakyPublisher(bus, failures=1), coalescer, clock=lambda: now[0])
    coalescer.mark(["q1"])
    await publisher.publish(coalescer.take_due(now[0]))
    assert bus.end_offsets(LEADERBOARD_UPDATED) == [0] * 8
    now[0] = 100
    await publisher.publish(coalescer.take_due(now[0]))
    assert sum(bus.end_offsets(LEADERBOARD_UPDATED)) == 1


async def test_publisher_flushes_dirty_quizzes_on_stop() -> None:
    bus = InMemoryBus()
    store = MemoryLeaderboardStore()
    await store.apply([PlayerJoined("q1", "ann", "Ann", 10)])
    coalescer = Coalescer(interval_ms=60_000)
    publisher = LeaderboardPublisher(store, InMemoryPublisher(bus), coalescer, clock=lambda: 0)
    coalescer.mark(["q1"])
    await publisher.publish(coalescer.take_due(0))
    coalescer.mark(["q1"])  # not due for a minute
    stop = asyncio.Event()
    stop.set()
    await publisher.run(stop)
    assert sum(bus.end_offsets(LEADERBOARD_UPDATED)) == 2


def update(quiz_id: str, version: int) -> events_pb2.LeaderboardUpdated:
    return events_pb2.LeaderboardUpdated(event_id=f"{quiz_id}-{version}", quiz_id=quiz_id, version=version)


async def test_slow_watcher_holds_only_the_newest_update() -> None:
    watcher = Watcher()
    for version in range(1, 1_001):
        watcher.offer(update("q1", version))
    assert (await watcher.next()) == update("q1", 1_000)
    watcher.offer(update("q1", 999))  # a stale version from another publisher
    watcher.offer(update("q1", 1_001))
    watcher.offer(update("q1", 1_000))
    assert (await watcher.next()) == update("q1", 1_001)


async def test_watcher_skips_what_its_snapshot_already_shows() -> None:
    watcher = Watcher()
    watcher.offer(update("q1", 4))
    watcher.skip_through(5)
    watcher.offer(update("q1", 5))
    watcher.offer(update("q1", 6))
    assert (await watcher.next()) == update("q1", 6)


async def test_relay_dispatches_to_the_quizs_watchers_and_forgets_them_after() -> None:
    bus = InMemoryBus()
    relay = Relay(InMemoryTailReader(bus, [LEADERBOARD_UPDATED]))
    await relay.start()
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with relay.watch("q1") as first, relay.watch("q1") as second, relay.watch("q2") as other:
        await bus.append([to_record(update("q1", 1)), to_record(update("q2", 7))])
        async with asyncio.timeout(5):
            assert (await first.next()) == update("q1", 1)
            assert (await second.next()) == update("q1", 1)
            assert (await other.next()) == update("q2", 7)
    assert relay._watchers == {}
    stop.set()
    await task


async def test_closing_the_relay_ends_current_and_future_watches() -> None:
    relay = Relay(InMemoryTailReader(InMemoryBus(), [LEADERBOARD_UPDATED]))
    async with relay.watch("q1") as current:
        waiting = asyncio.create_task(current.next())
        await asyncio.sleep(0)
        relay.close()
        assert (await waiting) is None
    async with relay.watch("q1") as late:
        assert (await late.next()) is None
