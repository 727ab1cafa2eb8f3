"""Quiz definitions in PostgreSQL, the quiz database and the source of truth for quizzes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from quiz_svc.adapters import quiz_codec
from quiz_svc.adapters.quiz_codec import save_state_statement, saved_state_query, saved_state_row, state_from_row
from quiz_svc.domain import GameState, Ownership, Phase, QuizDefinition, Session
from quiz_svc.media import MediaFile
from quiz_svc.migrations import SCHEMA
from quizmesh.migrations import require_applied

_SAVE_STATE = save_state_statement(lambda n: f"${n}")
_SAVED_STATE = saved_state_query("$1")
_TIMEOUT_S = 5.0


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


class PostgresQuizRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, statement_cache_size: int = 100) -> PostgresQuizRepository:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=8,
            command_timeout=_TIMEOUT_S,
            timeout=_TIMEOUT_S,
            statement_cache_size=statement_cache_size,
        )
        return cls(pool)

    async def ensure_schema(self) -> None:
        async with self._pool.acquire() as conn:
            await require_applied(conn, SCHEMA)

    async def add(
        self, quiz: QuizDefinition, media: Sequence[MediaFile] = (), owner_user_id: str | None = None
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await self._insert_quiz(conn, quiz):
                return False
            await conn.execute(
                "INSERT INTO authored_quizzes (quiz_id, owner_user_id, created_at) VALUES ($1, $2, $3)",
                quiz.quiz_id,
                owner_user_id,
                _at(quiz.created_ms),
            )
            await self._insert_session(conn, quiz, quiz.quiz_id, owner_user_id)
            if media:
                await conn.executemany(
                    "INSERT INTO media (media_id, content_type, content) VALUES ($1, $2, $3)"
                    " ON CONFLICT (media_id) DO NOTHING",
                    [(m.media_id, m.content_type, m.content) for m in media],
                )
            return True

    async def add_session(self, session: QuizDefinition, quiz_id: str, host_user_id: str | None) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await self._insert_quiz(conn, session):
                return False
            await self._insert_session(conn, session, quiz_id, host_user_id)
            return True

    @staticmethod
    async def _insert_quiz(conn: asyncpg.Connection, quiz: QuizDefinition) -> bool:
        status: str = await conn.execute(
            "INSERT INTO quizzes (quiz_id, title, definition, created_at) VALUES ($1, $2, $3::jsonb, $4)"
            " ON CONFLICT (quiz_id) DO NOTHING",
            quiz.quiz_id,
            quiz.title,
            quiz_codec.encode(quiz).decode(),
            _at(quiz.created_ms),
        )
        return status.endswith(" 1")

    @staticmethod
    async def _insert_session(
        conn: asyncpg.Connection, session: QuizDefinition, quiz_id: str, host_user_id: str | None
    ) -> None:
        await conn.execute(
            "INSERT INTO sessions (session_id, quiz_id, host_user_id, created_at) VALUES ($1, $2, $3, $4)",
            session.quiz_id,
            quiz_id,
            host_user_id,
            _at(session.created_ms),
        )

    async def ownership(self, quiz_id: str) -> Ownership | None:
        row = await self._pool.fetchrow("SELECT owner_user_id FROM authored_quizzes WHERE quiz_id = $1", quiz_id)
        return Ownership(quiz_id, row["owner_user_id"]) if row is not None else None

    async def session_host(self, session_id: str) -> str | None:
        host: str | None = await self._pool.fetchval(
            "SELECT host_user_id FROM sessions WHERE session_id = $1", session_id
        )
        return host

    async def sessions(self, quiz_id: str, limit: int, before_ms: int | None) -> list[Session]:
        rows = await self._pool.fetch(
            "SELECT s.session_id, q.title, s.created_at, s.host_user_id, coalesce(st.phase, 'lobby') AS phase"
            " FROM sessions s JOIN quizzes q ON q.quiz_id = s.session_id"
            " LEFT JOIN quiz_states st ON st.quiz_id = s.session_id"
            " WHERE s.quiz_id = $1 AND ($2::timestamptz IS NULL OR s.created_at < $2)"
            " ORDER BY s.created_at DESC LIMIT $3",
            quiz_id,
            _at(before_ms) if before_ms is not None else None,
            limit,
        )
        return [
            Session(
                r["session_id"],
                quiz_id,
                r["title"],
                round(r["created_at"].timestamp() * 1000),
                Phase(r["phase"]),
                r["host_user_id"],
            )
            for r in rows
        ]

    async def stored_media(self, media_ids: Sequence[str]) -> set[str]:
        if not media_ids:
            return set()
        rows = await self._pool.fetch("SELECT media_id FROM media WHERE media_id = ANY($1::text[])", list(media_ids))
        return {r["media_id"] for r in rows}

    async def media(self, media_id: str) -> MediaFile | None:
        row = await self._pool.fetchrow("SELECT content_type, content FROM media WHERE media_id = $1", media_id)
        return MediaFile(media_id, row["content_type"], bytes(row["content"])) if row is not None else None

    async def get(self, quiz_id: str) -> QuizDefinition | None:
        raw = await self._pool.fetchval("SELECT definition::text FROM quizzes WHERE quiz_id = $1", quiz_id)
        return quiz_codec.decode(raw) if raw is not None else None

    async def list(self, limit: int, before_ms: int | None, owner_user_id: str | None = None) -> list[QuizDefinition]:
        rows = await self._pool.fetch(
            "SELECT q.definition::text AS d FROM authored_quizzes a JOIN quizzes q ON q.quiz_id = a.quiz_id"
            " WHERE ($1::timestamptz IS NULL OR a.created_at < $1) AND ($3::text IS NULL OR a.owner_user_id = $3)"
            " ORDER BY a.created_at DESC LIMIT $2",
            _at(before_ms) if before_ms is not None else None,
            limit,
            owner_user_id,
        )
        return [quiz_codec.decode(r["d"]) for r in rows]

    async def save_state(self, state: GameState) -> None:
        await self._pool.execute(_SAVE_STATE, *saved_state_row(state))

    async def saved_state(self, quiz_id: str) -> GameState | None:
        row = await self._pool.fetchrow(_SAVED_STATE, quiz_id)
        return state_from_row(quiz_id, tuple(row)) if row is not None else None

    async def close(self) -> None:
        await self._pool.close()
