"""Issue 16's acceptance: a learner signs in with a token of a test identity provider, plays two sessions
of the same quiz run by a signed-in teacher (who hosts over the WebSocket with their identity token), and
sees both in their history with the right scores and ranks; the teacher lists both sessions and exports
each. And its deletion, everywhere a name is kept: a learner who finished one session and is in the middle
of another asks DeleteUserData; then neither quiz_svc's game state nor leaderboard_svc's rankings (nor its
next publication) hold their nickname or user ID, every rank and score is as before, and asking again is a
successful no-op. On the embedded stack and on the real one, where the Redis keys are read as well."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc
from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as ps_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from quizmesh.redis_client import RedisClient
from tests.support.checks import leaderboard_ranking, wait_for_stored_answers
from tests.support.client import EdgeClient
from tests.support.identity import TestProvider
from tests.support.infra import real_redis
from tests.support.stack import Stack, embedded_stack, process_stack

pytestmark = pytest.mark.e2e

QUESTIONS = [
    pb.Question(text="2 + 2 = ?", choices=["3", "4"], correct_choices=[1], time_limit_seconds=60),
    pb.Question(text="3 + 3 = ?", choices=["6", "7"], correct_choices=[0], time_limit_seconds=60),
]


@pytest.fixture
def provider(tmp_path: Path) -> TestProvider:
    directory = tmp_path / "idp"
    directory.mkdir()
    return TestProvider(directory)


@pytest.fixture(params=["embedded", "processes"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path, provider: TestProvider) -> AsyncIterator[Stack]:
    env = dict(provider.env("both"))
    if request.param == "embedded":
        async with embedded_stack(tmp_path, env) as running:
            yield running
    else:
        async with process_stack(tmp_path / "logs", extra_env=env) as running:
            yield running


async def _play_session(
    stack: Stack,
    session: aiohttp.ClientSession,
    session_id: str,
    teacher_token: str,
    learner_token: str,
    choices: list[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The teacher hosts over the WebSocket, signed in; the learner (signed in) and Bob (anonymous) play
    both questions: the learner picks `choices`, Bob the opposite. Returns both players' answer results."""
    host = await EdgeClient.connect(session, stack.ws_url())
    hosting = await host.request("host_quiz", quiz_id=session_id, identity_token=teacher_token)
    assert hosting["type"] == "hosting", hosting
    assert hosting["quiz"]["questions"][0]["correct_choices"] == [1]  # shown to the verified host only
    learner = await EdgeClient.connect(session, stack.ws_url())
    joined = await learner.request("join_quiz", quiz_id=session_id, nickname="Lea", identity_token=learner_token)
    assert joined["type"] == "joined", joined
    bob = await EdgeClient.connect(session, stack.ws_url())
    assert (await bob.request("join_quiz", quiz_id=session_id, nickname="Bob"))["type"] == "joined"
    assert (await host.request("start_quiz"))["type"] == "host_ack"
    mine, bobs = [], []
    for index, choice in enumerate(choices):
        if index:
            assert (await host.request("next_question", question_index=index))["type"] == "host_ack"
        mine.append(await learner.request("submit_answer", question_index=index, choice=choice))
        bobs.append(await bob.request("submit_answer", question_index=index, choice=1 - choice))
        assert mine[-1]["type"] == bobs[-1]["type"] == "answer_result", (mine[-1], bobs[-1])
        assert (await host.request("close_question", question_index=index))["type"] == "host_ack"
    assert (await host.request("end_quiz"))["state"]["phase"] == "ended"
    for client in (host, learner, bob):
        await client.close()
    await wait_for_stored_answers(stack.persistence_addrs[0], session_id, expected=2 * len(choices))
    return mine, bobs


async def _history_listing(
    session: aiohttp.ClientSession, edge_url: str, token: str, *, sessions: int, timeout_s: float = 30
) -> dict[str, Any]:
    """The learner's history once it lists `sessions` sessions (or at the deadline): a join and the answers
    reach persistence_svc on different topics, so the stored answers do not mean the participation is."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with session.get(
            f"{edge_url}/api/v1/users/me/results", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, await response.text()
            history: dict[str, Any] = await response.json()
        if len(history["results"]) >= sessions or asyncio.get_running_loop().time() > deadline:
            return history
        await asyncio.sleep(0.2)


async def test_a_learner_sees_both_sessions_of_a_teachers_quiz_and_the_teacher_exports_each(
    stack: Stack, provider: TestProvider
) -> None:
    # Users of their own: the real stack's database keeps earlier runs' histories.
    teacher_id, learner_id = f"teacher-{uuid.uuid4().hex}", f"learner-{uuid.uuid4().hex}"
    teacher, learner = provider.token(teacher_id), provider.token(learner_id)
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel, aiohttp.ClientSession() as session:
        quizzes = pb_grpc.QuizServiceStub(channel)
        created = await quizzes.CreateQuiz(
            pb.CreateQuizRequest(title="Sums", questions=QUESTIONS, identity_token=teacher), timeout=10
        )
        quiz_id = created.quiz.quiz_id
        # First session: the quiz's own join code. The learner is right twice, Bob wrong twice.
        first_mine, _ = await _play_session(stack, session, quiz_id, teacher, learner, [1, 0])
        # The teacher runs it again in one action, over the WebSocket; this time the learner is wrong twice.
        teacher_socket = await EdgeClient.connect(session, stack.ws_url())
        again = await teacher_socket.request(
            "start_session", quiz_id=quiz_id, identity_token=provider.token(teacher_id)
        )
        await teacher_socket.close()
        assert (again["type"], again["session"]["quiz_id"]) == ("session_started", quiz_id), again
        second_id = again["session"]["session_id"]
        second_mine, second_bobs = await _play_session(
            stack, session, second_id, provider.token(teacher_id), learner, [0, 1]
        )

        history = await _history_listing(session, stack.edge_urls[0], learner, sessions=2)
        assert [(r["session_id"], int(r["score"]), r["rank"], r["player_count"]) for r in history["results"]] == [
            (second_id, second_mine[-1]["total_score"], 2, 2),
            (quiz_id, first_mine[-1]["total_score"], 1, 2),
        ]
        assert first_mine[-1]["total_score"] > 0 and second_bobs[-1]["total_score"] > 0
        assert [(a["question_index"], a["correct"], int(a["points"])) for a in history["results"][1]["answers"]] == [
            (0, True, first_mine[0]["points"]),
            (1, True, first_mine[1]["points"]),
        ]
        async with session.get(
            f"{stack.edge_urls[0]}/api/v1/users/me/results", headers={"Authorization": "Bearer forged"}
        ) as refused:
            assert refused.status == 401

        # Over gRPC too, the teacher hosts both sessions by signing in, without their host credentials.
        for session_id in (quiz_id, second_id):
            found = await quizzes.GetQuiz(pb.GetQuizRequest(quiz_id=session_id, identity_token=teacher), timeout=10)
            assert found.host_verified and list(found.quiz.questions[0].correct_choices) == [1]
        listed = await quizzes.ListSessions(pb.ListSessionsRequest(quiz_id=quiz_id, identity_token=teacher), timeout=10)
        assert [(s.session_id, s.phase) for s in listed.sessions] == [
            (second_id, pb.QUIZ_PHASE_ENDED),
            (quiz_id, pb.QUIZ_PHASE_ENDED),
        ]
        # Each session is exported with its host credential, or by the teacher signed in; not by the learner.
        for session_id, host_token in ((quiz_id, created.host_token), (second_id, again["host_token"])):
            for credential in (host_token, teacher):
                async with session.get(
                    f"{stack.edge_urls[0]}/quizzes/{session_id}/results.csv",
                    headers={"Authorization": f"Bearer {credential}"},
                ) as export:
                    assert export.status == 200, await export.text()
                    rows = list(csv.DictReader(io.StringIO(await export.text())))
                assert {(r["quiz_id"], r["nickname"]) for r in rows} == {(session_id, "Lea"), (session_id, "Bob")}
            async with session.get(
                f"{stack.edge_urls[0]}/quizzes/{session_id}/results.csv", headers={"Authorization": f"Bearer {learner}"}
            ) as refused:
                assert refused.status == 403


# --- DeleteUserData ---

DELETED = "Deleted player"  # persistence_svc.domain.DELETED_NICKNAME, as clients see it
NICKNAME = "Lea Erasable"


async def _play_first_question(
    stack: Stack, session: aiohttp.ClientSession, session_id: str, host_token: str, learner_token: str
) -> tuple[EdgeClient, EdgeClient, EdgeClient]:
    """The learner (signed in, right) and Bob (anonymous, wrong) answer the first question, which closes."""
    host = await EdgeClient.connect(session, stack.ws_url())
    await host.request("host_quiz", quiz_id=session_id, host_token=host_token)
    learner = await EdgeClient.connect(session, stack.ws_url())
    joined = await learner.request("join_quiz", quiz_id=session_id, nickname=NICKNAME, identity_token=learner_token)
    assert joined["type"] == "joined", joined
    bob = await EdgeClient.connect(session, stack.ws_url())
    assert (await bob.request("join_quiz", quiz_id=session_id, nickname="Bob"))["type"] == "joined"
    await host.request("start_quiz")
    assert (await learner.request("submit_answer", question_index=0, choice=1))["type"] == "answer_result"
    assert (await bob.request("submit_answer", question_index=0, choice=0))["type"] == "answer_result"
    await host.request("close_question", question_index=0)
    await wait_for_stored_answers(stack.persistence_addrs[0], session_id, expected=2)
    return host, learner, bob


async def _value(redis: RedisClient, key: bytes | str) -> object:
    kind = await redis.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "hash":
        return await redis.hgetall(key)
    if kind == "set":
        return await redis.smembers(key)
    if kind == "zset":
        return await redis.zrange(key, 0, -1)
    if kind == "list":
        return await redis.lrange(key, 0, -1)
    if kind == "string":
        return await redis.get(key)
    raise AssertionError(f"{key!r} is a {kind}, which this check cannot read")


async def _redis_text(session_ids: list[str]) -> str:
    """Everything quiz_svc and leaderboard_svc keep in Redis for the sessions, as one text."""
    redis = real_redis()
    parts: list[str] = []
    try:
        for session_id in session_ids:
            for prefix in ("qz", "lb"):
                async for key in redis.scan_iter(match=f"{prefix}:{{{session_id}}}*"):
                    parts.append(f"{key!r} {await _value(redis, key)!r}")
    finally:
        await redis.aclose()
    assert parts, "the sessions' keys were not found: the check would prove nothing"
    return "\n".join(parts)


def _ranks(entries: list[lb_pb.LeaderboardEntry]) -> list[tuple[str, int, int]]:
    return [(e.player_id, e.score, e.rank) for e in entries]


async def test_deleting_a_learners_data_renames_them_in_game_state_and_rankings_and_keeps_every_rank(
    stack: Stack, provider: TestProvider
) -> None:
    learner_id = f"learner-{uuid.uuid4().hex}"
    learner_token = provider.token(learner_id)
    async with (
        grpc.aio.insecure_channel(stack.quiz_addrs[0]) as quiz_channel,
        grpc.aio.insecure_channel(stack.leaderboard_addrs[0]) as lb_channel,
        grpc.aio.insecure_channel(stack.persistence_addrs[0]) as ps_channel,
        aiohttp.ClientSession() as session,
    ):
        quizzes = pb_grpc.QuizServiceStub(quiz_channel)
        created = await quizzes.CreateQuiz(pb.CreateQuizRequest(title="Sums", questions=QUESTIONS), timeout=10)
        finished_id = created.quiz.quiz_id
        clients = await _play_first_question(stack, session, finished_id, created.host_token, learner_token)
        await clients[0].request("end_quiz")
        for client in clients:
            await client.close()
        started = await quizzes.StartSession(
            pb.StartSessionRequest(quiz_id=finished_id, host_token=created.host_token), timeout=10
        )
        live_id = started.session.session_id
        host, learner, bob = await _play_first_question(stack, session, live_id, started.host_token, learner_token)
        sessions = [finished_id, live_id]
        before = {s: await leaderboard_ranking(stack.leaderboard_addrs[0], s) for s in sessions}
        for entries in before.values():
            assert [e.nickname for e in entries] == [NICKNAME, "Bob"], entries
        if stack.mode == "processes":
            assert NICKNAME in await _redis_text(sessions)

        # The live session's leaderboard, watched as the edge watches it.
        watch = lb_grpc.LeaderboardServiceStub(lb_channel).WatchLeaderboard(
            lb_pb.WatchLeaderboardRequest(quiz_id=live_id)
        )
        snapshot = await asyncio.wait_for(watch.read(), 10)
        assert [e.nickname for e in snapshot.leaderboard.entries] == [NICKNAME, "Bob"]

        persistence = ps_grpc.PersistenceServiceStub(ps_channel)
        deleted = await persistence.DeleteUserData(
            ps_pb.DeleteUserDataRequest(identity_token=learner_token), timeout=30
        )

        assert deleted.participations == 2
        # A publication the last answers made ready may still come first, with the old names.
        published = await asyncio.wait_for(watch.read(), 10)
        while published.leaderboard.entries[0].nickname == NICKNAME:
            published = await asyncio.wait_for(watch.read(), 10)
        watch.cancel()
        assert _ranks(list(published.leaderboard.entries)) == _ranks(before[live_id])
        assert [e.nickname for e in published.leaderboard.entries] == [DELETED, "Bob"]
        for session_id in sessions:
            after = await leaderboard_ranking(stack.leaderboard_addrs[0], session_id)
            assert _ranks(after) == _ranks(before[session_id])
            assert [e.nickname for e in after] == [DELETED, "Bob"]
        if stack.mode == "processes":
            kept = await _redis_text(sessions)
            assert NICKNAME not in kept and NICKNAME.casefold() not in kept and learner_id not in kept
        # quiz_svc freed the nickname in the live session: somebody else may take it now.
        newcomer = await EdgeClient.connect(session, stack.ws_url())
        assert (await newcomer.request("join_quiz", quiz_id=live_id, nickname=NICKNAME))["type"] == "joined"
        # The game goes on for everyone, the erased player included.
        await host.request("next_question", question_index=1)
        assert (await learner.request("submit_answer", question_index=1, choice=0))["type"] == "answer_result"

        again = await persistence.DeleteUserData(ps_pb.DeleteUserDataRequest(identity_token=learner_token), timeout=30)
        assert again.participations == 0
        for client in (host, learner, bob, newcomer):
            await client.close()
