"""Players and hosts signed in with identity tokens of the application's identity provider (issue 16),
against a local JWKS with test keys: one player per user in a session, quizzes owned by users, and
refused tokens that write nothing. Over the in-memory engines and SQLite, as test_service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quiz_svc import domain
from quiz_svc.adapters.game_events import BusGameEvents
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.domain import HostAction
from quiz_svc.service import PlayerLeft, QuizGame
from quizmesh.auth import Credentials
from quizmesh.eventbus.memory import InMemoryBus
from quizmesh.events.v1 import events_pb2
from quizmesh.identity import ANONYMOUS, Identities
from quizmesh.pubsub import InMemoryChannels
from tests.quiz_svc.conftest import FakeClock
from tests.quiz_svc.test_service import KEY, QUESTIONS, Harness, ResultsFromBus, SwitchablePublisher
from tests.support.identity import TestProvider, hmac_token_with, new_key, public_pem, unsigned_token


@pytest.fixture
def provider(tmp_path: Path) -> TestProvider:
    return TestProvider(tmp_path)


async def _harness(identities: Identities) -> tuple[Harness, SqliteQuizRepository]:
    clock = FakeClock()
    bus = InMemoryBus()
    publisher = SwitchablePublisher(bus)
    repo = await SqliteQuizRepository.open(":memory:")
    await repo.ensure_schema()
    game = QuizGame(
        repo,
        InMemoryGameStore(),
        BusGameEvents(publisher),
        ChannelUpdateFeed(InMemoryChannels(), clock),
        Credentials(KEY),
        clock,
        ResultsFromBus(bus),
        InMemoryInstanceRegistry(),
        identities=identities,
    )
    return Harness(game, clock, bus, publisher), repo


@pytest.fixture
async def signed(provider: TestProvider) -> AsyncIterator[Harness]:
    """A deployment that admits both signed-in and anonymous players."""
    harness, repo = await _harness(provider.identities("both"))
    yield harness
    await repo.close()


def _joins(h: Harness) -> list[events_pb2.UserJoinedQuiz]:
    return [
        events_pb2.UserJoinedQuiz.FromString(r.value)
        for p in range(8)
        for r in h.bus.read("user_joined_quiz", p, 0, 10_000)
    ]


async def test_a_signed_in_user_is_one_player_from_every_device(signed: Harness, provider: TestProvider) -> None:
    quiz, host = await signed.game.create_quiz("Capitals", QUESTIONS, True)
    player, _, state = await signed.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    assert (player.nickname, state.participant_count) == ("User learner-1", 1)
    await signed.game.host_action(quiz.quiz_id, host, HostAction.START)

    # Another device, another token of the same user, another nickname asked for: the same player.
    again, other_token, state = await signed.game.join(quiz.quiz_id, "Second seat", provider.token("learner-1"))
    assert (again.player_id, again.nickname, state.participant_count) == (player.player_id, "User learner-1", 1)
    assert (await signed.game.resume(other_token)).player.player_id == player.player_id
    assert [(j.player_id, j.user_id) for j in _joins(signed)] == [(player.player_id, "learner-1")]
    # Another user is another player; an anonymous player carries no user.
    other, _, _ = await signed.game.join(quiz.quiz_id, "Ada", provider.token("learner-2"))
    anonymous, _, _ = await signed.game.join(quiz.quiz_id, "Bob")
    assert len({player.player_id, other.player_id, anonymous.player_id}) == 3
    assert [j.user_id for j in _joins(signed)] == ["learner-1", "learner-2", ""]


async def test_a_user_removed_from_a_session_cannot_take_a_new_seat(signed: Harness, provider: TestProvider) -> None:
    quiz, host = await signed.game.create_quiz("Capitals", QUESTIONS, True)
    player, _, _ = await signed.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    await signed.game.kick(quiz.quiz_id, host, player.player_id)
    with pytest.raises(domain.PlayerRemoved):
        await signed.game.join(quiz.quiz_id, "New name", provider.token("learner-1"))


def _bad_tokens(provider: TestProvider) -> list[str]:
    kid = provider.kid
    return [
        provider.token("u", key=new_key("RS256")),
        provider.token("u", exp=1, iat=0),
        provider.token("u", iss="https://evil.example.test/"),
        provider.token("u", aud="another-app"),
        unsigned_token(provider.claims("u"), kid),
        hmac_token_with(public_pem(provider.keys[kid]), provider.claims("u"), kid),
    ]


async def test_refused_tokens_write_nothing(signed: Harness, provider: TestProvider) -> None:
    quiz, host = await signed.game.create_quiz("Capitals", QUESTIONS, True)
    for token in _bad_tokens(provider):
        with pytest.raises(domain.NotSignedIn):
            await signed.game.join(quiz.quiz_id, "Mallory", token)
        with pytest.raises(domain.NotSignedIn):
            await signed.game.create_quiz("Forged", QUESTIONS, True, identity_token=token)
        with pytest.raises(domain.NotSignedIn):
            await signed.game.start_session(quiz.quiz_id, "", token)
    _, state = await signed.game.state(quiz.quiz_id)
    assert state.participant_count == 0
    assert _joins(signed) == []
    assert [q.quiz_id for q in await signed.game.list_quizzes(10, None)] == [quiz.quiz_id]
    assert [s.session_id for s in await signed.game.list_sessions(quiz.quiz_id, host, "", 10, None)] == [quiz.quiz_id]


async def test_a_quiz_may_require_sign_in(signed: Harness, provider: TestProvider) -> None:
    quiz, host = await signed.game.create_quiz("Members", QUESTIONS, True, requires_sign_in=True)
    with pytest.raises(domain.SignInRequired):
        await signed.game.join(quiz.quiz_id, "Anonymous")
    player, _, _ = await signed.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    assert player.nickname == "User learner-1"
    # The requirement is the quiz's: its later sessions keep it.
    session, _, _ = await signed.game.start_session(quiz.quiz_id, host, "")
    with pytest.raises(domain.SignInRequired):
        await signed.game.join(session.session_id, "Anonymous")


async def test_the_token_mode_admits_signed_in_players_only(provider: TestProvider) -> None:
    harness, repo = await _harness(provider.identities("token"))
    try:
        quiz, _ = await harness.game.create_quiz("Capitals", QUESTIONS, True)
        with pytest.raises(domain.SignInRequired):
            await harness.game.join(quiz.quiz_id, "Anonymous")
        await harness.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    finally:
        await repo.close()


async def test_the_anonymous_mode_refuses_identity_tokens(provider: TestProvider) -> None:
    harness, repo = await _harness(ANONYMOUS)
    try:
        quiz, _ = await harness.game.create_quiz("Capitals", QUESTIONS, True)
        with pytest.raises(domain.NotSignedIn, match="QUIZMESH_IDENTITY_MODE"):
            await harness.game.join(quiz.quiz_id, "", provider.token("learner-1"))
        await harness.game.join(quiz.quiz_id, "Ada")
    finally:
        await repo.close()


async def test_a_quiz_created_signed_in_is_its_authors(signed: Harness, provider: TestProvider) -> None:
    teacher = provider.token("teacher-1")
    quiz, first_host = await signed.game.create_quiz("Capitals", QUESTIONS, True, identity_token=teacher)
    await signed.game.create_quiz("Someone else's", QUESTIONS, True, identity_token=provider.token("teacher-2"))
    await signed.game.create_quiz("Anonymous", QUESTIONS, True)

    signed.clock.advance(1000)
    session, _, _ = await signed.game.start_session(quiz.quiz_id, "", provider.token("teacher-1"))
    assert session.host_user_id == "teacher-1"
    sessions = await signed.game.list_sessions(quiz.quiz_id, "", teacher, 10, None)
    assert [s.session_id for s in sessions] == [session.session_id, quiz.quiz_id]
    assert [q.quiz_id for q in await signed.game.list_quizzes(10, None, teacher)] == [quiz.quiz_id]
    # Another user, or the first session's host credential without the author's sign-in, is not the owner.
    for host_token, identity in (("", provider.token("teacher-2")), (first_host, "")):
        with pytest.raises(domain.NotTheHost):
            await signed.game.start_session(quiz.quiz_id, host_token, identity)
        with pytest.raises(domain.NotTheHost):
            await signed.game.list_sessions(quiz.quiz_id, host_token, identity, 10, None)


async def test_a_signed_in_teacher_hosts_their_sessions_with_their_identity_token(
    signed: Harness, provider: TestProvider
) -> None:
    quiz, _ = await signed.game.create_quiz("Capitals", QUESTIONS, True, identity_token=provider.token("teacher-1"))
    session, _, _ = await signed.game.start_session(quiz.quiz_id, "", provider.token("teacher-1"))
    for session_id in (quiz.quiz_id, session.session_id):
        state, _ = await signed.game.host_action(
            session_id, "", HostAction.START, identity_token=provider.token("teacher-1")
        )
        assert state.phase == domain.Phase.QUESTION_OPEN
        assert await signed.game.hosts(session_id, "", provider.token("teacher-1"))
        with pytest.raises(domain.NotTheHost):
            await signed.game.host_action(session_id, "", HostAction.END, identity_token=provider.token("teacher-2"))
        with pytest.raises(domain.NotSignedIn):
            await signed.game.host_action(session_id, "", HostAction.END, identity_token=_bad_tokens(provider)[0])
        assert not await signed.game.hosts(session_id, "", "")
    # An anonymous quiz's sessions are hosted by credential only.
    anonymous, _ = await signed.game.create_quiz("Open", QUESTIONS, True)
    assert not await signed.game.hosts(anonymous.quiz_id, "", provider.token("teacher-1"))


async def test_a_user_who_left_a_session_is_told_their_seat_is_not_taken_again(
    signed: Harness, provider: TestProvider
) -> None:
    quiz, _ = await signed.game.create_quiz("Capitals", QUESTIONS, True)
    _, token, _ = await signed.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    await signed.game.leave(token)
    with pytest.raises(PlayerLeft, match="one seat per session"):
        await signed.game.join(quiz.quiz_id, "", provider.token("learner-1"))
    _, state = await signed.game.state(quiz.quiz_id)
    assert state.participant_count == 0
