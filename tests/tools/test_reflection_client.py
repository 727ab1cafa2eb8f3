"""The gRPC APIs as an outside tool sees them: through server reflection only, with no generated stubs.

Like grpcurl, the client learns every service, method and message from the server, builds requests
from JSON with a descriptor pool of its own and calls methods by their full path. Reflection clients
are synchronous, so they run in a thread: a blocking call on the loop the servers share would deadlock.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from quizmesh.grpc_reflection import describe_v1, v1_file
from tests.support.stack import Stack

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class ReflectionClient:
    """Calls any method of a server by name, with requests and replies as JSON-like dicts."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._database = ProtoReflectionDescriptorDatabase(self._channel)
        self._pool = descriptor_pool.DescriptorPool(self._database)

    def services(self) -> set[str]:
        return set(self._database.get_services())

    def _method(self, full_method: str) -> tuple[str, type[Message], type[Message], bool]:
        service_name, method_name = full_method.rsplit(".", 1)
        method = self._pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        return f"/{service_name}/{method_name}", request, response, method.server_streaming

    def call(self, full_method: str, body: dict[str, Any]) -> dict[str, Any]:
        path, request_type, response_type, streaming = self._method(full_method)
        assert not streaming, full_method
        stub = self._channel.unary_unary(
            path, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
        )
        reply = stub(json_format.ParseDict(body, request_type()), timeout=10)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    def stream(self, full_method: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        path, request_type, response_type, streaming = self._method(full_method)
        assert streaming, full_method
        stub = self._channel.unary_stream(
            path, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
        )
        for reply in stub(json_format.ParseDict(body, request_type()), timeout=10):
            yield json_format.MessageToDict(reply, preserving_proto_field_name=True)

    def close(self) -> None:
        self._channel.close()


def _play_a_quiz(stack: Stack) -> dict[str, Any]:
    quiz = ReflectionClient(stack.quiz_addrs[0])
    leaderboard = ReflectionClient(stack.leaderboard_addrs[0])
    persistence = ReflectionClient(stack.persistence_addrs[0])
    try:
        seen = {
            "quiz": quiz.services(),
            "leaderboard": leaderboard.services(),
            "persistence": persistence.services(),
        }
        created = quiz.call(
            "quizmesh.quiz.v1.QuizService.CreateQuiz",
            {
                "title": "By reflection",
                "questions": [
                    {
                        "text": "Capital of Norway?",
                        "choices": ["Oslo", "Bergen"],
                        "correct_choices": [0],
                        "time_limit_seconds": 30,
                        "points_mode": "POINTS_MODE_DOUBLE",
                    }
                ],
            },
        )
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        joined = quiz.call("quizmesh.quiz.v1.QuizService.JoinQuiz", {"quiz_id": quiz_id, "nickname": "refl"})
        quiz.call("quizmesh.quiz.v1.QuizService.StartQuiz", {"quiz_id": quiz_id, "host_token": host_token})
        first_state = next(quiz.stream("quizmesh.quiz.v1.QuizService.WatchQuiz", {"quiz_id": quiz_id}))
        answered = quiz.call(
            "quizmesh.quiz.v1.QuizService.SubmitAnswer",
            {"answer": {"player_token": joined["player_token"], "question_index": 0, "choice": 0}},
        )
        deadline = time.monotonic() + 15
        board: dict[str, Any] = {}
        stored: dict[str, Any] = {}
        while time.monotonic() < deadline and not (board.get("top_entries") and stored.get("answers")):
            board = leaderboard.call("quizmesh.leaderboard.v1.LeaderboardService.GetLeaderboard", {"quiz_id": quiz_id})
            stored = persistence.call("quizmesh.persistence.v1.PersistenceService.ListAnswers", {"quiz_id": quiz_id})
            time.sleep(0.1)
        return {
            "services": seen,
            "player_id": joined["player"]["player_id"],
            "first_state": first_state,
            "answered": answered,
            "board": board,
            "stored": stored,
        }
    finally:
        for client in (quiz, leaderboard, persistence):
            client.close()


async def test_a_quiz_is_played_through_reflection_alone(stack: Stack) -> None:
    seen = await asyncio.to_thread(_play_a_quiz, stack)

    assert seen["services"] == {
        "quiz": {"quizmesh.quiz.v1.QuizService", HEALTH, REFLECTION, REFLECTION_V1},
        "leaderboard": {"quizmesh.leaderboard.v1.LeaderboardService", HEALTH, REFLECTION, REFLECTION_V1},
        "persistence": {"quizmesh.persistence.v1.PersistenceService", HEALTH, REFLECTION, REFLECTION_V1},
    }
    assert seen["first_state"]["state"]["phase"] == "QUIZ_PHASE_QUESTION_OPEN"
    result = seen["answered"]["result"]
    assert result["correct"] is True
    # A double question: between 1000 and 2000 points; int64 travels as a JSON string.
    assert 1000 <= int(result["points"]) <= 2000
    player_id = seen["player_id"]
    assert [(e["player_id"], e["score"]) for e in seen["board"]["top_entries"]] == [(player_id, result["points"])]
    [stored] = seen["stored"]["answers"]
    assert (stored["player_id"], stored["points"], stored["event_id"]) == (
        player_id,
        result["points"],
        result["event_id"],
    )


async def explore_with_reflection_v1(address: str) -> dict[str, Any]:
    client = Path(__file__).with_name("reflection_v1_client.py")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(client), address], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    explored: dict[str, Any] = json.loads(done.stdout)
    return explored


def _create_quiz(address: str, title: str) -> str:
    client = ReflectionClient(address)
    try:
        created = client.call(
            "quizmesh.quiz.v1.QuizService.CreateQuiz",
            {
                "title": title,
                "questions": [{"text": "?", "choices": ["a", "b"], "correct_choices": [0], "time_limit_seconds": 9}],
            },
        )
    finally:
        client.close()
    return str(created["quiz"]["quiz_id"])


async def test_a_reflection_v1_client_lists_describes_and_calls_every_service(stack: Stack) -> None:
    quiz_id = await asyncio.to_thread(_create_quiz, stack.quiz_addrs[0], "Seen through reflection v1")
    for address, service in (
        (stack.quiz_addrs[0], "quizmesh.quiz.v1.QuizService"),
        (stack.leaderboard_addrs[0], "quizmesh.leaderboard.v1.LeaderboardService"),
        (stack.persistence_addrs[0], "quizmesh.persistence.v1.PersistenceService"),
    ):
        explored = await explore_with_reflection_v1(address)
        assert explored["services"] == sorted({service, HEALTH, REFLECTION, REFLECTION_V1})
        assert explored["methods"][REFLECTION_V1] == ["ServerReflectionInfo"]
        assert {"Check", "Watch"} <= set(explored["methods"][HEALTH])
        assert explored["v1_file_matches_grpc_proto"] is True
        if service == "quizmesh.quiz.v1.QuizService":
            assert {"CreateQuiz", "WatchQuiz"} <= set(explored["methods"][service])
            assert quiz_id in [q["quiz_id"] for q in explored["quizzes"]]


def test_the_v1_descriptor_is_added_once_and_never_over_another_librarys() -> None:
    pool = descriptor_pool.DescriptorPool()
    theirs = v1_file()
    theirs.name = "vendored/grpc/reflection/v1/reflection.proto"
    pool.AddSerializedFile(theirs.SerializeToString())
    describe_v1(pool)
    assert pool.FindServiceByName(REFLECTION_V1).file.name == theirs.name
    fresh = descriptor_pool.DescriptorPool()
    describe_v1(fresh)
    describe_v1(fresh)
    service = fresh.FindServiceByName(REFLECTION_V1)
    assert (service.file.name, [m.name for m in service.methods]) == (
        "grpc/reflection/v1/reflection.proto",
        ["ServerReflectionInfo"],
    )
