"""A signed-in user's history: the sessions they played, newest first, each with their final score, rank
and answers. The user's sessions come from one index range of user_sessions; each session is then read
as the results export reads it (by quiz ID), since a rank needs every player of the session. A page's
sessions are read concurrently, a few at a time, so a page costs about its slowest reads rather than the
sum of all of them, without taking the whole connection pool from the sink."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from persistence_svc.domain import (
    AnswerRow,
    HistoryCursor,
    Page,
    ParticipantRow,
    UserSession,
    final_standings,
)
from persistence_svc.ports import ResultStore

_READ_PAGE = 5000
# Sessions of one page read at once: each holds a pooled connection (QUIZMESH_PERSISTENCE_DB_POOL_SIZE,
# 10 by default) for a moment, and the sink needs one too.
CONCURRENT_SESSION_READS = 4
ItemT = TypeVar("ItemT")
CursorT = TypeVar("CursorT")


@dataclass(frozen=True)
class SessionResult:
    session: UserSession
    nickname: str
    score: int
    rank: int  # one-based; 0 when the user left or was removed (not ranked)
    player_count: int
    answers: tuple[AnswerRow, ...]  # the user's, by question


async def _every(fetch: Callable[[CursorT | None], Awaitable[Page[ItemT, CursorT]]]) -> list[ItemT]:
    items: list[ItemT] = []
    after: CursorT | None = None
    while True:
        page = await fetch(after)
        items.extend(page.items)
        if page.next_after is None:
            return items
        after = page.next_after


async def _session_result(store: ResultStore, session: UserSession) -> SessionResult:
    participants: list[ParticipantRow] = await _every(
        functools.partial(store.list_participants, session.quiz_id, _READ_PAGE)
    )
    answers: list[AnswerRow] = await _every(functools.partial(store.list_answers, session.quiz_id, _READ_PAGE))
    ranking = [s.player_id for s in final_standings(participants, answers)]
    mine = next((p for p in participants if p.player_id == session.player_id), None)
    own = tuple(sorted((a for a in answers if a.player_id == session.player_id), key=lambda a: a.question_index))
    return SessionResult(
        session=session,
        nickname=mine.nickname if mine is not None else "",
        score=own[-1].total_score if own else 0,
        rank=ranking.index(session.player_id) + 1 if session.player_id in ranking else 0,
        player_count=len(ranking),
        answers=own,
    )


async def user_results(
    store: ResultStore, user_id: str, limit: int, after: HistoryCursor | None
) -> tuple[list[SessionResult], HistoryCursor | None]:
    sessions = await store.user_sessions(user_id, limit, after)
    turns = asyncio.Semaphore(CONCURRENT_SESSION_READS)

    async def read(session: UserSession) -> SessionResult:
        async with turns:
            return await _session_result(store, session)

    # TaskGroup cancels the other reads when one fails; the caller gets that one failure, as before.
    try:
        async with asyncio.TaskGroup() as group:
            reads = [group.create_task(read(session)) for session in sessions.items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [r.result() for r in reads], sessions.next_after
