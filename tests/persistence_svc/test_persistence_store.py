"""The ResultStore's behaviour, the same on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from persistence_svc.domain import AnswerCursor, AnswerRow, ParticipantRow, StoreBatch, batch_of
from persistence_svc.event_rows import row_from_event
from persistence_svc.ports import Listing, ResultStore
from quizmesh.events.v1 import events_pb2
from tests.persistence_svc.persistence_factories import BASE_MS, answered, joined, left, new_quiz_id

_RowT = TypeVar("_RowT")
_CursorT = TypeVar("_CursorT")


def _batch(*events: events_pb2.UserJoinedQuiz | events_pb2.AnswerSubmitted | events_pb2.UserLeftQuiz) -> StoreBatch:
    return batch_of(row_from_event(e) for e in events)


async def _every_row(listing: Listing[_RowT, _CursorT], quiz_id: str, page_size: int) -> list[_RowT]:
    rows: list[_RowT] = []
    after: _CursorT | None = None
    while True:
        page = await listing(quiz_id, page_size, after)
        rows.extend(page.items)
        if page.next_after is None:
            return rows
        after = page.next_after


async def _all_answers(store: ResultStore, quiz_id: str, page_size: int = 1000) -> list[AnswerRow]:
    return await _every_row(store.list_answers, quiz_id, page_size)


async def _all_participants(store: ResultStore, quiz_id: str, page_size: int = 1000) -> list[ParticipantRow]:
    return await _every_row(store.list_participants, quiz_id, page_size)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp((BASE_MS + ms) / 1000, tz=UTC)


async def test_saving_the_same_batch_twice_stores_each_row_once(store: ResultStore) -> None:
    quiz = new_quiz_id()
    batch = _batch(
        joined(quiz, "p1", 1), joined(quiz, "p2", 2), answered(quiz, 0, "p1", 10), answered(quiz, 0, "p2", 11)
    )
    await store.save(batch)
    await store.save(batch)
    assert [(a.question_index, a.player_id) for a in await _all_answers(store, quiz)] == [(0, "p1"), (0, "p2")]
    assert [p.player_id for p in await _all_participants(store, quiz)] == ["p1", "p2"]


async def test_a_redelivered_answer_keeps_the_stored_values(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(_batch(answered(quiz, 0, "p1", 10, choice=1, points=900)))
    await store.save(_batch(answered(quiz, 0, "p1", 20, choice=2, points=0), answered(quiz, 1, "p1", 30)))
    answers = await _all_answers(store, quiz)
    assert [(a.question_index, a.choice, a.points, a.answered_at) for a in answers] == [
        (0, 1, 900, _at(10)),
        (1, 1, 500, _at(30)),
    ]


async def test_duplicates_within_a_batch_store_the_first(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(
        _batch(
            joined(quiz, "p1", 1, "first"),
            answered(quiz, 0, "p1", 10, choice=3),
            joined(quiz, "p1", 2, "second"),
            answered(quiz, 0, "p1", 12, choice=4),
        )
    )
    assert [(a.player_id, a.choice) for a in await _all_answers(store, quiz)] == [("p1", 3)]
    assert [(p.player_id, p.nickname) for p in await _all_participants(store, quiz)] == [("p1", "first")]


async def test_answers_are_listed_by_question_then_answer_time_then_player(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(
        _batch(
            answered(quiz, 1, "a", 500),
            answered(quiz, 0, "c", 300),
            answered(quiz, 0, "b", 100),
            answered(quiz, 0, "a", 300),
            answered(quiz, 1, "b", 400),
            answered(new_quiz_id(), 0, "a", 1),
        )
    )
    expected = [(0, "b"), (0, "a"), (0, "c"), (1, "b"), (1, "a")]
    for page_size in (1, 2, 5, 1000):
        answers = await _all_answers(store, quiz, page_size)
        assert [(a.question_index, a.player_id) for a in answers] == expected, page_size


async def test_a_full_last_page_reports_no_next_page(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(_batch(*(answered(quiz, 0, f"p{i}", i) for i in range(4))))
    first = await store.list_answers(quiz, 2, None)
    assert first.next_after == AnswerCursor(0, _at(1), "p1")
    second = await store.list_answers(quiz, 2, first.next_after)
    assert [a.player_id for a in second.items] == ["p2", "p3"]
    assert second.next_after is None


async def test_participants_are_listed_in_join_order(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(_batch(joined(quiz, "z", 1), joined(quiz, "c", 3), joined(quiz, "b", 3)))
    await store.save(_batch(joined(quiz, "a", 7), joined(new_quiz_id(), "x", 0)))
    for page_size in (1, 3, 1000):
        participants = await _all_participants(store, quiz, page_size)
        assert [p.player_id for p in participants] == ["z", "b", "c", "a"], page_size
    first = (await store.list_participants(quiz, 1, None)).items[0]
    assert first == ParticipantRow(quiz, "z", "nick-z", _at(1), 1, left_at=None, kicked=False)


async def test_a_leave_marks_left_at_and_a_kick_marks_kicked(store: ResultStore) -> None:
    quiz = new_quiz_id()
    await store.save(_batch(joined(quiz, "stays", 1), joined(quiz, "leaves", 2), joined(quiz, "kicked", 3)))
    await store.save(_batch(left(quiz, "leaves", 40), left(quiz, "kicked", 50, kicked=True)))
    await store.save(_batch(left(quiz, "leaves", 40)))
    rows = {p.player_id: (p.left_at, p.kicked) for p in await _all_participants(store, quiz)}
    assert rows == {"stays": (None, False), "leaves": (_at(40), False), "kicked": (_at(50), True)}


async def test_a_leave_stored_before_its_join_is_completed_by_the_join(store: ResultStore) -> None:
    # The two events travel on different topics, so a replay may bring the leave first.
    quiz = new_quiz_id()
    await store.save(_batch(left(quiz, "p1", 90, kicked=True)))
    assert await _all_participants(store, quiz) == []
    await store.save(_batch(joined(quiz, "p1", 5, "Ada")))
    await store.save(_batch(joined(quiz, "p1", 5, "Ada"), left(quiz, "p1", 60)))
    assert await _all_participants(store, quiz) == [
        ParticipantRow(quiz, "p1", "Ada", _at(5), 5, left_at=_at(90), kicked=True)
    ]


async def test_an_unknown_quiz_lists_nothing(store: ResultStore) -> None:
    quiz = new_quiz_id()
    assert (await store.list_answers(quiz, 10, None)).items == ()
    page = await store.list_participants(quiz, 10, None)
    assert page.items == () and page.next_after is None
