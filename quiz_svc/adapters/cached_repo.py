"""Read-through caches in front of the quiz database.

Quiz definitions never change once created, so a cached copy is never stale: a process-local LRU
serves the hot path without a network hop, Redis shares warm copies between processes (the original
design's cache warm-up job), and the database is read only on a miss of both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from quiz_svc.adapters import quiz_codec
from quiz_svc.domain import GameState, Ownership, QuizDefinition, Session
from quiz_svc.media import MediaFile
from quiz_svc.ports import QuizRepository
from quizmesh.redis_client import RedisClient

_REDIS_TTL_S = 3600


class CachedQuizRepository:
    def __init__(self, source: QuizRepository, redis: RedisClient | None, *, local_entries: int = 20_000) -> None:
        self._source = source
        self._redis = redis
        self._local: OrderedDict[str, QuizDefinition] = OrderedDict()
        self._local_entries = local_entries

    def _remember(self, quiz: QuizDefinition) -> None:
        self._local[quiz.quiz_id] = quiz
        self._local.move_to_end(quiz.quiz_id)
        while len(self._local) > self._local_entries:
            self._local.popitem(last=False)

    async def ensure_schema(self) -> None:
        await self._source.ensure_schema()

    async def add(
        self, quiz: QuizDefinition, media: Sequence[MediaFile] = (), owner_user_id: str | None = None
    ) -> bool:
        added = await self._source.add(quiz, media, owner_user_id)
        if added:
            self._remember(quiz)
        return added

    async def add_session(self, session: QuizDefinition, quiz_id: str, host_user_id: str | None) -> bool:
        added = await self._source.add_session(session, quiz_id, host_user_id)
        if added:
            self._remember(session)
        return added

    async def ownership(self, quiz_id: str) -> Ownership | None:
        return await self._source.ownership(quiz_id)

    async def session_host(self, session_id: str) -> str | None:
        return await self._source.session_host(session_id)

    async def sessions(self, quiz_id: str, limit: int, before_ms: int | None) -> list[Session]:
        return await self._source.sessions(quiz_id, limit, before_ms)

    async def stored_media(self, media_ids: Sequence[str]) -> set[str]:
        return await self._source.stored_media(media_ids)

    async def media(self, media_id: str) -> MediaFile | None:
        # Not cached here: the edge keeps the media its players fetch, one upstream read per edge.
        return await self._source.media(media_id)

    async def get(self, quiz_id: str) -> QuizDefinition | None:
        quiz = self._local.get(quiz_id)
        if quiz is not None:
            self._local.move_to_end(quiz_id)
            return quiz
        key = f"qz:{{{quiz_id}}}:def"
        if self._redis is not None:
            raw = await self._redis.get(key)
            if raw is not None:
                quiz = quiz_codec.decode(raw)
                self._remember(quiz)
                return quiz
        quiz = await self._source.get(quiz_id)
        if quiz is not None:
            self._remember(quiz)
            if self._redis is not None:
                await self._redis.set(key, quiz_codec.encode(quiz), ex=_REDIS_TTL_S)
        return quiz

    async def list(self, limit: int, before_ms: int | None, owner_user_id: str | None = None) -> list[QuizDefinition]:
        return await self._source.list(limit, before_ms, owner_user_id)

    async def save_state(self, state: GameState) -> None:
        await self._source.save_state(state)

    async def saved_state(self, quiz_id: str) -> GameState | None:
        return await self._source.saved_state(quiz_id)

    async def close(self) -> None:
        await self._source.close()
