"""A player's identity comes only from their credential: every way of answering as someone else is
refused, and nothing of it reaches PostgreSQL or Redis.

Runs on separate service processes against the real Kafka, Redis and PostgreSQL, and checks the
stores directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import jwt
import pytest
from redis.asyncio import Redis

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.support.checks import stored_answers
from tests.support.client import EdgeClient
from tests.support.infra import REAL
from tests.support.stack import SIGNING_KEY, Stack, process_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

QUESTION = pb.Question(text="1 + 1?", choices=["2", "3"], correct_choices=[0], time_limit_seconds=120)


@dataclass
class Quiz:
    quiz_id: str
    host_token: str
    players: dict[str, tuple[str, str]]  # nickname -> (player ID, credential)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with process_stack(tmp_path_factory.mktemp("credentials") / "logs") as running:
        yield running


@pytest.fixture(scope="module")
async def quiz_stub(stack: Stack) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel:
        yield pb_grpc.QuizServiceStub(channel)


async def started_quiz(stub: Any, *nicknames: str) -> Quiz:
    created = await stub.CreateQuiz(pb.CreateQuizRequest(title="security", questions=[QUESTION] * 2), timeout=10)
    quiz_id = created.quiz.quiz_id
    players = {}
    for nickname in nicknames:
        joined = await stub.JoinQuiz(pb.JoinQuizRequest(quiz_id=quiz_id, nickname=nickname), timeout=10)
        players[nickname] = (joined.player.player_id, joined.player_token)
    await stub.StartQuiz(pb.StartQuizRequest(quiz_id=quiz_id, host_token=created.host_token), timeout=10)
    return Quiz(quiz_id, created.host_token, players)


def claims(quiz_id: str, player_id: str, *, issued: float | None = None, ttl_s: int = 3600) -> dict[str, Any]:
    now = int(issued if issued is not None else time.time())
    return {"iss": "quizmesh", "sub": player_id, "role": "player", "quiz": quiz_id, "iat": now, "exp": now + ttl_s}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """`alg: none`: a header, the claims and an empty signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


async def answer(stub: Any, token: str, question: int = 0, choice: int = 0) -> pb.AnswerOutcome:
    reply = await stub.BatchSubmitAnswers(
        pb.BatchSubmitAnswersRequest(answers=[pb.Answer(player_token=token, question_index=question, choice=choice)]),
        timeout=10,
    )
    outcome: pb.AnswerOutcome = reply.outcomes[0]
    return outcome


async def assert_nothing_written_for(stack: Stack, stub: Any, quiz: Quiz, victim: str, witness: str) -> None:
    """The witness answers legitimately afterwards; once that answer is stored (one partition per
    quiz keeps order), the victim must have no answer in PostgreSQL, no score in Redis, and quiz_svc
    must not count them as having answered."""
    witness_id, witness_token = quiz.players[witness]
    outcome = await answer(stub, witness_token)
    assert outcome.error == pb.ANSWER_ERROR_UNSPECIFIED, outcome
    deadline = time.monotonic() + 30
    while witness_id not in {a.player_id for a in await stored_answers(stack.persistence_addrs[0], quiz.quiz_id)}:
        assert time.monotonic() < deadline, "the witness's answer was never stored"
        await asyncio.sleep(0.1)
    victim_id, victim_token = quiz.players[victim]
    connection = await asyncpg.connect(REAL.postgres_dsn)
    try:
        rows = await connection.fetchval(
            "SELECT count(*) FROM answers WHERE quiz_id = $1 AND player_id = $2", quiz.quiz_id, victim_id
        )
    finally:
        await connection.close()
    assert rows == 0
    redis = Redis.from_url(REAL.redis_url)
    try:
        standing = await redis.hget(f"lb:{{{quiz.quiz_id}}}:players", victim_id)
    finally:
        await redis.aclose()
    assert standing is None or str(standing, "utf-8").split("|")[0] == "0", standing  # type: ignore[arg-type]
    resumed = await stub.ResumeQuiz(pb.ResumeQuizRequest(player_token=victim_token), timeout=10)
    assert not resumed.answered_current_question


@pytest.mark.parametrize("kind", ["forged", "expired", "alg_none", "other_quiz_key_claim", "host_as_player"])
async def test_a_credential_not_issued_for_the_victim_cannot_answer_for_them(
    stack: Stack, quiz_stub: Any, kind: str
) -> None:
    quiz = await started_quiz(quiz_stub, "victim", "witness")
    victim_id = quiz.players["victim"][0]
    tokens = {
        "forged": jwt.encode(claims(quiz.quiz_id, victim_id), "not-the-signing-key-" * 3, algorithm="HS256"),
        "expired": jwt.encode(
            claims(quiz.quiz_id, victim_id, issued=time.time() - 7200, ttl_s=60), SIGNING_KEY, algorithm="HS256"
        ),
        "alg_none": unsigned(claims(quiz.quiz_id, victim_id)),
        # Correctly signed, but for a quiz the player is not in: the quiz comes from the claims.
        "other_quiz_key_claim": jwt.encode(claims("NOTAQUIZ", victim_id), SIGNING_KEY, algorithm="HS256"),
        "host_as_player": quiz.host_token,
    }
    outcome = await answer(quiz_stub, tokens[kind])
    assert outcome.error in (
        pb.ANSWER_ERROR_UNAUTHENTICATED,
        pb.ANSWER_ERROR_QUIZ_NOT_FOUND,
        pb.ANSWER_ERROR_NOT_A_PARTICIPANT,
    ), outcome
    await assert_nothing_written_for(stack, quiz_stub, quiz, "victim", "witness")


async def test_a_player_of_one_quiz_cannot_answer_in_another(stack: Stack, quiz_stub: Any) -> None:
    target = await started_quiz(quiz_stub, "victim", "witness")
    elsewhere = await started_quiz(quiz_stub, "intruder")
    intruder_id = elsewhere.players["intruder"][0]
    # A correctly signed credential naming the target quiz and a player who never joined it.
    token = jwt.encode(claims(target.quiz_id, intruder_id), SIGNING_KEY, algorithm="HS256")
    outcome = await answer(quiz_stub, token)
    assert outcome.error in (pb.ANSWER_ERROR_NOT_A_PARTICIPANT, pb.ANSWER_ERROR_UNAUTHENTICATED), outcome
    await assert_nothing_written_for(stack, quiz_stub, target, "victim", "witness")


async def test_another_quizs_host_credential_cannot_run_this_quiz(quiz_stub: Any) -> None:
    target = await started_quiz(quiz_stub)
    other = await started_quiz(quiz_stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quiz_stub.EndQuiz(pb.EndQuizRequest(quiz_id=target.quiz_id, host_token=other.host_token), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    state = await quiz_stub.GetQuizState(pb.GetQuizStateRequest(quiz_id=target.quiz_id), timeout=10)
    assert state.state.phase == pb.QUIZ_PHASE_QUESTION_OPEN


async def test_a_player_id_in_the_message_is_not_an_identity(stack: Stack, quiz_stub: Any, tmp_path: Path) -> None:
    """Over the WebSocket, the answer counts for the socket's own credential whatever the message says."""
    quiz = await started_quiz(quiz_stub, "victim", "witness")
    async with aiohttp.ClientSession() as session:
        attacker = await EdgeClient.connect(session, stack.ws_url())
        joined = await attacker.request("join_quiz", quiz_id=quiz.quiz_id, nickname="attacker")
        assert joined["type"] == "joined", joined
        victim_id, victim_token = quiz.players["victim"]
        for field, value in (("player_id", victim_id), ("player_token", victim_token)):
            fields: dict[str, Any] = {"question_index": 0, "choice": 0, field: value}
            reply = await attacker.request("submit_answer", **fields)
            # Either refused outright (unknown field), or counted for the attacker alone.
            assert reply["type"] in ("error", "answer_result"), reply
        await attacker.close()
    await assert_nothing_written_for(stack, quiz_stub, quiz, "victim", "witness")
