"""The ResultStore on SQLite (aiosqlite) for the embedded mode: the same rows and rules as PostgreSQL.

SQLite has no timestamptz, so times are stored as integer microseconds since the Unix epoch (UTC),
which sort like the instants they are. One connection serves writes and reads, taken in turn.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiosqlite

from persistence_svc.domain import (
    AnswerCursor,
    AnswerRow,
    HistoryCursor,
    Page,
    ParticipantCursor,
    ParticipantRow,
    StoreBatch,
    UserSession,
    answer_cursor,
    history_cursor,
    listing_params,
    page_of,
    participant_cursor,
)
from persistence_svc.ports import KeysetListing, KeyT, RowT, StoreUnavailable

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    quiz_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    nickname TEXT,
    joined_at INTEGER,
    quiz_elapsed_ms INTEGER,
    left_at INTEGER,
    kicked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (quiz_id, player_id)
);
CREATE INDEX IF NOT EXISTS participants_join_order ON participants (quiz_id, joined_at, player_id);
CREATE TABLE IF NOT EXISTS answers (
    quiz_id TEXT NOT NULL,
    question_index INTEGER NOT NULL,
    player_id TEXT NOT NULL,
    choice INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    points INTEGER NOT NULL,
    total_score INTEGER NOT NULL,
    streak INTEGER NOT NULL,
    response_time_ms INTEGER NOT NULL,
    answered_at INTEGER NOT NULL,
    quiz_elapsed_ms INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    answer TEXT NOT NULL,
    answer_text TEXT NOT NULL,
    credit TEXT NOT NULL,
    PRIMARY KEY (quiz_id, question_index, player_id)
);
CREATE INDEX IF NOT EXISTS answers_listing_order ON answers (quiz_id, question_index, answered_at, player_id);
CREATE TABLE IF NOT EXISTS user_sessions (
    user_id TEXT NOT NULL,
    quiz_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, quiz_id)
);
CREATE INDEX IF NOT EXISTS user_sessions_newest ON user_sessions (user_id, joined_at DESC, quiz_id DESC);
"""
# Issue 16 (persistence_svc/migrations/0004_user_history.sql) on a file made before it.
_USER_ID_COLUMN = "ALTER TABLE participants ADD COLUMN user_id TEXT;"

# The same upserts as adapters/postgres.py; see there why joins and leaves commute.
_INSERT_JOIN = """
INSERT INTO participants AS p (quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms, user_id)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (quiz_id, player_id) DO UPDATE
SET nickname = excluded.nickname, joined_at = excluded.joined_at, quiz_elapsed_ms = excluded.quiz_elapsed_ms,
    user_id = excluded.user_id
WHERE p.joined_at IS NULL
"""

_INSERT_USER_SESSION = """
INSERT INTO user_sessions (user_id, quiz_id, player_id, joined_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
"""

_LIST_USER_SESSIONS = """
SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions
WHERE user_id = ?1 ORDER BY joined_at DESC, quiz_id DESC LIMIT ?2
"""

_LIST_USER_SESSIONS_AFTER = """
SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions
WHERE user_id = ?1 AND (joined_at, quiz_id) < (?3, ?4) ORDER BY joined_at DESC, quiz_id DESC LIMIT ?2
"""

_INSERT_LEAVE = """
INSERT INTO participants AS p (quiz_id, player_id, left_at, kicked)
VALUES (?, ?, ?, ?)
ON CONFLICT (quiz_id, player_id) DO UPDATE
SET left_at = CASE WHEN p.left_at IS NULL OR p.left_at < excluded.left_at THEN excluded.left_at
                   ELSE p.left_at END,
    kicked = p.kicked OR excluded.kicked
WHERE p.left_at IS NULL OR p.left_at < excluded.left_at OR (excluded.kicked AND NOT p.kicked)
"""

_INSERT_ANSWER = """
INSERT INTO answers (quiz_id, question_index, player_id, choice, correct, points, total_score, streak,
                     response_time_ms, answered_at, quiz_elapsed_ms, event_id, answer, answer_text, credit)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

_PARTICIPANT_COLUMNS = "quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms, left_at, kicked, user_id"

_LIST_PARTICIPANTS = f"""
SELECT {_PARTICIPANT_COLUMNS} FROM participants
WHERE quiz_id = ?1 AND joined_at IS NOT NULL
ORDER BY joined_at, player_id LIMIT ?2
"""

_LIST_PARTICIPANTS_AFTER = f"""
SELECT {_PARTICIPANT_COLUMNS} FROM participants
WHERE quiz_id = ?1 AND joined_at IS NOT NULL AND (joined_at, player_id) > (?3, ?4)
ORDER BY joined_at, player_id LIMIT ?2
"""

_ANSWER_COLUMNS = (
    "quiz_id, question_index, player_id, choice, correct, points, total_score, streak, "
    "response_time_ms, answered_at, quiz_elapsed_ms, event_id, answer, answer_text, credit"
)
# Issue 14 (persistence_svc/migrations/0003_answer_values.sql) on a file made before it: the columns
# added, rows before kinds read as their single choice.
_ANSWER_VALUE_COLUMNS = """
ALTER TABLE answers ADD COLUMN answer TEXT NOT NULL DEFAULT '';
ALTER TABLE answers ADD COLUMN answer_text TEXT NOT NULL DEFAULT '';
ALTER TABLE answers ADD COLUMN credit TEXT NOT NULL DEFAULT '';
UPDATE answers SET answer = json_object('choice', choice), answer_text = CAST(choice AS TEXT),
                   credit = CASE WHEN correct THEN '1' ELSE '0' END;
"""

_LIST_ANSWERS = f"""
SELECT {_ANSWER_COLUMNS} FROM answers
WHERE quiz_id = ?1
ORDER BY question_index, answered_at, player_id LIMIT ?2
"""

_LIST_ANSWERS_AFTER = f"""
SELECT {_ANSWER_COLUMNS} FROM answers
WHERE quiz_id = ?1 AND (question_index, answered_at, player_id) > (?3, ?4, ?5)
ORDER BY question_index, answered_at, player_id LIMIT ?2
"""


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _participant_row(r: sqlite3.Row) -> ParticipantRow:
    quiz, player, nickname, joined_at, elapsed, left_at, kicked, user_id = r
    return ParticipantRow(
        quiz_id=quiz,
        player_id=player,
        nickname=nickname,
        joined_at=_instant(joined_at),
        quiz_elapsed_ms=elapsed,
        left_at=None if left_at is None else _instant(left_at),
        kicked=bool(kicked),
        user_id=user_id,
    )


def _answer_row(r: sqlite3.Row) -> AnswerRow:
    return AnswerRow(
        quiz_id=r[0],
        question_index=r[1],
        player_id=r[2],
        choice=r[3],
        correct=bool(r[4]),
        points=r[5],
        total_score=r[6],
        streak=r[7],
        response_time_ms=r[8],
        answered_at=_instant(r[9]),
        quiz_elapsed_ms=r[10],
        event_id=r[11],
        answer=r[12],
        answer_text=r[13],
        credit=r[14],
    )


# The listings, each read a page at a time (see SqliteResultStore._page).
_PARTICIPANTS: Final = KeysetListing(_LIST_PARTICIPANTS, _LIST_PARTICIPANTS_AFTER, _participant_row, participant_cursor)
_USER_SESSIONS: Final = KeysetListing(
    _LIST_USER_SESSIONS,
    _LIST_USER_SESSIONS_AFTER,
    lambda r: UserSession(r[0], r[1], r[2], _instant(r[3])),
    history_cursor,
)
_ANSWERS: Final = KeysetListing(_LIST_ANSWERS, _LIST_ANSWERS_AFTER, _answer_row, answer_cursor)


class SqliteResultStore:
    """A ResultStore on one SQLite file in WAL mode."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: str, *, busy_timeout_ms: int = 5000) -> SqliteResultStore:
        # isolation_level=None: the module opens no implicit transactions; save() opens its own.
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed batch survives a power loss before its offsets are committed.
            await conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def ensure_schema(self) -> None:
        async with self._turn:
            try:
                await self._conn.executescript(_SCHEMA)
                if not await self._has_column("answers", "answer"):
                    await self._conn.executescript(_ANSWER_VALUE_COLUMNS)
                if not await self._has_column("participants", "user_id"):
                    await self._conn.executescript(_USER_ID_COLUMN)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def save(self, batch: StoreBatch) -> None:
        if not len(batch):
            return
        async with self._turn:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
            try:
                await self._write(batch)
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                await self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(f"SQLite: {exc}") from exc
                raise

    async def _write(self, batch: StoreBatch) -> None:
        await self._conn.executemany(
            _INSERT_JOIN,
            [
                (r.quiz_id, r.player_id, r.nickname, _micros(r.joined_at), r.quiz_elapsed_ms, r.user_id)
                for r in batch.joins
                if r.user_id is None
            ],
        )
        for r in batch.joins:
            if r.user_id is None:
                continue
            # As adapters/postgres.py: keyed by user only when this join fills its row in.
            cursor = await self._conn.execute(
                _INSERT_JOIN, (r.quiz_id, r.player_id, r.nickname, _micros(r.joined_at), r.quiz_elapsed_ms, r.user_id)
            )
            if cursor.rowcount == 1:
                await self._conn.execute(
                    _INSERT_USER_SESSION, (r.user_id, r.quiz_id, r.player_id, _micros(r.joined_at))
                )
        await self._conn.executemany(
            _INSERT_ANSWER,
            [
                (
                    r.quiz_id,
                    r.question_index,
                    r.player_id,
                    r.choice,
                    r.correct,
                    r.points,
                    r.total_score,
                    r.streak,
                    r.response_time_ms,
                    _micros(r.answered_at),
                    r.quiz_elapsed_ms,
                    r.event_id,
                    r.answer,
                    r.answer_text,
                    r.credit,
                )
                for r in batch.answers
            ],
        )
        await self._conn.executemany(
            _INSERT_LEAVE,
            [(r.quiz_id, r.player_id, _micros(r.left_at), r.kicked) for r in batch.leaves],
        )

    async def list_participants(
        self, quiz_id: str, limit: int, after: ParticipantCursor | None, *, from_primary: bool = False
    ) -> Page[ParticipantRow, ParticipantCursor]:
        # One file, no replica: every read is from the primary.
        return await self._page(_PARTICIPANTS, quiz_id, limit, after)

    async def user_sessions(
        self, user_id: str, limit: int, after: HistoryCursor | None
    ) -> Page[UserSession, HistoryCursor]:
        return await self._page(_USER_SESSIONS, user_id, limit, after)

    async def list_answers(
        self, quiz_id: str, limit: int, after: AnswerCursor | None, *, from_primary: bool = False
    ) -> Page[AnswerRow, AnswerCursor]:
        return await self._page(_ANSWERS, quiz_id, limit, after)

    async def anonymise_user(self, user_id: str, nickname: str) -> tuple[UserSession, ...]:
        async with self._turn:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    async with self._conn.execute(
                        "SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions WHERE user_id = ?",
                        (user_id,),
                    ) as cursor:
                        mine = tuple(UserSession(r[0], r[1], r[2], _instant(r[3])) for r in await cursor.fetchall())
                    await self._conn.executemany(
                        "UPDATE participants SET user_id = NULL, nickname = ? WHERE quiz_id = ? AND player_id = ?",
                        [(nickname, session.quiz_id, session.player_id) for session in mine],
                    )
                    await self._conn.execute("COMMIT")
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
        return mine

    async def forget_user(self, user_id: str) -> int:
        async with self._turn:
            try:
                cursor = await self._conn.execute("DELETE FROM user_sessions WHERE user_id = ?", (user_id,))
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
        return cursor.rowcount

    async def close(self) -> None:
        async with self._turn:
            await self._conn.close()

    async def _has_column(self, table: str, column: str) -> bool:
        async with self._conn.execute(
            "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", (table, column)
        ) as cur:
            row = await cur.fetchone()
        return row is None or row[0] > 0

    async def _page(
        self, listing: KeysetListing[RowT, KeyT], owner: str, limit: int, after: KeyT | None
    ) -> Page[RowT, KeyT]:
        query = listing.first if after is None else listing.following
        # A cursor's times as SQLite holds them: microseconds.
        params = (_micros(p) if isinstance(p, datetime) else p for p in listing_params(owner, limit, after))
        records = await self._fetch(query, params)
        return page_of([listing.row(r) for r in records], limit, listing.cursor)

    async def _fetch(self, query: str, params: Iterable[Any]) -> list[sqlite3.Row]:
        async with self._turn:
            try:
                async with self._conn.execute(query, tuple(params)) as cursor:
                    return list(await cursor.fetchall())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
