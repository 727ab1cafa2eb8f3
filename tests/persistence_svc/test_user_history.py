"""A signed-in user's history (issue 16): the sessions they played, newest first, with score, rank,
players and answers; read through ListUserResults with their identity token or the backend's service
credential. The store tests run on SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from leaderboard_svc import domain as leaderboard
from persistence_svc.catch_up import CatchUp
from persistence_svc.domain import (
    DELETED_NICKNAME,
    Page,
    ParticipantCursor,
    ParticipantRow,
    UserSession,
    batch_of,
    final_standings,
)
from persistence_svc.event_rows import row_from_event
from persistence_svc.grpc_api import PersistenceServicer
from persistence_svc.history import user_results
from persistence_svc.main import SERVICE_NAME
from persistence_svc.ports import LiveCopyUnavailable, ResultStore, StoreUnavailable
from quizmesh.eventbus.memory import InMemoryBus, InMemoryGroupProgress
from quizmesh.eventcodec import Event
from quizmesh.events.v1 import events_pb2
from quizmesh.grpc_server import GrpcServer, ServiceBinding
from quizmesh.persistence.v1 import persistence_service_pb2 as pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc
from tests.persistence_svc.persistence_factories import answered, joined, left, new_quiz_id
from tests.support.identity import TestProvider

SERVICE_TOKEN = "s" * 40


def _joined_as(user_id: str, quiz_id: str, player_id: str, at_ms: int) -> events_pb2.UserJoinedQuiz:
    event = joined(quiz_id, player_id, at_ms, nickname=f"Learner {user_id[:6]}")
    event.user_id = user_id
    return event


async def _save(store: ResultStore, events: list[Event]) -> None:
    await store.save(batch_of(row_from_event(e) for e in events))


async def _three_sessions(store: ResultStore, user: str) -> list[str]:
    """The user plays three sessions, started one minute apart: first of 3, second of 3 having left
    another player ahead, and one they left (not ranked)."""
    sessions = [new_quiz_id() for _ in range(3)]
    won, second, gone = sessions
    events: list[Event] = [
        _joined_as(user, won, "me", 60_000),
        joined(won, "a", 60_001),
        joined(won, "b", 60_002),
        answered(won, 0, "me", 61_000, points=900),
        answered(won, 0, "a", 61_001, points=500),
        answered(won, 1, "me", 62_000, points=0),
        _joined_as(user, second, "me2", 120_000),
        joined(second, "a", 120_001),
        joined(second, "b", 120_002),
        answered(second, 0, "a", 121_000, points=800),
        answered(second, 0, "me2", 121_001, points=700),
        _joined_as(user, gone, "me3", 180_000),
        joined(gone, "a", 180_001),
        left(gone, "me3", 180_500),
        # Another user's session is not theirs.
        _joined_as(f"other-{user}", new_quiz_id(), "x", 240_000),
    ]
    _running_totals(events)
    await _save(store, events)
    return sessions


async def test_a_users_sessions_come_newest_first_with_score_rank_players_and_answers(store: ResultStore) -> None:
    user = uuid.uuid4().hex
    won, second, gone = await _three_sessions(store, user)

    results, after = await user_results(store, user, 10, None)

    assert after is None
    assert [(r.session.quiz_id, r.score, r.rank, r.player_count) for r in results] == [
        (gone, 0, 0, 1),
        (second, 700, 2, 3),
        (won, 900, 1, 3),
    ]
    assert results[2].nickname == f"Learner {user[:6]}"
    assert [(a.question_index, a.correct, a.points, a.total_score) for a in results[2].answers] == [
        (0, True, 900, 900),
        (1, False, 0, 900),
    ]


async def test_a_users_history_pages_without_repeats_and_a_redelivered_join_adds_no_row(
    store: ResultStore,
) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    await _save(store, [_joined_as(user, sessions[0], "me", 60_000)])  # a redelivery

    first, after = await user_results(store, user, 2, None)
    rest, end = await user_results(store, user, 2, after)

    assert end is None
    assert [r.session.quiz_id for r in first + rest] == sessions[::-1]


async def test_deleting_a_users_data_anonymises_them_and_keeps_every_ranking(store: ResultStore) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    before = {q: await _ranking(store, q) for q in sessions}

    anonymised = await store.anonymise_user(user, DELETED_NICKNAME)
    mine = set(zip(sessions, ["me", "me2", "me3"], strict=True))
    assert {(s.quiz_id, s.player_id) for s in anonymised} == mine
    assert await store.forget_user(user) == 3

    assert (await user_results(store, user, 10, None))[0] == []
    for quiz_id in sessions:
        participants = (await store.list_participants(quiz_id, 100, None)).items
        assert all(p.user_id is None for p in participants)
        assert {p.nickname for p in participants if p.player_id.startswith("me")} == {DELETED_NICKNAME}
        assert await _ranking(store, quiz_id) == before[quiz_id]
    # A join of theirs delivered again (a replay of Kafka) adds nothing back; a repeat finds nothing left.
    await _save(store, [_joined_as(user, sessions[0], "me", 60_000)])
    assert (await user_results(store, user, 10, None))[0] == []
    assert await store.anonymise_user(user, DELETED_NICKNAME) == ()
    assert await store.forget_user(user) == 0


async def test_an_anonymisation_not_yet_forgotten_finds_the_same_participations_again(store: ResultStore) -> None:
    """What lets a DeleteUserData interrupted between its steps finish when repeated."""
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    first = await store.anonymise_user(user, DELETED_NICKNAME)

    again = await store.anonymise_user(user, DELETED_NICKNAME)

    assert set(again) == set(first) and {s.quiz_id for s in again} == set(sessions)
    participants = (await store.list_participants(sessions[0], 100, None)).items
    assert [(p.nickname, p.user_id) for p in participants if p.player_id == "me"] == [(DELETED_NICKNAME, None)]


async def _ranking(store: ResultStore, quiz_id: str) -> list[tuple[str, int]]:
    participants = (await store.list_participants(quiz_id, 100, None)).items
    answers = (await store.list_answers(quiz_id, 100, None)).items
    return [(s.player_id, s.score) for s in final_standings(participants, answers)]


def test_the_historys_ranking_is_the_leaderboards() -> None:
    """Random sessions ranked by the leaderboard's rule (its domain, event by event) and by the history's
    reading of the stored rows give the same order."""
    rng = random.Random(16)
    for _ in range(200):
        quiz = "q"
        players = [f"p{n}" for n in range(rng.randint(1, 8))]
        events: list[Event] = []
        for n, player in enumerate(players):
            events.append(joined(quiz, player, rng.choice([n, 5])))
        for index in range(rng.randint(0, 4)):
            for player in players:
                if rng.random() < 0.7:
                    event = answered(quiz, index, player, 1000 * (index + 1) + rng.choice([0, 0, 7, 30]))
                    event.points = rng.choice([0, 0, 500, 1000])
                    events.append(event)
        _running_totals(events)
        for player in players:
            if rng.random() < 0.15:
                events.append(left(quiz, player, 9000))

        batch = batch_of(row_from_event(e) for e in events)
        departures = {leave.player_id: leave.left_at for leave in batch.leaves}
        participants = [dataclasses.replace(j, left_at=departures.get(j.player_id)) for j in batch.joins]
        ours = [s.player_id for s in final_standings(participants, batch.answers)]
        assert ours == [s.player_id for s in leaderboard.rank(_leaderboard_standings(events))]


def _running_totals(events: list[Event]) -> None:
    """Sets each answer's total_score to its player's running total, as quiz_svc judges."""
    totals: dict[tuple[str, str], int] = {}
    for event in events:
        if isinstance(event, events_pb2.AnswerSubmitted):
            key = (event.quiz_id, event.player_id)
            totals[key] = totals.get(key, 0) + event.points
            event.total_score = totals[key]


def _leaderboard_standings(events: list[Event]) -> list[leaderboard.Standing]:
    standings: dict[str, leaderboard.Standing] = {}
    gone: set[str] = set()
    for event in events:
        assert not isinstance(event, events_pb2.LeaderboardUpdated)
        current = standings.get(event.player_id)
        if isinstance(event, events_pb2.UserJoinedQuiz):
            new = leaderboard.after_join(
                current,
                leaderboard.PlayerJoined(event.quiz_id, event.player_id, event.nickname, event.quiz_elapsed_ms),
                False,
            )
        elif isinstance(event, events_pb2.AnswerSubmitted):
            scored = leaderboard.AnswerScored(
                event.quiz_id, event.player_id, event.question_index, event.total_score, event.quiz_elapsed_ms, 0
            )
            new = leaderboard.after_answer(current, scored, False)
        else:
            gone.add(event.player_id)
            continue
        if new is not None:
            standings[event.player_id] = new
    return [s for p, s in standings.items() if p not in gone]


# --- ListUserResults ---


@pytest.fixture
def provider(tmp_path: Path) -> TestProvider:
    return TestProvider(tmp_path)


class _LiveCopy:
    """A live copy of players' names (quiz_svc's game state or leaderboard_svc's rankings) that records
    what it was asked to rename and what the durable store said of those players at that moment."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self.renamed: dict[tuple[str, str], str] = {}
        self.stored_names_then: set[str] = set()
        self.failures = 0

    async def erase(self, players: Sequence[UserSession], nickname: str) -> None:
        if self.failures:
            self.failures -= 1
            raise LiveCopyUnavailable("quiz_svc could not rename the players (UNAVAILABLE: connection refused)")
        for p in players:
            stored = (await self._store.list_participants(p.quiz_id, 100, None)).items
            self.stored_names_then |= {s.nickname for s in stored if s.player_id == p.player_id}
            self.renamed[(p.quiz_id, p.player_id)] = nickname

    async def close(self) -> None:
        return None


@pytest.fixture
def copies(store: ResultStore) -> list[_LiveCopy]:
    return [_LiveCopy(store), _LiveCopy(store)]


@pytest.fixture
async def stub(
    store: ResultStore, provider: TestProvider, copies: list[_LiveCopy]
) -> AsyncIterator[pb_grpc.PersistenceServiceAsyncStub]:
    servicer = PersistenceServicer(
        store,
        CatchUp(InMemoryGroupProgress(InMemoryBus()), "g"),
        provider.identities(),
        SERVICE_TOKEN,
        live_copies=copies,
    )
    server = GrpcServer(
        "127.0.0.1:0", [ServiceBinding(SERVICE_NAME, pb_grpc.add_PersistenceServiceServicer_to_server, servicer)]
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield cast("pb_grpc.PersistenceServiceAsyncStub", pb_grpc.PersistenceServiceStub(channel))
    finally:
        await server.stop(1)


async def test_a_user_reads_their_history_with_their_token_and_the_backend_with_its_credential(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub, provider: TestProvider
) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)

    page = await stub.ListUserResults(pb.ListUserResultsRequest(identity_token=provider.token(user), page_size=2))
    rest = await stub.ListUserResults(
        pb.ListUserResultsRequest(identity_token=provider.token(user), page_token=page.next_page_token)
    )
    assert [r.session_id for r in [*page.results, *rest.results]] == sessions[::-1]
    assert [(r.score, r.rank, r.player_count) for r in rest.results] == [(900, 1, 3)]
    assert [(a.question_index, a.correct, a.points) for a in rest.results[0].answers] == [(0, True, 900), (1, False, 0)]
    assert rest.next_page_token == ""

    backend = await stub.ListUserResults(pb.ListUserResultsRequest(user_id=user, service_token=SERVICE_TOKEN))
    assert [r.session_id for r in backend.results] == sessions[::-1]


@pytest.mark.parametrize(
    "request_fields",
    [
        {},
        {"user_id": "anyone"},
        {"user_id": "anyone", "service_token": "x" * 40},
        {"identity_token": "not-a-token"},
    ],
)
async def test_a_history_without_a_valid_credential_is_refused(
    stub: pb_grpc.PersistenceServiceAsyncStub, request_fields: dict[str, str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListUserResults(pb.ListUserResultsRequest(**request_fields))  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_user_deletes_their_data_with_their_token_and_nobody_else_can(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub, provider: TestProvider
) -> None:
    user = uuid.uuid4().hex
    await _three_sessions(store, user)
    for refused in ({"identity_token": "forged"}, {"user_id": user}, {"user_id": user, "service_token": "x" * 40}):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.DeleteUserData(pb.DeleteUserDataRequest(**refused))
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (
        len((await stub.ListUserResults(pb.ListUserResultsRequest(identity_token=provider.token(user)))).results) == 3
    )

    deleted = await stub.DeleteUserData(pb.DeleteUserDataRequest(identity_token=provider.token(user)))
    assert deleted.participations == 3
    assert (await stub.ListUserResults(pb.ListUserResultsRequest(identity_token=provider.token(user)))).results == []


async def test_deleting_renames_the_live_copies_after_the_durable_records(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub, copies: list[_LiveCopy]
) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)

    await stub.DeleteUserData(pb.DeleteUserDataRequest(user_id=user, service_token=SERVICE_TOKEN))

    mine = dict(zip(sessions, ["me", "me2", "me3"], strict=True))
    for copy in copies:
        assert copy.renamed == {(q, p): DELETED_NICKNAME for q, p in mine.items()}
        # A rebuild of a live copy reads the durable records: they were anonymous before any copy was renamed.
        assert copy.stored_names_then == {DELETED_NICKNAME}


async def test_a_deletion_a_live_copy_failed_is_unavailable_and_its_repeat_finishes_it(
    store: ResultStore,
    stub: pb_grpc.PersistenceServiceAsyncStub,
    copies: list[_LiveCopy],
    provider: TestProvider,
) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    copies[1].failures = 1

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.DeleteUserData(pb.DeleteUserDataRequest(identity_token=provider.token(user)))

    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "repeat DeleteUserData" in (failed.value.details() or "")
    assert copies[1].renamed == {}
    # Not a silent partial success: the link from the user to their players is still there...
    assert len((await user_results(store, user, 10, None))[0]) == 3
    # ...so the repeat finds every participation again and finishes.
    repeated = await stub.DeleteUserData(pb.DeleteUserDataRequest(identity_token=provider.token(user)))
    assert repeated.participations == 3
    assert set(copies[1].renamed) == set(zip(sessions, ["me", "me2", "me3"], strict=True))
    assert (await user_results(store, user, 10, None))[0] == []
    again = await stub.DeleteUserData(pb.DeleteUserDataRequest(identity_token=provider.token(user)))
    assert again.participations == 0


async def test_a_page_token_does_not_continue_another_users_history(
    store: ResultStore, stub: pb_grpc.PersistenceServiceAsyncStub, provider: TestProvider
) -> None:
    user = uuid.uuid4().hex
    await _three_sessions(store, user)
    page = await stub.ListUserResults(pb.ListUserResultsRequest(identity_token=provider.token(user), page_size=1))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListUserResults(
            pb.ListUserResultsRequest(identity_token=provider.token("mallory"), page_token=page.next_page_token)
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- a page's sessions, read concurrently ---


class _ReverseStore:
    """Delegates to a store, but each session's read finishes only after the next (older) session's
    has: the reads complete in the reverse of the page's order."""

    def __init__(self, inner: ResultStore, order: list[str], fail: str | None = None) -> None:
        self._inner = inner
        self._done = {quiz_id: asyncio.Event() for quiz_id in order}
        self._after = dict(itertools.pairwise(order))
        self._fail = fail
        self.finished: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def list_participants(
        self, quiz_id: str, limit: int, after: ParticipantCursor | None, *, from_primary: bool = False
    ) -> Page[ParticipantRow, ParticipantCursor]:
        if quiz_id == self._fail:
            raise StoreUnavailable("PostgreSQL: connection lost")
        older = self._after.get(quiz_id)
        if older is not None:
            await self._done[older].wait()
        page = await self._inner.list_participants(quiz_id, limit, after, from_primary=from_primary)
        self.finished.append(quiz_id)
        self._done[quiz_id].set()
        return page


async def test_a_pages_sessions_keep_their_order_whatever_order_their_reads_finish_in(store: ResultStore) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    expected, _ = await user_results(store, user, 10, None)
    reverse = _ReverseStore(store, sessions[::-1])

    results, _ = await user_results(cast("ResultStore", reverse), user, 10, None)

    assert reverse.finished == sessions  # oldest first: the reads did run at once
    assert results == expected


async def test_a_failed_session_read_fails_the_page_with_the_stores_error(store: ResultStore) -> None:
    user = uuid.uuid4().hex
    sessions = await _three_sessions(store, user)
    failing = _ReverseStore(store, sessions[::-1], fail=sessions[1])

    with pytest.raises(StoreUnavailable):
        await user_results(cast("ResultStore", failing), user, 10, None)
