"""Versioned migrations against the real PostgreSQL: `quizmesh migrate` from an empty database, from the
schema as released (0.1.0, commit 9cde7b3) holding rows, twice in a row, by runners racing each other,
and the services refusing to start on a schema older than they need.

Each test works in a scratch database of its own (tests/support/infra.py), created by the migration role
and set up as scripts/infra.sh sets up the shared one; the services connect as the role that may only
read and write rows.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from apps.migrate import SCHEMAS, migrate
from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.migrations import SCHEMA as PERSISTENCE
from quiz_svc.adapters.postgres_repo import PostgresQuizRepository
from quiz_svc.domain import Ownership, Phase
from quiz_svc.migrations import SCHEMA as QUIZ
from quizmesh.migrations import (
    Migration,
    MigrationFailed,
    Schema,
    SchemaOutOfDate,
    apply,
    missing,
    require_applied,
)
from tests.support.infra import REAL, ScratchDatabase, migrate_database, scratch_database
from tests.support.stack import SIGNING_KEY, run_quizmesh

pytestmark = pytest.mark.integration

_JOINED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Rows as the released code wrote them: its statements and its JSON form of a quiz, frozen here so that
# later changes of the code cannot change what "released" means.
_RELEASED_QUIZ = (
    '{"quiz_id":"%s","title":"Capitals","allow_late_join":true,"created_ms":1767268800000,'
    '"questions":[{"text":"Capital of France?","choices":["Paris","Rome"],"correct":[0],"limit_s":20,'
    '"points":"STANDARD"}]}'
)
_RELEASED_ROWS = """
INSERT INTO quizzes (quiz_id, title, definition, created_at) VALUES ($1, 'Capitals', $2::jsonb, $3);
"""
_RELEASED_STATE = """
INSERT INTO quiz_states (quiz_id, phase, question_index, question_count, open_ms, close_ms,
                         leaderboard_visible, version)
VALUES ($1, 'ended', 0, 1, 1767268800000, 1767268820000, true, 7)
"""
_RELEASED_JOIN = """
INSERT INTO participants AS p (quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[])
ON CONFLICT (quiz_id, player_id) DO UPDATE
SET nickname = excluded.nickname, joined_at = excluded.joined_at, quiz_elapsed_ms = excluded.quiz_elapsed_ms
WHERE p.joined_at IS NULL
"""
_RELEASED_ANSWER = """
INSERT INTO answers (quiz_id, question_index, player_id, choice, correct, points, total_score, streak,
                     response_time_ms, answered_at, quiz_elapsed_ms, event_id)
SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::integer[], $5::boolean[],
                     $6::bigint[], $7::bigint[], $8::integer[], $9::bigint[], $10::timestamptz[],
                     $11::bigint[], $12::text[])
ON CONFLICT DO NOTHING
"""
_QUIZZES = [f"R{n:03d}" for n in range(40)]


@pytest.fixture
async def scratch() -> AsyncIterator[ScratchDatabase]:
    async with scratch_database() as database:
        yield database


async def _migrate(database: ScratchDatabase) -> dict[str, list[Migration]]:
    return await migrate(database.owner_dsn, list(SCHEMAS.values()), statement_cache_size=100)


async def _as_owner(database: ScratchDatabase, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query)
    finally:
        await conn.close()
    return rows


async def _recorded(database: ScratchDatabase) -> list[tuple[str, int, str, datetime]]:
    rows = await _as_owner(
        database,
        "SELECT schema_name, version, file_name, applied_at FROM schema_migrations ORDER BY schema_name, version",
    )
    return [tuple(r) for r in rows]


async def _tables(database: ScratchDatabase) -> dict[str, str]:
    rows = await _as_owner(
        database,
        "SELECT relname, relkind::text AS kind FROM pg_class"
        " WHERE relname IN ('quizzes', 'quiz_states', 'participants', 'answers') OR relname LIKE '%unpartitioned'",
    )
    return {r["relname"]: r["kind"] for r in rows}


def _every_file() -> list[tuple[str, int, str]]:
    return sorted((s.name, m.version, m.file_name) for s in SCHEMAS.values() for m in s.migrations)


async def _write_released_rows(database: ScratchDatabase) -> None:
    """The released schema (each service's 0001, as its start-up made it: no record of migrations) and
    rows in it: 40 quizzes, each with its state, a participant and an answer."""
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        for schema in (QUIZ, PERSISTENCE):
            await conn.execute(schema.migrations[0].sql)
    finally:
        await conn.close()
    conn = await asyncpg.connect(database.service_dsn)
    try:
        for quiz_id in _QUIZZES:
            await conn.execute(_RELEASED_ROWS, quiz_id, _RELEASED_QUIZ % quiz_id, _JOINED)
            await conn.execute(_RELEASED_STATE, quiz_id)
            await conn.execute(_RELEASED_JOIN, [quiz_id], ["p1"], ["Ada"], [_JOINED], [10])
            await conn.execute(
                _RELEASED_ANSWER,
                [quiz_id],
                [0],
                ["p1"],
                [0],
                [True],
                [900],
                [900],
                [1],
                [200],
                [_JOINED],
                [1200],
                [f"{quiz_id}:0:p1"],
            )
    finally:
        await conn.close()


async def test_an_empty_database_gets_every_migration_and_the_services_work_on_it(scratch: ScratchDatabase) -> None:
    applied = await _migrate(scratch)

    assert {name: [m.file_name for m in done] for name, done in applied.items()} == {
        schema.name: [m.file_name for m in schema.migrations] for schema in SCHEMAS.values()
    }
    assert [row[:3] for row in await _recorded(scratch)] == _every_file()
    assert (await _tables(scratch))["answers"] == "p"
    # The services' role reads and writes rows in what the migration role made.
    store = await PostgresResultStore.connect(scratch.service_dsn, pool_size=1)
    repo = await PostgresQuizRepository.connect(scratch.service_dsn)
    try:
        await store.ensure_schema()
        await repo.ensure_schema()
        assert (await store.list_answers("none", 10, None)).items == ()
        assert await repo.list(10, None) == []
    finally:
        await store.close()
        await repo.close()


async def test_the_released_schema_keeps_its_rows(scratch: ScratchDatabase) -> None:
    await _write_released_rows(scratch)

    await _migrate(scratch)

    assert [row[:3] for row in await _recorded(scratch)] == _every_file()
    assert await _tables(scratch) == {"quizzes": "r", "quiz_states": "r", "participants": "p", "answers": "p"}
    store = await PostgresResultStore.connect(scratch.service_dsn, pool_size=1)
    repo = await PostgresQuizRepository.connect(scratch.service_dsn)
    try:
        await store.ensure_schema()
        await repo.ensure_schema()
        for quiz_id in (_QUIZZES[0], _QUIZZES[17], _QUIZZES[39]):
            answers = (await store.list_answers(quiz_id, 10, None)).items
            assert [(a.player_id, a.points, a.event_id) for a in answers] == [("p1", 900, f"{quiz_id}:0:p1")]
            # 0003: an answer from before question kinds reads as its single choice, with full credit.
            assert [(a.answer, a.answer_text, a.credit) for a in answers] == [('{"choice": 0}', "0", "1")]
            participants = (await store.list_participants(quiz_id, 10, None)).items
            assert [(p.player_id, p.nickname, p.joined_at) for p in participants] == [("p1", "Ada", _JOINED)]
            quiz = await repo.get(quiz_id)
            assert quiz is not None and quiz.title == "Capitals" and quiz.questions[0].choices == ("Paris", "Rome")
            state = await repo.saved_state(quiz_id)
            assert state is not None and (state.phase.value, state.version) == ("ended", 7)
            # 0004: each quiz became an authored quiz, owned by its host credential, with one session of
            # the same join code.
            assert await repo.ownership(quiz_id) == Ownership(quiz_id, None)
            sessions = await repo.sessions(quiz_id, 10, None)
            assert [(s.session_id, s.quiz_id, s.phase, s.host_user_id) for s in sessions] == [
                (quiz_id, quiz_id, Phase.ENDED, None)
            ]
        assert len(await repo.list(100, None)) == len(_QUIZZES)
    finally:
        await store.close()
        await repo.close()
    (counts,) = await _as_owner(
        scratch,
        "SELECT (SELECT count(*) FROM answers) AS answers, (SELECT count(*) FROM participants) AS participants,"
        " (SELECT count(*) FROM quizzes) AS quizzes, (SELECT count(DISTINCT tableoid) FROM answers) AS partitions",
    )
    assert (counts["answers"], counts["participants"], counts["quizzes"]) == (40, 40, 40)
    # 40 quizzes hash over 32 partitions: more than one holds rows, so they really were spread.
    assert counts["partitions"] > 1


async def test_migrating_twice_changes_nothing_the_second_time(scratch: ScratchDatabase) -> None:
    await _write_released_rows(scratch)
    await _migrate(scratch)
    first = await _recorded(scratch)

    again = await _migrate(scratch)

    assert again == {name: [] for name in SCHEMAS}
    assert await _recorded(scratch) == first


async def test_runners_racing_apply_each_migration_once(scratch: ScratchDatabase) -> None:
    await asyncio.gather(*(_migrate(scratch) for _ in range(4)))

    assert [row[:3] for row in await _recorded(scratch)] == _every_file()


async def test_a_failing_migration_is_rolled_back_and_the_earlier_ones_stay(scratch: ScratchDatabase) -> None:
    broken = Schema(
        "test-svc",
        (
            Migration(1, "0001_ok.sql", "CREATE TABLE migrated_first (a integer);"),
            Migration(2, "0002_broken.sql", "CREATE TABLE migrated_half (a integer); SELECT 1 / 0;"),
        ),
    )
    conn = await asyncpg.connect(scratch.owner_dsn)
    try:
        with pytest.raises(MigrationFailed, match=r"test-svc 0002_broken\.sql failed and was rolled back"):
            await apply(conn, broken)
        assert [m.file_name for m in await missing(conn, broken)] == ["0002_broken.sql"]
        assert await conn.fetchval("SELECT to_regclass('migrated_first') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('migrated_half') IS NULL")
    finally:
        await conn.close()


async def test_the_services_role_changes_rows_but_no_table() -> None:
    """On the shared database, as scripts/infra.sh sets it up (QUIZMESH_POSTGRES_DSN is the services' role)
    and `quizmesh migrate` leaves it."""
    await migrate_database()
    conn = await asyncpg.connect(REAL.postgres_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE made_by_a_service (a integer)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE answers ADD COLUMN added_by_a_service integer")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM schema_migrations")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE schema_name = 'quiz-svc'") >= 1
    finally:
        await conn.close()


def _service_env(database: ScratchDatabase) -> dict[str, str]:
    return {
        **os.environ,
        "QUIZMESH_DATABASE": "postgres",
        "QUIZMESH_POSTGRES_DSN": database.service_dsn,
        "QUIZMESH_POSTGRES_MIGRATION_DSN": database.owner_dsn,
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_QUIZ_ADDR": "127.0.0.1:0",
        "QUIZMESH_PERSISTENCE_ADDR": "127.0.0.1:0",
        "QUIZMESH_LOG_FORMAT": "plain",
    }


async def test_a_service_refuses_to_start_on_an_older_schema_and_says_what_to_run(
    scratch: ScratchDatabase, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(scratch.owner_dsn)
    try:
        await apply(conn, QUIZ)
        await apply(conn, Schema(PERSISTENCE.name, PERSISTENCE.migrations[:1]))
    finally:
        await conn.close()
    env = _service_env(scratch)

    refused = await asyncio.to_thread(run_quizmesh, "persistence-svc", env=env, cwd=tmp_path)

    assert refused.returncode == 3, refused.stderr
    later = [m.file_name for m in PERSISTENCE.migrations[1:]]
    assert later[0] == "0002_partition_by_quiz.sql"
    assert (
        "quizmesh persistence-svc: cannot start: the PostgreSQL schema of persistence-svc is older than this "
        f"version needs: migration(s) {', '.join(later)} not applied. Run `quizmesh migrate persistence-svc`"
    ) in refused.stderr

    migrated = await asyncio.to_thread(run_quizmesh, "migrate", "persistence-svc", env=env, cwd=tmp_path)

    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"persistence-svc: applied {', '.join(later)}"
    conn = await asyncpg.connect(scratch.service_dsn)
    try:
        assert await missing(conn, PERSISTENCE) == []
    finally:
        await conn.close()


async def test_quiz_svc_refuses_an_empty_database(scratch: ScratchDatabase, tmp_path: Path) -> None:
    refused = await asyncio.to_thread(run_quizmesh, "quiz-svc", env=_service_env(scratch), cwd=tmp_path)

    assert refused.returncode == 3, refused.stderr
    every = ", ".join(m.file_name for m in QUIZ.migrations)
    assert every.startswith("0001_quizzes_and_states.sql")
    assert f"migration(s) {every} not applied. Run `quizmesh migrate quiz-svc`" in refused.stderr


async def test_the_check_names_every_missing_migration(scratch: ScratchDatabase) -> None:
    conn = await asyncpg.connect(scratch.service_dsn)
    try:
        with pytest.raises(SchemaOutOfDate) as refused:
            await require_applied(conn, PERSISTENCE)
    finally:
        await conn.close()
    assert [m.file_name for m in refused.value.missing] == [m.file_name for m in PERSISTENCE.migrations]


def test_misnamed_or_clashing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "notes.txt").write_text("not a migration")
    assert [m.file_name for m in Schema.of_directory("x", tmp_path).migrations] == ["0001_first.sql"]
    (tmp_path / "0001_other.sql").write_text("SELECT 2;")
    with pytest.raises(ValueError, match="share number 1"):
        Schema.of_directory("x", tmp_path)
    (tmp_path / "0001_other.sql").unlink()
    (tmp_path / "2_Second.sql").write_text("SELECT 2;")
    with pytest.raises(ValueError, match=r"is not named NNNN_<what>\.sql"):
        Schema.of_directory("x", tmp_path)


def test_the_shipped_migrations_are_numbered_from_one_in_order() -> None:
    for schema in SCHEMAS.values():
        versions = [m.version for m in schema.migrations]
        assert versions == sorted(versions) and versions[0] == 1, schema.name
