"""The ranking store in process memory, for the embedded mode and unit tests."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from leaderboard_svc.domain import (
    AnswerScored,
    LeaderboardPage,
    PlayerErased,
    PlayerJoined,
    PlayerLeft,
    RankingEvent,
    RankingSnapshot,
    Standing,
    after_answer,
    after_erase,
    after_join,
    rank,
    ranked,
)


@dataclass
class _Quiz:
    standings: dict[str, Standing] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)
    version: int = 0
    last_answer_ms: int = 0
    built: bool = False


class MemoryLeaderboardStore:
    """Single-process; each call runs without awaiting, so it is atomic on the event loop."""

    def __init__(self) -> None:
        self._quizzes: dict[str, _Quiz] = {}
        self._dirty: dict[str, str] = {}
        self._marks = itertools.count(1)

    async def ping(self) -> None:
        return None

    async def apply(self, events: Sequence[RankingEvent]) -> set[str]:
        changed: set[str] = set()
        mark = str(next(self._marks))
        self._dirty.update((event.quiz_id, mark) for event in events)
        for event in events:
            quiz = self._quizzes.setdefault(event.quiz_id, _Quiz())
            if self._apply(quiz, event):
                changed.add(event.quiz_id)
        return changed

    @staticmethod
    def _apply(quiz: _Quiz, event: RankingEvent) -> bool:
        current = quiz.standings.get(event.player_id)
        has_left = event.player_id in quiz.left
        if isinstance(event, PlayerLeft):
            if has_left:
                return False
            quiz.left.add(event.player_id)
            return quiz.standings.pop(event.player_id, None) is not None
        if isinstance(event, PlayerJoined):
            updated = after_join(current, event, has_left)
        elif isinstance(event, PlayerErased):
            updated = after_erase(current, event, has_left, bool(quiz.standings))
        else:
            updated = after_answer(current, event, has_left)
        if updated is None:
            return False
        quiz.standings[event.player_id] = updated
        if isinstance(event, AnswerScored):
            quiz.last_answer_ms = max(quiz.last_answer_ms, event.answer_time_ms)
        return True

    async def dirty_marks(self, quiz_ids: Sequence[str] | None = None) -> dict[str, str]:
        if quiz_ids is None:
            return dict(self._dirty)
        return {q: self._dirty[q] for q in quiz_ids if q in self._dirty}

    async def clear_dirty(self, marks: Mapping[str, str]) -> None:
        for quiz_id, mark in marks.items():
            if self._dirty.get(quiz_id) == mark:
                del self._dirty[quiz_id]

    async def unbuilt(self, quiz_ids: Sequence[str]) -> set[str]:
        return {q for q in quiz_ids if not self._quizzes.get(q, _Quiz()).built}

    async def mark_built(self, quiz_id: str, version_floor: int) -> None:
        quiz = self._quizzes.setdefault(quiz_id, _Quiz())
        quiz.built = True
        quiz.version = max(quiz.version, version_floor)

    async def ranking(self, quiz_id: str) -> RankingSnapshot:
        quiz = self._quizzes.get(quiz_id, _Quiz())
        return RankingSnapshot(quiz_id, quiz.version, ranked(rank(quiz.standings.values())), quiz.last_answer_ms)

    async def next_ranking(self, quiz_id: str) -> RankingSnapshot:
        self._quizzes.setdefault(quiz_id, _Quiz()).version += 1
        return await self.ranking(quiz_id)

    async def top(self, quiz_id: str, n: int, player_id: str) -> LeaderboardPage:
        quiz = self._quizzes.get(quiz_id, _Quiz())
        entries = ranked(rank(quiz.standings.values()))
        player = next((e for e in entries if e.player_id == player_id), None) if player_id else None
        return LeaderboardPage(entries[:n], player, len(entries), quiz.version)
