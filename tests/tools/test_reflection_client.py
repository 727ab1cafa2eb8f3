"""The gRPC APIs as an outside tool sees them: through server reflection only, with no generated stubs.

Like grpcurl, the client learns every service, method and message from the server, builds requests
from JSON with a descriptor pool of its own and calls methods by their full path. Reflection clients
are synchronous, so they run in a thread: a blocking call on the loop the servers share would deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.support.stack import Stack

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


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
        "quiz": {"quizmesh.quiz.v1.QuizService", HEALTH, REFLECTION},
        "leaderboard": {"quizmesh.leaderboard.v1.LeaderboardService", HEALTH, REFLECTION},
        "persistence": {"quizmesh.persistence.v1.PersistenceService", HEALTH, REFLECTION},
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
