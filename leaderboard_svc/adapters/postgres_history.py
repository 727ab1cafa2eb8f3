"""The ranking history in PostgreSQL: the participants and answers tables persistence_svc writes.

Read-only. The tables belong to persistence_svc (persistence_svc/adapters/postgres.py); this reads
the columns a ranking needs and nothing else. Every statement has a deadline.
"""

from __future__ import annotations

import asyncio

import asyncpg

from leaderboard_svc.domain import AnswerScored, PlayerJoined, PlayerLeft, RankingEvent
from leaderboard_svc.ports import HistoryUnavailable

_PARTICIPANTS = """
SELECT player_id, nickname, quiz_elapsed_ms, joined_at IS NOT NULL AS joined, left_at IS NOT NULL AS gone
FROM participants WHERE quiz_id = $1 ORDER BY joined_at, player_id
"""

_ANSWERS = """
SELECT player_id, question_index, total_score, quiz_elapsed_ms,
       (extract(epoch FROM answered_at) * 1000)::bigint AS answered_ms
FROM answers WHERE quiz_id = $1 ORDER BY question_index, player_id
"""


class PostgresRankingHistory:
    """Connects on first use, so a leaderboard_svc whose database is down still serves and projects."""

    def __init__(self, dsn: str, *, timeout_s: float = 10.0) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncio.wait_for(
                    asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=2, command_timeout=self._timeout_s, timeout=self._timeout_s
                    ),
                    self._timeout_s,
                )
            return self._pool

    async def events(self, quiz_id: str) -> list[RankingEvent]:
        try:
            pool = await self._connected()
            async with (
                pool.acquire(timeout=self._timeout_s) as conn,
                # One snapshot for both reads, so the answers and the joins agree.
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                participants = await conn.fetch(_PARTICIPANTS, quiz_id)
                answers = await conn.fetch(_ANSWERS, quiz_id)
        except asyncpg.UndefinedTableError:
            return []  # persistence_svc has not created its tables yet: nothing was ever stored
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise HistoryUnavailable(f"PostgreSQL: {exc!r}") from exc
        events: list[RankingEvent] = [
            PlayerJoined(quiz_id, r["player_id"], r["nickname"] or "", r["quiz_elapsed_ms"] or 0)
            for r in participants
            if r["joined"]
        ]
        events.extend(
            AnswerScored(
                quiz_id,
                r["player_id"],
                r["question_index"],
                r["total_score"],
                r["quiz_elapsed_ms"],
                r["answered_ms"],
            )
            for r in answers
        )
        events.extend(PlayerLeft(quiz_id, r["player_id"]) for r in participants if r["gone"])
        return events

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), self._timeout_s)
            except TimeoutError:
                self._pool.terminate()
