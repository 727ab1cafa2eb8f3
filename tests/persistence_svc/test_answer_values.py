"""Every question kind's answer is stored as given, on both engines, and a database from before kinds
keeps its answers as single choices."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from persistence_svc.adapters.sqlite import SqliteResultStore
from persistence_svc.domain import AnswerRow, StoreBatch
from persistence_svc.event_rows import row_from_event
from persistence_svc.grpc_api import _answer as stored_answer_pb
from persistence_svc.ports import ResultStore
from quizmesh.quiz.v1 import answer_value_pb2 as pb
from tests.persistence_svc.persistence_factories import answered, new_quiz_id

VALUES = [
    pb.AnswerValue(choice=2),
    pb.AnswerValue(choices=pb.ChoiceSet(choices=[0, 2])),
    pb.AnswerValue(truth=False),
    pb.AnswerValue(text="  Éléphant, s'il vous plaît 🐘 "),
    pb.AnswerValue(order=pb.ItemOrder(positions=[2, 0, 1])),
    pb.AnswerValue(number="-1969.25"),
]


async def test_each_kinds_answer_is_stored_and_listed_as_given(store: ResultStore) -> None:
    quiz = new_quiz_id()
    rows = [row_from_event(answered(quiz, index, "p1", 10 + index, value=value)) for index, value in enumerate(VALUES)]
    assert all(isinstance(r, AnswerRow) for r in rows)
    await store.save(StoreBatch(answers=tuple(r for r in rows if isinstance(r, AnswerRow))))
    listed = (await store.list_answers(quiz, 100, None)).items
    assert [stored_answer_pb(row).value for row in listed] == VALUES
    assert [(row.answer_text, row.credit) for row in listed] == [(f"answer {1}", "1")] * len(VALUES)


_BEFORE_KINDS = """
CREATE TABLE answers (
    quiz_id TEXT NOT NULL, question_index INTEGER NOT NULL, player_id TEXT NOT NULL, choice INTEGER NOT NULL,
    correct INTEGER NOT NULL, points INTEGER NOT NULL, total_score INTEGER NOT NULL, streak INTEGER NOT NULL,
    response_time_ms INTEGER NOT NULL, answered_at INTEGER NOT NULL, quiz_elapsed_ms INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE, PRIMARY KEY (quiz_id, question_index, player_id)
);
INSERT INTO answers VALUES ('Q1', 0, 'p1', 2, 1, 900, 900, 1, 200, 1767268800000000, 1200, 'Q1:0:p1');
INSERT INTO answers VALUES ('Q1', 0, 'p2', 0, 0, 0, 0, 0, 300, 1767268800100000, 1300, 'Q1:0:p2');
"""


@pytest.mark.parametrize("migrations", [1, 2])
async def test_a_sqlite_file_from_before_kinds_keeps_its_answers_as_single_choices(
    tmp_path: Path, migrations: int
) -> None:
    path = tmp_path / "results.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_BEFORE_KINDS)
    store = await SqliteResultStore.open(str(path))
    try:
        for _ in range(migrations):
            await store.ensure_schema()
        listed = (await store.list_answers("Q1", 10, None)).items
    finally:
        await store.close()
    assert [(orjson.loads(r.answer), r.answer_text, r.credit) for r in listed] == [
        ({"choice": 2}, "2", "1"),
        ({"choice": 0}, "0", "0"),
    ]
    assert [stored_answer_pb(r).value for r in listed] == [pb.AnswerValue(choice=2), pb.AnswerValue(choice=0)]
