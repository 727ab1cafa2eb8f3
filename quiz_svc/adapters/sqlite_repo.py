"""Quiz definitions in SQLite, for the embedded mode."""

from __future__ import annotations

import aiosqlite

from quiz_svc.adapters import quiz_codec
from quiz_svc.domain import QuizDefinition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quizzes (
    quiz_id     TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quizzes_created_ms ON quizzes (created_ms DESC);
"""


class SqliteQuizRepository:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str) -> SqliteQuizRepository:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        return cls(db)

    async def migrate(self) -> None:
        await self._db.executescript(_SCHEMA)
        await self._db.commit()

    async def add(self, quiz: QuizDefinition) -> bool:
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO quizzes (quiz_id, title, definition, created_ms) VALUES (?, ?, ?, ?)",
            (quiz.quiz_id, quiz.title, quiz_codec.encode(quiz).decode(), quiz.created_ms),
        )
        await self._db.commit()
        return cursor.rowcount == 1

    async def get(self, quiz_id: str) -> QuizDefinition | None:
        async with self._db.execute("SELECT definition FROM quizzes WHERE quiz_id = ?", (quiz_id,)) as cur:
            row = await cur.fetchone()
        return quiz_codec.decode(row[0]) if row else None

    async def list(self, limit: int, before_ms: int | None) -> list[QuizDefinition]:
        async with self._db.execute(
            "SELECT definition FROM quizzes WHERE (? IS NULL OR created_ms < ?) ORDER BY created_ms DESC LIMIT ?",
            (before_ms, before_ms, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [quiz_codec.decode(r[0]) for r in rows]

    async def close(self) -> None:
        await self._db.close()
