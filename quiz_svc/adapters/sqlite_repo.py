"""Quiz definitions in SQLite, for the embedded mode."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from quiz_svc.adapters import quiz_codec
from quiz_svc.adapters.quiz_codec import save_state_statement, saved_state_query, saved_state_row, state_from_row
from quiz_svc.domain import GameState, Ownership, Phase, QuizDefinition, Session
from quiz_svc.media import MediaFile

_SAVE_STATE = save_state_statement(lambda _: "?")
_SAVED_STATE = saved_state_query("?")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS quizzes (
    quiz_id     TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quizzes_created_ms ON quizzes (created_ms DESC);
CREATE TABLE IF NOT EXISTS quiz_states (
    quiz_id             TEXT PRIMARY KEY REFERENCES quizzes (quiz_id),
    phase               TEXT NOT NULL,
    question_index      INTEGER NOT NULL,
    question_count      INTEGER NOT NULL,
    open_ms             INTEGER NOT NULL,
    close_ms            INTEGER NOT NULL,
    leaderboard_visible INTEGER NOT NULL,
    version             INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    media_id     TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    content      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS authored_quizzes (
    quiz_id       TEXT PRIMARY KEY REFERENCES quizzes (quiz_id),
    owner_user_id TEXT,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS authored_quizzes_owner ON authored_quizzes (owner_user_id, created_ms DESC);
CREATE INDEX IF NOT EXISTS authored_quizzes_created_ms ON authored_quizzes (created_ms DESC);
CREATE TABLE IF NOT EXISTS sessions (
    session_id    TEXT PRIMARY KEY REFERENCES quizzes (quiz_id),
    quiz_id       TEXT NOT NULL REFERENCES authored_quizzes (quiz_id),
    host_user_id  TEXT,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_of_quiz ON sessions (quiz_id, created_ms DESC);
-- As quiz_svc/migrations/0004_quiz_sessions.sql: a quiz stored before sessions (every later one has
-- its session row, written with it) becomes a quiz with one session of the same join code.
INSERT OR IGNORE INTO authored_quizzes (quiz_id, owner_user_id, created_ms)
SELECT quiz_id, NULL, created_ms FROM quizzes q
WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = q.quiz_id);
INSERT OR IGNORE INTO sessions (session_id, quiz_id, host_user_id, created_ms)
SELECT quiz_id, quiz_id, NULL, created_ms FROM quizzes q
WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = q.quiz_id);
"""


class SqliteQuizRepository:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str) -> SqliteQuizRepository:
        # persistence_svc opens the same file in the embedded mode: wait for its locks, never fail on them.
        db = await aiosqlite.connect(path, timeout=10.0)
        await db.execute("PRAGMA busy_timeout=10000")
        await db.execute("PRAGMA journal_mode=WAL")
        return cls(db)

    async def ensure_schema(self) -> None:
        await self._db.executescript(_SCHEMA)
        await self._db.commit()

    async def add(
        self, quiz: QuizDefinition, media: Sequence[MediaFile] = (), owner_user_id: str | None = None
    ) -> bool:
        if not await self._insert_quiz(quiz):
            return False
        await self._db.execute(
            "INSERT INTO authored_quizzes (quiz_id, owner_user_id, created_ms) VALUES (?, ?, ?)",
            (quiz.quiz_id, owner_user_id, quiz.created_ms),
        )
        await self._insert_session(quiz, quiz.quiz_id, owner_user_id)
        await self._db.executemany(
            "INSERT OR IGNORE INTO media (media_id, content_type, content) VALUES (?, ?, ?)",
            [(m.media_id, m.content_type, m.content) for m in media],
        )
        await self._db.commit()
        return True

    async def add_session(self, session: QuizDefinition, quiz_id: str, host_user_id: str | None) -> bool:
        if not await self._insert_quiz(session):
            return False
        await self._insert_session(session, quiz_id, host_user_id)
        await self._db.commit()
        return True

    async def _insert_quiz(self, quiz: QuizDefinition) -> bool:
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO quizzes (quiz_id, title, definition, created_ms) VALUES (?, ?, ?, ?)",
            (quiz.quiz_id, quiz.title, quiz_codec.encode(quiz).decode(), quiz.created_ms),
        )
        if cursor.rowcount != 1:
            await self._db.rollback()
            return False
        return True

    async def _insert_session(self, session: QuizDefinition, quiz_id: str, host_user_id: str | None) -> None:
        await self._db.execute(
            "INSERT INTO sessions (session_id, quiz_id, host_user_id, created_ms) VALUES (?, ?, ?, ?)",
            (session.quiz_id, quiz_id, host_user_id, session.created_ms),
        )

    async def ownership(self, quiz_id: str) -> Ownership | None:
        async with self._db.execute("SELECT owner_user_id FROM authored_quizzes WHERE quiz_id = ?", (quiz_id,)) as cur:
            row = await cur.fetchone()
        return Ownership(quiz_id, row[0]) if row is not None else None

    async def session_host(self, session_id: str) -> str | None:
        async with self._db.execute("SELECT host_user_id FROM sessions WHERE session_id = ?", (session_id,)) as cur:
            row = await cur.fetchone()
        return row[0] if row is not None else None

    async def sessions(self, quiz_id: str, limit: int, before_ms: int | None) -> list[Session]:
        async with self._db.execute(
            "SELECT s.session_id, q.title, s.created_ms, s.host_user_id, coalesce(st.phase, 'lobby')"
            " FROM sessions s JOIN quizzes q ON q.quiz_id = s.session_id"
            " LEFT JOIN quiz_states st ON st.quiz_id = s.session_id"
            " WHERE s.quiz_id = ? AND (? IS NULL OR s.created_ms < ?) ORDER BY s.created_ms DESC LIMIT ?",
            (quiz_id, before_ms, before_ms, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [Session(r[0], quiz_id, r[1], int(r[2]), Phase(r[4]), r[3]) for r in rows]

    async def stored_media(self, media_ids: Sequence[str]) -> set[str]:
        found = set()
        for media_id in media_ids:
            async with self._db.execute("SELECT 1 FROM media WHERE media_id = ?", (media_id,)) as cur:
                if await cur.fetchone():
                    found.add(media_id)
        return found

    async def media(self, media_id: str) -> MediaFile | None:
        async with self._db.execute("SELECT content_type, content FROM media WHERE media_id = ?", (media_id,)) as cur:
            row = await cur.fetchone()
        return MediaFile(media_id, row[0], bytes(row[1])) if row else None

    async def get(self, quiz_id: str) -> QuizDefinition | None:
        async with self._db.execute("SELECT definition FROM quizzes WHERE quiz_id = ?", (quiz_id,)) as cur:
            row = await cur.fetchone()
        return quiz_codec.decode(row[0]) if row else None

    async def list(self, limit: int, before_ms: int | None, owner_user_id: str | None = None) -> list[QuizDefinition]:
        async with self._db.execute(
            "SELECT q.definition FROM authored_quizzes a JOIN quizzes q ON q.quiz_id = a.quiz_id"
            " WHERE (? IS NULL OR a.created_ms < ?) AND (? IS NULL OR a.owner_user_id = ?)"
            " ORDER BY a.created_ms DESC LIMIT ?",
            (before_ms, before_ms, owner_user_id, owner_user_id, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [quiz_codec.decode(r[0]) for r in rows]

    async def save_state(self, state: GameState) -> None:
        await self._db.execute(_SAVE_STATE, saved_state_row(state))
        await self._db.commit()

    async def saved_state(self, quiz_id: str) -> GameState | None:
        async with self._db.execute(_SAVED_STATE, (quiz_id,)) as cur:
            row = await cur.fetchone()
        return state_from_row(quiz_id, tuple(row)) if row is not None else None

    async def close(self) -> None:
        await self._db.close()
