"""The ResultStore on PostgreSQL (asyncpg): set-based upserts, one transaction per batch.

Joins and leaves commute: a join fills in a participant, a leave records the latest departure, so
redeliveries and the loose ordering between the two topics converge on the same row. A leave that
arrives before its join leaves a row without join data, which listings skip until the join lands.
(JoinQuiz admits a new player ID every time, so a player ID never rejoins after leaving.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Any, Final, TypeVar

import asyncpg

from persistence_svc.adapters.replica import ReplicaRouter
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
from persistence_svc.migrations import SCHEMA
from persistence_svc.ports import KeysetListing, KeyT, RowT, StoreUnavailable
from quizmesh.migrations import require_applied

T = TypeVar("T")
log = logging.getLogger(__name__)

# Each row type's columns, named as its fields are: the inserts below send one array per column.
_JOIN_FIELDS: Final = ("quiz_id", "player_id", "nickname", "joined_at", "quiz_elapsed_ms", "user_id")
_LEAVE_FIELDS: Final = ("quiz_id", "player_id", "left_at", "kicked")
_ANSWER_FIELDS: Final = (
    "quiz_id",
    "question_index",
    "player_id",
    "choice",
    "correct",
    "points",
    "total_score",
    "streak",
    "response_time_ms",
    "answered_at",
    "quiz_elapsed_ms",
    "event_id",
    "answer",
    "answer_text",
    "credit",
)

# A signed-in player's participation is keyed by user as well (migrations/0004_user_history.sql), for
# the joins this statement fills in only: a join delivered again after its user's data was deleted finds
# its row filled, and adds nothing back.
_INSERT_JOINS = f"""
WITH joined AS (
    INSERT INTO participants AS p ({", ".join(_JOIN_FIELDS)})
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::text[])
    ON CONFLICT (quiz_id, player_id) DO UPDATE
    SET nickname = excluded.nickname, joined_at = excluded.joined_at, quiz_elapsed_ms = excluded.quiz_elapsed_ms,
        user_id = excluded.user_id
    WHERE p.joined_at IS NULL
    RETURNING p.user_id, p.quiz_id, p.player_id, p.joined_at
)
INSERT INTO user_sessions (user_id, quiz_id, player_id, joined_at)
SELECT user_id, quiz_id, player_id, joined_at FROM joined WHERE user_id IS NOT NULL
ON CONFLICT DO NOTHING
"""

_ANONYMISE_USER = """
UPDATE participants p SET user_id = NULL, nickname = $2
FROM user_sessions s WHERE s.user_id = $1 AND p.quiz_id = s.quiz_id AND p.player_id = s.player_id
"""

_USER_PARTICIPATIONS = "SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions WHERE user_id = $1"

_FORGET_USER = "DELETE FROM user_sessions WHERE user_id = $1"

_LIST_USER_SESSIONS = """
SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions
WHERE user_id = $1 ORDER BY joined_at DESC, quiz_id DESC LIMIT $2
"""

_LIST_USER_SESSIONS_AFTER = """
SELECT user_id, quiz_id, player_id, joined_at FROM user_sessions
WHERE user_id = $1 AND (joined_at, quiz_id) < ($3, $4) ORDER BY joined_at DESC, quiz_id DESC LIMIT $2
"""

_INSERT_LEAVES = f"""
INSERT INTO participants AS p ({", ".join(_LEAVE_FIELDS)})
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[])
ON CONFLICT (quiz_id, player_id) DO UPDATE
SET left_at = GREATEST(p.left_at, excluded.left_at), kicked = p.kicked OR excluded.kicked
WHERE p.left_at IS NULL OR p.left_at < excluded.left_at OR (excluded.kicked AND NOT p.kicked)
"""

# No conflict target: a row clashing on the key or on event_id is a redelivery either way.
_INSERT_ANSWERS = f"""
INSERT INTO answers ({", ".join(_ANSWER_FIELDS)})
SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::integer[], $5::boolean[],
                     $6::bigint[], $7::bigint[], $8::integer[], $9::bigint[], $10::timestamptz[],
                     $11::bigint[], $12::text[], $13::jsonb[], $14::text[], $15::text[])
ON CONFLICT DO NOTHING
"""


def _columns(rows: Sequence[object], names: Sequence[str]) -> list[list[Any]]:
    """The rows as one list per named field, in the order of names."""
    values = attrgetter(*names)
    return [list(column) for column in zip(*(values(row) for row in rows), strict=True)]


_PARTICIPANT_COLUMNS = "quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms, left_at, kicked, user_id"

_LIST_PARTICIPANTS = f"""
SELECT {_PARTICIPANT_COLUMNS} FROM participants
WHERE quiz_id = $1 AND joined_at IS NOT NULL
ORDER BY joined_at, player_id LIMIT $2
"""

_LIST_PARTICIPANTS_AFTER = f"""
SELECT {_PARTICIPANT_COLUMNS} FROM participants
WHERE quiz_id = $1 AND joined_at IS NOT NULL AND (joined_at, player_id) > ($3, $4)
ORDER BY joined_at, player_id LIMIT $2
"""

# The answer (jsonb) is read back as the text the rows carry.
_ANSWER_COLUMNS = ", ".join("answer::text AS answer" if name == "answer" else name for name in _ANSWER_FIELDS)

_LIST_ANSWERS = f"""
SELECT {_ANSWER_COLUMNS} FROM answers
WHERE quiz_id = $1
ORDER BY question_index, answered_at, player_id LIMIT $2
"""

_LIST_ANSWERS_AFTER = f"""
SELECT {_ANSWER_COLUMNS} FROM answers
WHERE quiz_id = $1 AND (question_index, answered_at, player_id) > ($3, $4, $5)
ORDER BY question_index, answered_at, player_id LIMIT $2
"""

# The listings, each read a page at a time (see _page); the records' columns are named as the rows' fields.
_PARTICIPANTS: Final = KeysetListing(
    _LIST_PARTICIPANTS, _LIST_PARTICIPANTS_AFTER, lambda r: ParticipantRow(**dict(r)), participant_cursor
)
_USER_SESSIONS: Final = KeysetListing(
    _LIST_USER_SESSIONS, _LIST_USER_SESSIONS_AFTER, lambda r: UserSession(**dict(r)), history_cursor
)
_ANSWERS: Final = KeysetListing(_LIST_ANSWERS, _LIST_ANSWERS_AFTER, lambda r: AnswerRow(**dict(r)), answer_cursor)

# SQLSTATE classes after which the same statement may succeed later: connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources, operator
# intervention (admin shutdown, statement timeout), system error.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | OSError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


class PostgresResultStore:
    """A ResultStore on a pool of asyncpg connections; every statement has a deadline.

    With a streaming replica, listings read from it while its lag is under a bound, and from the
    primary otherwise; a listing the replica fails is read from the primary. Writes go to the primary."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float, replica: ReplicaRouter | None = None) -> None:
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._replica = replica

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        pool_size: int = 10,
        command_timeout_s: float = 10.0,
        replica_dsn: str = "",
        replica_max_lag_ms: int = 1000,
        statement_cache_size: int = 100,
    ) -> PostgresResultStore:
        """Opens a pool (and one on the replica, if given); raises StoreUnavailable when the primary
        cannot be reached in time. The replica may be down: its pool connects on first use."""
        try:
            pool = await asyncio.wait_for(
                _pool(dsn, 1, pool_size, command_timeout_s, statement_cache_size), command_timeout_s * 2
            )
        except Exception as exc:
            if _is_transient(exc):
                raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc!r}") from exc
            raise
        if not replica_dsn:
            return cls(pool, acquire_timeout_s=command_timeout_s)
        replica_pool = await _pool(replica_dsn, 0, pool_size, command_timeout_s, statement_cache_size)
        router = ReplicaRouter(pool, replica_pool, replica_max_lag_ms)
        router.start()
        return cls(pool, acquire_timeout_s=command_timeout_s, replica=router)

    @property
    def replica_lag_ms(self) -> float | None:
        """The replica's measured lag (infinite while unreachable); None without a replica."""
        return None if self._replica is None else self._replica.lag_ms()

    async def ensure_schema(self) -> None:
        await self._with_connection(lambda conn: require_applied(conn, SCHEMA))

    async def save(self, batch: StoreBatch) -> None:
        if not len(batch):
            return

        async def save(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if batch.joins:
                    await conn.execute(_INSERT_JOINS, *_columns(batch.joins, _JOIN_FIELDS))
                if batch.answers:
                    await conn.execute(_INSERT_ANSWERS, *_columns(batch.answers, _ANSWER_FIELDS))
                if batch.leaves:
                    await conn.execute(_INSERT_LEAVES, *_columns(batch.leaves, _LEAVE_FIELDS))

        await self._with_connection(save)

    async def list_participants(
        self, quiz_id: str, limit: int, after: ParticipantCursor | None, *, from_primary: bool = False
    ) -> Page[ParticipantRow, ParticipantCursor]:
        return await self._page(_PARTICIPANTS, quiz_id, limit, after, from_primary=from_primary)

    async def user_sessions(
        self, user_id: str, limit: int, after: HistoryCursor | None
    ) -> Page[UserSession, HistoryCursor]:
        return await self._page(_USER_SESSIONS, user_id, limit, after, from_primary=False)

    async def list_answers(
        self, quiz_id: str, limit: int, after: AnswerCursor | None, *, from_primary: bool = False
    ) -> Page[AnswerRow, AnswerCursor]:
        return await self._page(_ANSWERS, quiz_id, limit, after, from_primary=from_primary)

    async def anonymise_user(self, user_id: str, nickname: str) -> tuple[UserSession, ...]:
        async def anonymise(conn: asyncpg.Connection) -> tuple[UserSession, ...]:
            async with conn.transaction():
                await conn.execute(_ANONYMISE_USER, user_id, nickname)
                records = await conn.fetch(_USER_PARTICIPATIONS, user_id)
            return tuple(UserSession(**dict(r)) for r in records)

        return await self._with_connection(anonymise)

    async def forget_user(self, user_id: str) -> int:
        async def forget(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute(_FORGET_USER, user_id)
            return int(status.rsplit(maxsplit=1)[-1])

        return await self._with_connection(forget)

    async def close(self) -> None:
        pools = [self._pool]
        if self._replica is not None:
            await self._replica.close()
            pools.append(self._replica.replica)
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), self._acquire_timeout_s)
            except TimeoutError:
                pool.terminate()

    async def _page(
        self, listing: KeysetListing[RowT, KeyT], owner: str, limit: int, after: KeyT | None, *, from_primary: bool
    ) -> Page[RowT, KeyT]:
        query = listing.first if after is None else listing.following
        records = await self._read(query, *listing_params(owner, limit, after), from_primary=from_primary)
        return page_of([listing.row(r) for r in records], limit, listing.cursor)

    async def _read(self, query: str, *args: Any, from_primary: bool) -> list[asyncpg.Record]:
        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            records: list[asyncpg.Record] = await conn.fetch(query, *args)
            return records

        if not from_primary and self._replica is not None and self._replica.use_replica():
            try:
                return await self._with_connection(fetch, self._replica.replica)
            except StoreUnavailable as exc:
                log.warning("reading from the PostgreSQL replica failed; reading from the primary: %s", exc)
        return await self._with_connection(fetch)

    async def _with_connection(
        self, work: Callable[[asyncpg.Connection], Awaitable[T]], pool: asyncpg.Pool | None = None
    ) -> T:
        try:
            async with (pool or self._pool).acquire(timeout=self._acquire_timeout_s) as conn:
                return await work(conn)
        except Exception as exc:
            if _is_transient(exc):
                raise StoreUnavailable(f"PostgreSQL: {exc!r}") from exc
            raise


async def _pool(
    dsn: str, min_size: int, max_size: int, command_timeout_s: float, statement_cache_size: int
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout_s,
        timeout=command_timeout_s,
        statement_cache_size=statement_cache_size,
    )
