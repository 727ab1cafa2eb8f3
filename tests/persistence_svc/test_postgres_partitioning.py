"""answers and participants are hash-partitioned by quiz ID, and a database made before keeps its rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from persistence_svc.adapters.postgres import PostgresResultStore

pytestmark = pytest.mark.integration

# The tables as persistence_svc created them before they were partitioned.
_UNPARTITIONED = """
CREATE TABLE participants (
    quiz_id text NOT NULL, player_id text NOT NULL, nickname text, joined_at timestamptz,
    quiz_elapsed_ms bigint, left_at timestamptz, kicked boolean NOT NULL DEFAULT false,
    PRIMARY KEY (quiz_id, player_id)
);
CREATE INDEX participants_join_order ON participants (quiz_id, joined_at, player_id);
CREATE TABLE answers (
    quiz_id text NOT NULL, question_index integer NOT NULL, player_id text NOT NULL, choice integer NOT NULL,
    correct boolean NOT NULL, points bigint NOT NULL, total_score bigint NOT NULL, streak integer NOT NULL,
    response_time_ms bigint NOT NULL, answered_at timestamptz NOT NULL, quiz_elapsed_ms bigint NOT NULL,
    event_id text NOT NULL UNIQUE,
    PRIMARY KEY (quiz_id, question_index, player_id)
);
CREATE INDEX answers_listing_order ON answers (quiz_id, question_index, answered_at, player_id);
"""

_JOINED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def fresh_database(postgres_dsn: str) -> AsyncIterator[str]:
    """A database of its own (the shared one is migrated already), dropped afterwards."""
    name = f"quizmesh_migration_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _relkinds(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname, relkind::text AS kind FROM pg_class WHERE relname IN "
            "('answers', 'participants', 'answers_unpartitioned', 'participants_unpartitioned')"
        )
    finally:
        await conn.close()
    return {r["relname"]: r["kind"] for r in rows}


async def test_migrating_an_unpartitioned_database_keeps_every_row_and_is_idempotent(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute(_UNPARTITIONED)
        for n in range(40):
            quiz_id = f"Q{n:03d}"
            await conn.execute(
                "INSERT INTO participants VALUES ($1, 'p1', 'Ada', $2, 10, NULL, false)", quiz_id, _JOINED
            )
            await conn.execute(
                "INSERT INTO answers VALUES ($1, 0, 'p1', 2, true, 900, 900, 1, 200, $2, 1200, $3)",
                quiz_id,
                _JOINED,
                f"{quiz_id}:0:p1",
            )
    finally:
        await conn.close()

    store = await PostgresResultStore.connect(fresh_database, pool_size=2)
    try:
        await store.migrate()
        await store.migrate()
        assert await _relkinds(fresh_database) == {"answers": "p", "participants": "p"}
        for n in (0, 17, 39):
            answers = await store.list_answers(f"Q{n:03d}", 10, None)
            participants = await store.list_participants(f"Q{n:03d}", 10, None)
            assert [(a.player_id, a.points, a.event_id) for a in answers.items] == [("p1", 900, f"Q{n:03d}:0:p1")]
            # Migration 0003: a row from before question kinds reads as its single choice.
            assert [(a.answer, a.answer_text, a.credit) for a in answers.items] == [('{"choice": 2}', "2", "1")]
            assert [(p.player_id, p.nickname, p.joined_at) for p in participants.items] == [("p1", "Ada", _JOINED)]
    finally:
        await store.close()

    conn = await asyncpg.connect(fresh_database)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM answers) AS answers, (SELECT count(*) FROM participants) AS participants,"
            " (SELECT count(DISTINCT tableoid) FROM answers) AS partitions_used"
        )
    finally:
        await conn.close()
    assert counts is not None
    assert (counts["answers"], counts["participants"]) == (40, 40)
    # 40 quizzes hash over 32 partitions: more than one is used, so the rows really are spread.
    assert counts["partitions_used"] > 1


async def test_a_new_database_gets_partitioned_tables(fresh_database: str) -> None:
    store = await PostgresResultStore.connect(fresh_database, pool_size=2)
    try:
        await store.migrate()
    finally:
        await store.close()
    assert await _relkinds(fresh_database) == {"answers": "p", "participants": "p"}
