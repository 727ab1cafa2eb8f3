"""Hosting by sign-in over the WebSocket (issue 16): quiz_svc verifies the identity token a host_quiz, a
start_session or a host action carries, so a forged, expired or foreign token, or another user's valid
one, hosts nothing, starts nothing and changes nothing; the teacher's own token hosts their session.
Against the embedded stack's real quiz_svc and a test identity provider."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.support.client import EdgeClient
from tests.support.identity import TestProvider, hmac_token_with, new_key, public_pem, unsigned_token
from tests.support.stack import Stack, embedded_stack

pytestmark = [pytest.mark.e2e]

QUESTIONS = [pb.Question(text="2 + 2 = ?", choices=["3", "4"], correct_choices=[1], time_limit_seconds=60)]


@pytest.fixture
def provider(tmp_path: Path) -> TestProvider:
    directory = tmp_path / "idp"
    directory.mkdir()
    return TestProvider(directory)


@pytest.fixture
async def stack(tmp_path: Path, provider: TestProvider) -> AsyncIterator[Stack]:
    async with embedded_stack(tmp_path, provider.env("both")) as running:
        yield running


def _bad_tokens(provider: TestProvider) -> dict[str, str]:
    """Tokens that name the teacher but must not be taken for them."""
    now = int(time.time())
    claims = provider.claims("teacher")
    return {
        "forged": provider.token("teacher", key=new_key(provider.algorithm)),
        "expired": provider.token("teacher", iat=now - 7200, exp=now - 3600),
        "wrong issuer": provider.token("teacher", iss="https://evil.example.test/"),
        "wrong audience": provider.token("teacher", aud="another-app"),
        "alg none": unsigned_token(claims, provider.kid),
        "HS256 with the public key": hmac_token_with(public_pem(provider.keys[provider.kid]), claims, provider.kid),
    }


async def test_a_wrong_identity_token_hosts_nothing_and_changes_nothing(stack: Stack, provider: TestProvider) -> None:
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel, aiohttp.ClientSession() as http:
        quizzes = pb_grpc.QuizServiceStub(channel)
        created = await quizzes.CreateQuiz(
            pb.CreateQuizRequest(title="Sums", questions=QUESTIONS, identity_token=provider.token("teacher")),
            timeout=10,
        )
        other = await quizzes.CreateQuiz(pb.CreateQuizRequest(title="Another", questions=QUESTIONS), timeout=10)
        quiz_id = created.quiz.quiz_id
        intruder = await EdgeClient.connect(http, stack.ws_url())

        for case, token in _bad_tokens(provider).items():
            for message_type in ("host_quiz", "start_quiz", "end_quiz", "start_session"):
                refused = await intruder.request(message_type, quiz_id=quiz_id, identity_token=token)
                assert (refused["type"], refused["code"], refused.get("reason")) == (
                    "error",
                    "unauthenticated",
                    "invalid_identity",
                ), (case, message_type, refused)
        someone_else = provider.token("learner")
        for message_type in ("host_quiz", "start_quiz", "end_quiz", "start_session"):
            refused = await intruder.request(message_type, quiz_id=quiz_id, identity_token=someone_else)
            assert (refused["type"], refused["code"]) == ("error", "permission_denied"), (message_type, refused)
        # Another quiz's host credential is no key to this one, and a refusal seats no one.
        refused = await intruder.request("host_quiz", quiz_id=quiz_id, host_token=other.host_token)
        assert refused["code"] == "permission_denied", refused
        assert (await intruder.request("start_quiz"))["code"] == "not_hosting"

        # The same over HTTP: the export and running the quiz again, with the token as the bearer.
        for path, method in ((f"/quizzes/{quiz_id}/results.csv", "GET"), (f"/quizzes/{quiz_id}/sessions", "POST")):
            for token, status in ((_bad_tokens(provider)["expired"], 401), (someone_else, 403)):
                headers = {"Authorization": f"Bearer {token}"}
                async with http.request(method, f"{stack.edge_urls[0]}{path}", headers=headers) as response:
                    assert response.status == status, (path, await response.text())
        state = await intruder.request("get_state", quiz_id=quiz_id)
        assert state["state"]["phase"] == "lobby", state
        sessions = await quizzes.ListSessions(
            pb.ListSessionsRequest(quiz_id=quiz_id, identity_token=provider.token("teacher")), timeout=10
        )
        assert [s.session_id for s in sessions.sessions] == [quiz_id]  # no session was started

        teacher_bearer = {"Authorization": f"Bearer {provider.token('teacher')}"}
        async with http.post(f"{stack.edge_urls[0]}/quizzes/{quiz_id}/sessions", headers=teacher_bearer) as again:
            assert again.status == 201, await again.text()
        teacher = await EdgeClient.connect(http, stack.ws_url())
        hosting = await teacher.request("host_quiz", quiz_id=quiz_id, identity_token=provider.token("teacher"))
        assert hosting["type"] == "hosting", hosting
        started = await teacher.request("start_quiz")
        assert started["state"]["phase"] == "question_open", started
        for client in (intruder, teacher):
            await client.close()
