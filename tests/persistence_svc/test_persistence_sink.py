"""The sink loop: events in, rows out, offsets committed only after the rows are stored.

The crash test runs twice: on the in-memory bus with SQLite, and on the real Kafka with PostgreSQL.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.adapters.sqlite import SqliteResultStore
from persistence_svc.consumer import SINK_TOPICS, ResultSink, SinkTuning
from persistence_svc.domain import (
    StoreBatch,
)
from persistence_svc.ports import ResultStore, ResultWriter, StoreUnavailable
from quizmesh.eventbus.kafka import KafkaConsumer, KafkaPublisher
from quizmesh.eventbus.ports import ANSWER_SUBMITTED, ConsumedRecord, EventConsumer, EventPublisher, Record
from quizmesh.eventcodec import Event, to_record
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from tests.persistence_svc.persistence_factories import answered, joined, left, new_quiz_id
from tests.support.infra import migrate_database
from tests.support.loops import running

FAST_RETRY = SinkTuning(retry_initial_s=0.05, retry_max_s=0.2)


class _Recording:
    """A real consumer, noting what it delivered; with crash_at_commit, the process 'dies' where
    the offset commit would have been sent, so the commit never happens."""

    def __init__(self, inner: EventConsumer, crash_at_commit: asyncio.Event | None = None) -> None:
        self._inner = inner
        self._crash_at_commit = crash_at_commit
        self.delivered: list[ConsumedRecord] = []
        self.commits = 0

    async def start(self) -> None:
        await self._inner.start()

    async def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        records = await self._inner.poll(max_records, timeout_s)
        self.delivered.extend(records)
        return records

    async def commit(self) -> None:
        if self._crash_at_commit is not None:
            self._crash_at_commit.set()
            return
        await self._inner.commit()
        self.commits += 1

    async def close(self) -> None:
        await self._inner.close()


class _FlakyStore:
    """A real store whose first `failures` saves fail as an unreachable database's would."""

    def __init__(self, inner: ResultWriter, failures: int, on_failure: Callable[[], None]) -> None:
        self._inner = inner
        self._failures = failures
        self._on_failure = on_failure
        self.attempts = 0

    async def save(self, batch: StoreBatch) -> None:
        self.attempts += 1
        if self._failures:
            self._failures -= 1
            self._on_failure()
            raise StoreUnavailable("connection refused (simulated)")
        await self._inner.save(batch)


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def _answers(store: ResultStore, quiz_id: str) -> list[tuple[int, str]]:
    page = await store.list_answers(quiz_id, 10_000, None)
    return [(a.question_index, a.player_id) for a in page.items]


async def _publish(publisher: EventPublisher, events: list[Event]) -> None:
    await publisher.publish([to_record(e) for e in events], timeout_s=10)


def _quiz_events(quiz: str, players: int = 3, questions: int = 2) -> list[Event]:
    events: list[Event] = [joined(quiz, f"p{p}", p) for p in range(players)]
    events += [answered(quiz, q, f"p{p}", 100 * q + p) for q in range(questions) for p in range(players)]
    events.append(left(quiz, "p0", 1000, kicked=True))
    return events


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(Engines.embedded(sqlite_path=""))


@pytest.fixture
async def sqlite_store(tmp_path: pathlib.Path) -> AsyncIterator[ResultStore]:
    store = await SqliteResultStore.open(str(tmp_path / "sink.sqlite3"))
    await store.ensure_schema()
    yield store
    await store.close()


async def test_events_become_rows_and_offsets_are_committed(runtime: Runtime, sqlite_store: ResultStore) -> None:
    quiz, group = new_quiz_id(), f"g-{uuid.uuid4().hex}"
    await _publish(runtime.publisher("test"), _quiz_events(quiz))
    consumer = _Recording(runtime.consumer(group, SINK_TOPICS, "test"))
    await consumer.start()
    async with running(ResultSink(consumer, sqlite_store).run):
        await _eventually(lambda: _has_answers(sqlite_store, quiz, 6), "6 stored answers")
        await _eventually(_async(lambda: consumer.commits > 0), "an offset commit")
    participants = (await sqlite_store.list_participants(quiz, 10, None)).items
    assert [(p.player_id, p.kicked) for p in participants] == [("p0", True), ("p1", False), ("p2", False)]
    again = runtime.consumer(group, SINK_TOPICS, "test")
    await again.start()
    assert await again.poll(100, 0.05) == []


async def test_undecodable_and_invalid_records_are_skipped(runtime: Runtime, sqlite_store: ResultStore) -> None:
    quiz, group = new_quiz_id(), f"g-{uuid.uuid4().hex}"
    publisher = runtime.publisher("test")
    await publisher.publish([Record(ANSWER_SUBMITTED, quiz, b"\xff\xff not protobuf")], timeout_s=1)
    await _publish(publisher, [answered(quiz, 0, "", 1), answered(quiz, 0, "p1", 2)])
    consumer = _Recording(runtime.consumer(group, SINK_TOPICS, "test"))
    await consumer.start()
    async with running(ResultSink(consumer, sqlite_store).run):
        await _eventually(_async(lambda: consumer.commits > 0), "an offset commit")
    assert await _answers(sqlite_store, quiz) == [(0, "p1")]
    assert len(consumer.delivered) == 3


async def test_a_transient_store_error_retries_the_batch_before_committing(
    runtime: Runtime, sqlite_store: ResultStore
) -> None:
    quiz, group = new_quiz_id(), f"g-{uuid.uuid4().hex}"
    await _publish(runtime.publisher("test"), _quiz_events(quiz))
    committed_during_failures: list[list[int]] = []
    flaky = _FlakyStore(
        sqlite_store,
        failures=2,
        on_failure=lambda: committed_during_failures.append(
            list(runtime.memory_bus.committed(group, ANSWER_SUBMITTED))
        ),
    )
    consumer = _Recording(runtime.consumer(group, SINK_TOPICS, "test"))
    await consumer.start()
    async with running(ResultSink(consumer, flaky, FAST_RETRY).run):
        await _eventually(_async(lambda: consumer.commits > 0), "an offset commit")
    assert flaky.attempts == 3
    assert all(sum(offsets) == 0 for offsets in committed_during_failures)
    assert len(await _answers(sqlite_store, quiz)) == 6
    assert sum(runtime.memory_bus.committed(group, ANSWER_SUBMITTED)) == 6


async def test_stopping_while_the_store_is_down_commits_nothing_and_does_not_spin(
    runtime: Runtime, sqlite_store: ResultStore
) -> None:
    quiz, group = new_quiz_id(), f"g-{uuid.uuid4().hex}"
    await _publish(runtime.publisher("test"), _quiz_events(quiz))
    down = _FlakyStore(sqlite_store, failures=1_000_000, on_failure=lambda: None)
    consumer = _Recording(runtime.consumer(group, SINK_TOPICS, "test"))
    await consumer.start()
    async with running(ResultSink(consumer, down, SinkTuning(retry_initial_s=0.05, retry_max_s=1.0)).run):
        await asyncio.sleep(0.5)
    # Backoff 0.05, 0.1, 0.2, 0.4: about five attempts in half a second, not thousands.
    assert 2 <= down.attempts <= 6
    assert consumer.commits == 0
    assert sum(runtime.memory_bus.committed(group, ANSWER_SUBMITTED)) == 0


async def test_a_crash_between_db_commit_and_offset_commit_redelivers_without_duplicates_in_memory(
    runtime: Runtime, sqlite_store: ResultStore
) -> None:
    quiz, group = new_quiz_id(), f"g-{uuid.uuid4().hex}"
    events = _quiz_events(quiz)
    await _publish(runtime.publisher("test"), events)
    await _crash_then_recover(lambda: runtime.consumer(group, SINK_TOPICS, "test"), sqlite_store, quiz, events)
    after_recovery = runtime.consumer(group, SINK_TOPICS, "test")
    await after_recovery.start()
    assert await after_recovery.poll(100, 0.05) == []


@pytest.mark.integration
async def test_a_crash_between_db_commit_and_offset_commit_redelivers_without_duplicates_on_kafka(
    kafka_bootstrap: str, postgres_dsn: str
) -> None:
    quiz, group = new_quiz_id(), f"persistence_svc-test-{uuid.uuid4().hex}"
    await _start_group_at_end(kafka_bootstrap, group)
    events = _quiz_events(quiz)
    publisher = KafkaPublisher(kafka_bootstrap, client_id="persistence-test")
    try:
        await _publish(publisher, events)
    finally:
        await publisher.close()
    await migrate_database()
    store = await PostgresResultStore.connect(postgres_dsn, pool_size=2)
    try:
        await store.ensure_schema()
        await _crash_then_recover(
            lambda: KafkaConsumer(kafka_bootstrap, group, SINK_TOPICS, client_id="persistence-test"),
            store,
            quiz,
            events,
        )
    finally:
        await store.close()


async def _crash_then_recover(
    new_consumer: Callable[[], EventConsumer], store: ResultStore, quiz: str, events: list[Event]
) -> None:
    crashed = asyncio.Event()
    first = _Recording(new_consumer(), crash_at_commit=crashed)
    await first.start()
    try:
        await asyncio.wait_for(ResultSink(first, store).run(crashed), 30)
    finally:
        await first.close()  # a crash: the consumer leaves without having committed anything
    stored_before_crash = await _answers(store, quiz)
    delivered_before_crash = {(r.topic, r.partition, r.offset) for r in first.delivered}
    assert delivered_before_crash, "the first consumer stored nothing before its crash"

    second = _Recording(new_consumer())
    await second.start()
    try:
        async with running(ResultSink(second, store).run):
            await _eventually(
                _async(lambda: len(second.delivered) >= len(events) and second.commits > 0),
                "redelivery of every event and a commit",
            )
    finally:
        await second.close()
    redelivered = {(r.topic, r.partition, r.offset) for r in second.delivered}
    assert delivered_before_crash <= redelivered, "records stored before the crash were not redelivered"
    answers = await _answers(store, quiz)
    assert set(stored_before_crash) <= set(answers)
    assert sorted(answers) == sorted({(q, f"p{p}") for q in range(2) for p in range(3)})
    participants = (await store.list_participants(quiz, 10, None)).items
    assert [(p.player_id, p.kicked) for p in participants] == [("p0", True), ("p1", False), ("p2", False)]


async def _start_group_at_end(bootstrap: str, group: str) -> None:
    """Commits the group's offsets at the topics' current ends, so the test reads only its own events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(SINK_TOPICS))
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    assert partitions, f"no partitions of {SINK_TOPICS} on {bootstrap}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def _has_answers(store: ResultStore, quiz: str, count: int) -> bool:
    return len(await _answers(store, quiz)) >= count


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped
