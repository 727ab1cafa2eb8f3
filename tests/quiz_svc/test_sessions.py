"""Quizzes run many times (issue 16): a quiz is authored once and owned; each run is a session with its
own join code, players and state. Over the in-memory engines and SQLite, as tests/quiz_svc/test_service.py."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from quiz_svc import domain
from quiz_svc.adapters import quiz_codec
from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository
from quiz_svc.domain import HostAction, Ownership, Phase, QuizDefinition
from quiz_svc.kinds import ChoiceAnswer
from quiz_svc.service import AnswerInput
from tests.quiz_svc import test_service
from tests.quiz_svc.test_service import QUESTIONS, Harness

# The game over the in-memory engines and SQLite, as test_service.py's tests have it.
harness = test_service.harness


async def test_a_new_session_has_its_own_join_code_players_and_state(harness: Harness) -> None:
    quiz, host = await harness.game.create_quiz("Capitals", QUESTIONS, True)
    _, first_player, _ = await harness.game.join(quiz.quiz_id, "Ada")
    await harness.game.host_action(quiz.quiz_id, host, HostAction.START)
    await harness.game.submit_answers([AnswerInput(first_player, 0, ChoiceAnswer(1))])
    harness.clock.advance(1000)

    session, copy, session_host = await harness.game.start_session(quiz.quiz_id, host, "")

    assert session.session_id == copy.quiz_id != quiz.quiz_id
    assert (session.quiz_id, session.phase, session.host_user_id) == (quiz.quiz_id, Phase.LOBBY, None)
    assert copy.questions == quiz.questions and copy.title == quiz.title
    assert copy.created_ms == harness.clock.now
    _, state = await harness.game.state(session.session_id)
    assert (state.phase, state.participant_count) == (Phase.LOBBY, 0)
    # The same nickname is free again: another run, other players.
    player, token, _ = await harness.game.join(session.session_id, "Ada")
    assert player.standing.total == 0
    await harness.game.host_action(session.session_id, session_host, HostAction.START)
    [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert not isinstance(outcome, domain.AnswerRefusal)
    # Each session's host credential runs that session only.
    with pytest.raises(domain.NotTheHost):
        await harness.game.host_action(quiz.quiz_id, session_host, HostAction.END)


async def test_the_owner_lists_the_sessions_newest_first_and_quizzes_once(harness: Harness) -> None:
    quiz, host = await harness.game.create_quiz("Capitals", QUESTIONS, True)
    harness.clock.advance(1000)
    second, _, _ = await harness.game.start_session(quiz.quiz_id, host, "")
    harness.clock.advance(1000)
    third, _, _ = await harness.game.start_session(quiz.quiz_id, host, "")

    sessions = await harness.game.list_sessions(quiz.quiz_id, host, "", 10, None)
    assert [s.session_id for s in sessions] == [third.session_id, second.session_id, quiz.quiz_id]
    page = await harness.game.list_sessions(quiz.quiz_id, host, "", 2, None)
    rest = await harness.game.list_sessions(quiz.quiz_id, host, "", 2, page[-1].created_ms)
    assert [s.session_id for s in page + rest] == [s.session_id for s in sessions]
    # Sessions are runs, not quizzes: the list of quizzes names the authored one once.
    assert [q.quiz_id for q in await harness.game.list_quizzes(10, None)] == [quiz.quiz_id]


async def test_only_the_owner_starts_or_lists_sessions(harness: Harness) -> None:
    quiz, host = await harness.game.create_quiz("Capitals", QUESTIONS, True)
    _, other_host = await harness.game.create_quiz("Other", QUESTIONS, True)
    session, _, session_host = await harness.game.start_session(quiz.quiz_id, host, "")
    _, player, _ = await harness.game.join(quiz.quiz_id, "Ada")
    for token in (other_host, session_host, player, "", "not-a-token"):
        with pytest.raises(domain.NotTheHost):
            await harness.game.start_session(quiz.quiz_id, token, "")
        with pytest.raises(domain.NotTheHost):
            await harness.game.list_sessions(quiz.quiz_id, token, "", 10, None)
    # A later session's join code is no quiz of its own.
    with pytest.raises(domain.QuizNotFound):
        await harness.game.start_session(session.session_id, session_host, "")
    assert len(await harness.game.list_sessions(quiz.quiz_id, host, "", 10, None)) == 2


async def test_a_session_that_ended_is_listed_as_ended(harness: Harness) -> None:
    quiz, host = await harness.game.create_quiz("Capitals", QUESTIONS, True)
    await harness.game.host_action(quiz.quiz_id, host, HostAction.START)
    await harness.game.host_action(quiz.quiz_id, host, HostAction.END)
    [session] = await harness.game.list_sessions(quiz.quiz_id, host, "", 10, None)
    assert session.phase == Phase.ENDED


async def test_an_embedded_database_from_before_sessions_gets_one_session_per_quiz(tmp_path: Path) -> None:
    path = str(tmp_path / "quizzes.db")
    old = QuizDefinition("OLD12345", "Capitals", tuple(QUESTIONS), True, 1_700_000_000_000)
    # The embedded mode's table of quizzes before sessions, holding one quiz.
    async with aiosqlite.connect(path) as released:
        await released.execute(
            "CREATE TABLE quizzes (quiz_id TEXT PRIMARY KEY, title TEXT NOT NULL, definition TEXT NOT NULL,"
            " created_ms INTEGER NOT NULL)"
        )
        await released.execute(
            "INSERT INTO quizzes VALUES (?, ?, ?, ?)",
            (old.quiz_id, old.title, quiz_codec.encode(old).decode(), old.created_ms),
        )
        await released.commit()

    repo = await SqliteQuizRepository.open(path)
    try:
        await repo.ensure_schema()
        await repo.ensure_schema()  # again, as at every start: nothing doubles
        assert await repo.ownership(old.quiz_id) == Ownership(old.quiz_id, None)
        assert [(s.session_id, s.quiz_id) for s in await repo.sessions(old.quiz_id, 10, None)] == [
            (old.quiz_id, old.quiz_id)
        ]
        assert [q.quiz_id for q in await repo.list(10, None)] == [old.quiz_id]
    finally:
        await repo.close()
