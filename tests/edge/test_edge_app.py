"""The edge end to end against fake in-process gRPC services: real sockets, real channels."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from edge.app import origin_allowed
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz_document import question_from_json
from tests.edge.conftest import EdgeFactory
from tests.edge.edge_fakes import FakeQuiz, FakeServices, board

Client = TestClient[web.Request, web.Application]
QUESTIONS = [
    {"text": "2+2?", "choices": ["3", "4", "5"], "correct_choices": [1], "time_limit_seconds": 20},
    {"text": "Capital of Italy?", "choices": ["Rome", "Oslo"], "correct_choices": [0], "time_limit_seconds": 30},
]
_ids = itertools.count(1)


class Socket:
    """A test client speaking the edge protocol; pushes that arrive between replies are kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.raw: list[str] = []

    async def _read(self) -> dict[str, Any]:
        message = await self.ws.receive(timeout=3)
        assert message.type == WSMsgType.TEXT, f"expected a text frame, got {message}"
        self.raw.append(message.data)
        decoded: dict[str, Any] = orjson.loads(message.data)
        return decoded

    async def send_raw(self, data: str | bytes) -> dict[str, Any]:
        """Sends a frame as is and returns the next non-push reply."""
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)
        while True:
            message = await self._read()
            if message["type"] in ("error", "pong") or "id" in message:
                return message
            self.pushes.append(message)

    async def request(self, message_type: str, **fields: Any) -> dict[str, Any]:
        request_id = f"r{next(_ids)}"
        await self.ws.send_str(orjson.dumps({"type": message_type, "id": request_id, **fields}).decode())
        while True:
            message = await self._read()
            if message.get("id") == request_id:
                return message
            self.pushes.append(message)

    async def push(self, message_type: str, *, phase: str | None = None, **match: Any) -> dict[str, Any]:
        """The next push of this type (already received or still to come), optionally in a given phase."""
        while True:
            for i, message in enumerate(self.pushes):
                if (
                    message["type"] == message_type
                    and all(message.get(k) == v for k, v in match.items())
                    and (phase is None or message["state"]["phase"] == phase)
                ):
                    return self.pushes.pop(i)
            self.pushes.append(await self._read())


async def connect(client: Client, **kwargs: Any) -> Socket:
    return Socket(await client.ws_connect("/ws", **kwargs))


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def hosted_quiz(client: Client, **create: Any) -> tuple[Socket, str]:
    host = await connect(client)
    created = await host.request("create_quiz", title="Arithmetic", questions=QUESTIONS, **create)
    assert created["type"] == "quiz_created", created
    assert created["quiz"]["questions"][0]["correct_choices"] == [1]
    quiz_id = created["quiz"]["quiz_id"]
    hosting = await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])
    assert hosting["type"] == "hosting", hosting
    assert hosting["state"]["phase"] == "lobby"
    return host, quiz_id


async def joined(client: Client, quiz_id: str, nickname: str) -> tuple[Socket, dict[str, Any]]:
    player = await connect(client)
    reply = await player.request("join_quiz", quiz_id=quiz_id, nickname=nickname)
    assert reply["type"] == "joined", reply
    return player, reply


async def hosted_with_player(edge: EdgeFactory, nickname: str) -> tuple[Socket, str, Socket, dict[str, Any]]:
    """A new edge, a hosted quiz and one player in it: the host, the quiz ID, the player and its reply."""
    client = await edge()
    host, quiz_id = await hosted_quiz(client)
    player, reply = await joined(client, quiz_id, nickname)
    return host, quiz_id, player, reply


async def test_player_joins_answers_and_gets_results_without_seeing_answers_early(
    edge: EdgeFactory, services: FakeServices
) -> None:
    host, quiz_id, player, reply = await hosted_with_player(edge, "ann")
    assert reply["player"]["nickname"] == "ann"
    assert reply["player_token"]
    assert reply["state"]["quiz_id"] == quiz_id

    ack = await host.request("start_quiz")
    assert (ack["type"], ack["action"], ack["state"]["phase"]) == ("host_ack", "start_quiz", "question_open")
    opened = await player.push("quiz_state", phase="question_open")
    assert opened["state"]["question"]["choices"] == ["3", "4", "5"]

    result = await player.request("submit_answer", question_index=0, choice=1)
    assert result["type"] == "answer_result", result
    assert (result["correct"], result["points"], result["total_score"], result["streak"]) == (True, 1000, 1000, 1)
    again = await player.request("submit_answer", question_index=0, choice=1)
    assert (again["type"], again["code"], again["retryable"]) == ("error", "already_answered", False)

    assert all("correct_choices" not in raw for raw in player.raw), "a player saw correct choices before close"
    closed = await host.request("close_question")
    assert closed["results"] == {
        "question_index": 0,
        "kind": "single_choice",
        "correct_choices": [1],
        "choice_counts": [0, 1, 0],
        "tallies": {"1": 1},
    }
    pushed = await player.push("quiz_state", results=closed["results"])
    assert pushed["state"]["phase"] == "question_closed"

    state = await player.request("get_state")
    assert state["state"]["phase"] == "question_closed"
    left = await player.request("leave_quiz")
    assert left == {"type": "left", "id": left["id"]}


async def test_bad_input_gets_error_frames_and_the_connection_stays_usable(
    edge: EdgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await edge()
    socket = await connect(client)
    cases: list[tuple[str | bytes, str]] = [
        ("{oops", "malformed_json"),
        ("[1, 2, 3]", "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "join_quiz", "quiz_id": 7, "nickname": "x"}', "invalid_field"),
        ('{"type": "submit_answer", "question_index": 0, "choice": 1}', "not_joined"),
        ('{"type": "leave_quiz"}', "not_joined"),
        ('{"type": "start_quiz"}', "not_hosting"),
        ('{"type": "join_quiz", "quiz_id": "no-such-quiz", "nickname": "x"}', "quiz_not_found"),
        ('{"type": "resume", "player_token": "forged"}', "unauthenticated"),
        ('{"type": "host_quiz", "quiz_id": "no-such-quiz", "host_token": "t"}', "quiz_not_found"),
        (b"\x00\x01", "binary_not_supported"),
    ]
    with caplog.at_level(logging.DEBUG):
        for data, code in cases:
            reply = await socket.send_raw(data)
            assert (reply["type"], reply["code"]) == ("error", code), (data, reply)
            assert reply["message"]
    assert "'quiz_id'" in (await socket.send_raw(cases[3][0]))["message"]
    pong = await socket.request("ping")
    assert pong["type"] == "pong"
    assert pong["server_time_ms"] > 0
    assert not [r for r in caplog.records if r.exc_info], "a client mistake logged a traceback"


async def test_an_answer_is_stamped_with_its_first_receipt_on_the_edge_and_keeps_it_on_retries(
    edge: EdgeFactory, services: FakeServices
) -> None:
    host, _, player, _ = await hosted_with_player(edge, "ann")
    await host.request("start_quiz")
    before = time.time_ns() // 1_000_000
    # A client cannot set the receipt time: unknown fields are ignored, and the edge stamps its own.
    first = await player.request("submit_answer", question_index=0, choice=1, receive_time=0, receive_time_ms=1)
    after = time.time_ns() // 1_000_000
    retry = await player.request("submit_answer", question_index=0, choice=1)
    assert (first["type"], retry["code"]) == ("answer_result", "already_answered")
    stamps = [a.receive_time.ToMilliseconds() for a in services.quiz.answers]
    assert len(stamps) == 2 and stamps[0] == stamps[1] and before <= stamps[0] <= after
    # Another question, another first receipt.
    await host.request("close_question")
    await host.request("next_question")
    await player.request("submit_answer", question_index=1, choice=0)
    assert services.quiz.answers[-1].receive_time.ToMilliseconds() >= after


async def test_host_actions_pass_the_question_they_mean(edge: EdgeFactory, services: FakeServices) -> None:
    client = await edge()
    host, _ = await hosted_quiz(client)
    await host.request("start_quiz")
    await host.request("close_question", question_index=0)
    await host.request("next_question", question_index=1)
    await host.request("close_question")
    named = [
        (type(r).__name__, r.question_index if r.HasField("question_index") else None)
        for r in services.quiz.host_requests
        if isinstance(r, quiz_pb2.NextQuestionRequest | quiz_pb2.CloseQuestionRequest)
    ]
    assert named == [("CloseQuestionRequest", 0), ("NextQuestionRequest", 1), ("CloseQuestionRequest", None)]
    refused = await host.request("next_question", question_index=-1)
    assert (refused["code"], refused["message"]) == (
        "invalid_field",
        "field 'question_index' is required and must be an integer from 0 to 2147483647",
    )


async def test_host_errors_map_to_codes(edge: EdgeFactory) -> None:
    client = await edge()
    host, quiz_id = await hosted_quiz(client)
    intruder = await connect(client)
    denied = await intruder.request("host_quiz", quiz_id=quiz_id, host_token="not-the-token")
    assert denied["code"] == "permission_denied"
    forbidden = await intruder.request("start_quiz", quiz_id=quiz_id, host_token="not-the-token")
    assert forbidden["code"] == "permission_denied"
    await host.request("start_quiz")
    twice = await host.request("start_quiz")
    assert (twice["code"], twice["message"]) == ("failed_precondition", "the quiz has already started")
    missing = await host.request("kick_player", player_id="p-nobody")
    assert missing["code"] == "player_not_found"


async def test_a_quiz_whose_first_question_has_no_correct_choice_keeps_its_host(
    edge: EdgeFactory, services: FakeServices
) -> None:
    # quiz_svc says who the host is (GetQuizResponse.host_verified); the edge no longer guesses it from
    # correct choices coming back, which a question without a correct choice never sends.
    poll = quiz_pb2.Question(text="Tea or coffee?", choices=["tea", "coffee"], time_limit_seconds=20)
    services.quiz.quizzes["q-poll"] = FakeQuiz(
        quiz_pb2.Quiz(quiz_id="q-poll", title="Poll", questions=[poll]), host_token="host-poll"
    )
    client = await edge()
    host = await connect(client)
    hosting = await host.request("host_quiz", quiz_id="q-poll", host_token="host-poll")
    assert hosting["type"] == "hosting", hosting
    started = await host.request("start_quiz")
    assert (started["type"], started["state"]["phase"]) == ("host_ack", "question_open"), started
    results = await client.get("/quizzes/q-poll/results.csv", headers={"Authorization": "Bearer host-poll"})
    assert results.status == 200, await results.text()
    intruder = await connect(client)
    denied = await intruder.request("host_quiz", quiz_id="q-poll", host_token="not-the-token")
    assert denied["code"] == "permission_denied"
    refused = await client.get("/quizzes/q-poll/results.csv", headers={"Authorization": "Bearer not-the-token"})
    assert refused.status == 403


@pytest.fixture
async def signed_in(edge: EdgeFactory, services: FakeServices) -> tuple[str, Socket]:
    """A session the user "teacher" started signed in (as quiz_svc's StartSession with an identity
    token) and a socket to the edge that has not said who it is yet."""
    services.quiz.quizzes["q-signed"] = FakeQuiz(
        quiz_pb2.Quiz(
            quiz_id="q-signed",
            title="Signed",
            questions=[question_from_json(q, f"questions[{i}].") for i, q in enumerate(QUESTIONS)],
        ),
        host_token="host-signed",
        host_user="teacher",
    )
    return "q-signed", await connect(await edge())


async def test_a_signed_in_host_hosts_their_session_with_their_identity_token(
    signed_in: tuple[str, Socket], services: FakeServices
) -> None:
    quiz_id, host = signed_in
    hosting = await host.request("host_quiz", quiz_id=quiz_id, identity_token="identity:teacher")
    assert hosting["type"] == "hosting", hosting
    assert hosting["quiz"]["questions"][0]["correct_choices"] == [1]  # quiz_svc verified the host
    started = await host.request("start_quiz")
    closed = await host.request("close_question", question_index=0)
    assert (started["type"], closed["type"]) == ("host_ack", "host_ack"), (started, closed)
    # Every host action carries the socket's identity token, and no host credential it never had.
    assert [(r.identity_token, r.host_token) for r in services.quiz.host_requests] == [("identity:teacher", "")] * 2
    # A message naming its own credential acts with it, whatever the socket hosts with.
    ended = await host.request("end_quiz", quiz_id=quiz_id, host_token="host-signed")
    assert ended["state"]["phase"] == "ended", ended
    assert services.quiz.host_requests[-1].host_token == "host-signed"


async def test_hosting_by_identity_refuses_a_bad_token_and_another_users_with_stable_codes(
    signed_in: tuple[str, Socket], services: FakeServices
) -> None:
    quiz_id, intruder = signed_in
    expired = await intruder.request("host_quiz", quiz_id=quiz_id, identity_token="expired-token")
    assert (expired["code"], expired["reason"]) == ("unauthenticated", "invalid_identity"), expired
    assert "sign in again" in expired["message"]
    other = await intruder.request("host_quiz", quiz_id=quiz_id, identity_token="identity:someone-else")
    assert other["code"] == "permission_denied", other
    assert "does not host this session" in other["message"]
    # Not seated by a refusal: a bare host action has nothing to act on.
    assert (await intruder.request("start_quiz"))["code"] == "not_hosting"
    for token, code in (("identity:someone-else", "permission_denied"), ("expired-token", "unauthenticated")):
        refused = await intruder.request("start_quiz", quiz_id=quiz_id, identity_token=token)
        assert refused["code"] == code, refused
    assert services.quiz.quizzes[quiz_id].phase == quiz_pb2.QUIZ_PHASE_LOBBY  # nothing was done


async def test_a_signed_in_owner_runs_their_quiz_again_and_hosts_the_new_session_signed_in(
    signed_in: tuple[str, Socket], services: FakeServices
) -> None:
    quiz_id, host = signed_in
    started = await host.request("start_session", quiz_id=quiz_id, identity_token="identity:teacher")
    assert started["type"] == "session_started", started
    session_id = started["session"]["session_id"]
    assert (started["session"]["quiz_id"], started["session"]["phase"]) == (quiz_id, "lobby")
    assert session_id != quiz_id and started["quiz"]["quiz_id"] == session_id and started["host_token"]
    hosting = await host.request("host_quiz", quiz_id=session_id, identity_token="identity:teacher")
    assert hosting["state"]["quiz_id"] == session_id, hosting
    other = await host.request("start_session", quiz_id=quiz_id, identity_token="identity:someone-else")
    assert other["code"] == "permission_denied", other
    refused = await host.request("start_session", quiz_id=quiz_id, identity_token="expired-token")
    assert (refused["code"], refused["reason"]) == ("unauthenticated", "invalid_identity"), refused
    assert len(services.quiz.quizzes) == 2  # the refused ones started nothing


async def test_a_quiz_posted_with_an_identity_token_is_its_users(edge: EdgeFactory, services: FakeServices) -> None:
    client = await edge()

    def form() -> aiohttp.FormData:
        body = aiohttp.FormData()
        document = orjson.dumps({"title": "Mine", "questions": QUESTIONS}).decode()
        body.add_field("quiz", document, filename="quiz.json", content_type="application/json")
        return body

    created = await client.post("/quizzes", data=form(), headers={"Authorization": "Bearer identity:teacher"})
    assert created.status == 200, await created.text()
    quiz_id = (await created.json())["quiz"]["quiz_id"]
    assert services.quiz.quizzes[quiz_id].host_user == "teacher"
    host = await connect(client)
    assert (await host.request("host_quiz", quiz_id=quiz_id, identity_token="identity:teacher"))["type"] == "hosting"
    refused = await client.post("/quizzes", data=form(), headers={"Authorization": "Bearer expired-token"})
    assert refused.status == 401 and "sign in again" in await refused.text()
    anonymous = await client.post("/quizzes", data=form())
    assert anonymous.status == 200
    assert services.quiz.quizzes[(await anonymous.json())["quiz"]["quiz_id"]].host_user == ""
    assert len(services.quiz.quizzes) == 2


async def test_one_leaderboard_stream_serves_every_socket_of_a_quiz_with_its_own_standing(
    edge: EdgeFactory, services: FakeServices
) -> None:
    client = await edge()
    host, quiz_id = await hosted_quiz(client)
    players = [await joined(client, quiz_id, name) for name in ("ann", "bob", "cy")]
    ids = [reply["player"]["player_id"] for _, reply in players]
    await eventually(lambda: services.leaderboard.watch_calls[quiz_id] == 1, "the leaderboard watch")

    ranking = [(ids[1], "bob", 2000), (ids[0], "ann", 1000), (ids[2], "cy", 0)]
    services.leaderboard.publish(board(quiz_id, 1, ranking))
    updates = [await socket.push("leaderboard_updated") for socket, _ in players]
    assert [u["me"] for u in updates] == [
        {"rank": 2, "score": 1000},
        {"rank": 1, "score": 2000},
        {"rank": 3, "score": 0},
    ]
    assert [u["ahead"] and u["ahead"]["player_id"] for u in updates] == [ids[1], None, ids[0]]
    host_update = await host.push("leaderboard_updated")
    assert (host_update["me"], host_update["player_count"], len(host_update["top"])) == (None, 3, 3)
    assert services.leaderboard.watch_calls[quiz_id] == 1
    assert services.quiz.watch_calls[quiz_id] == 1

    for socket, _ in players:
        await socket.ws.close()
    await host.ws.close()
    await eventually(lambda: services.leaderboard.active_watches[quiz_id] == 0, "the watch to stop")


async def test_a_broken_leaderboard_stream_is_reopened_and_clients_catch_up(
    edge: EdgeFactory, services: FakeServices
) -> None:
    client = await edge()
    _host, quiz_id = await hosted_quiz(client)
    player, reply = await joined(client, quiz_id, "ann")
    me = reply["player"]["player_id"]
    await eventually(lambda: services.leaderboard.watch_calls[quiz_id] == 1, "the leaderboard watch")
    services.leaderboard.publish(board(quiz_id, 1, [(me, "ann", 0)]))
    assert (await player.push("leaderboard_updated"))["version"] == 1

    services.leaderboard.break_streams(quiz_id)
    # Published while the edge is disconnected: the reopened stream starts with it.
    services.leaderboard.publish(board(quiz_id, 2, [(me, "ann", 1000)]))
    caught_up = await player.push("leaderboard_updated")
    assert (caught_up["version"], caught_up["me"]) == (2, {"rank": 1, "score": 1000})
    assert services.leaderboard.watch_calls[quiz_id] == 2


async def test_hidden_leaderboard_reaches_only_the_host(edge: EdgeFactory, services: FakeServices) -> None:
    host, quiz_id, player, reply = await hosted_with_player(edge, "ann")
    ack = await host.request("set_leaderboard_visibility", visible=False)
    assert ack["state"]["leaderboard_visible"] is False
    await eventually(lambda: services.leaderboard.watch_calls[quiz_id] == 1, "the leaderboard watch")
    services.leaderboard.publish(board(quiz_id, 1, [(reply["player"]["player_id"], "ann", 10)]))
    assert (await host.push("leaderboard_updated"))["version"] == 1
    assert (await player.request("ping"))["type"] == "pong"
    assert not [p for p in player.pushes if p["type"] == "leaderboard_updated"]

    await host.request("set_leaderboard_visibility", visible=True)
    revealed = await player.push("leaderboard_updated")
    assert revealed["me"] == {"rank": 1, "score": 10}


async def test_concurrent_answers_from_many_sockets_share_batch_calls(
    edge: EdgeFactory, services: FakeServices
) -> None:
    client = await edge(answer_batch_linger_ms=50)
    host, quiz_id = await hosted_quiz(client)
    players = [(await joined(client, quiz_id, f"p{i}"))[0] for i in range(6)]
    await host.request("start_quiz")
    results = await asyncio.gather(*(p.request("submit_answer", question_index=0, choice=1) for p in players))
    assert {r["type"] for r in results} == {"answer_result"}
    assert sum(services.quiz.batch_sizes) == 6
    assert len(services.quiz.batch_sizes) < 6, services.quiz.batch_sizes


async def test_kicked_player_is_told_and_can_no_longer_answer(edge: EdgeFactory) -> None:
    client = await edge()
    host, quiz_id = await hosted_quiz(client)
    player, reply = await joined(client, quiz_id, "troll")
    other, _ = await joined(client, quiz_id, "nice")
    await host.request("start_quiz")
    ack = await host.request("kick_player", player_id=reply["player"]["player_id"])
    assert ack["action"] == "kick_player"
    assert (await player.push("kicked"))["quiz_id"] == quiz_id
    refused = await player.request("submit_answer", question_index=0, choice=1)
    assert refused["code"] == "not_joined"
    seen = await other.push("quiz_state", kicked_player_id=reply["player"]["player_id"])
    assert seen["state"]["participant_count"] == 1


async def test_resume_restores_a_player_on_a_new_socket(edge: EdgeFactory) -> None:
    client = await edge()
    host, quiz_id = await hosted_quiz(client)
    first, reply = await joined(client, quiz_id, "ann")
    await host.request("start_quiz")
    await first.request("submit_answer", question_index=0, choice=0)
    await first.ws.close()

    second = await connect(client)
    resumed = await second.request("resume", player_token=reply["player_token"])
    assert resumed["type"] == "resumed", resumed
    assert resumed["player"]["player_id"] == reply["player"]["player_id"]
    assert resumed["answered_current_question"] is True
    assert resumed["state"]["phase"] == "question_open"
    await host.request("next_question")
    assert (await second.push("quiz_state", phase="question_open"))["state"]["question_index"] == 1
    assert (await second.request("submit_answer", question_index=1, choice=0))["correct"] is True


@pytest.mark.parametrize(
    ("allowed", "origin", "host", "ok"),
    [
        (frozenset(), None, "edge.example:8080", True),
        (frozenset(), "http://edge.example:8080", "edge.example:8080", True),
        (frozenset(), "https://evil.example", "edge.example:8080", False),
        (frozenset({"https://quiz.example"}), "https://quiz.example/", "edge.example", True),
        (frozenset({"https://quiz.example"}), "https://evil.example", "edge.example", False),
        (frozenset({"https://quiz.example"}), None, "edge.example", False),
    ],
)
def test_origin_allow_list(allowed: frozenset[str], origin: str | None, host: str, ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


async def test_disallowed_origin_is_refused_with_403_before_upgrade(edge: EdgeFactory) -> None:
    client = await edge(allowed_origins=frozenset({"https://quiz.example"}))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    welcome = await connect(client, headers={"Origin": "https://quiz.example"})
    assert (await welcome.request("ping"))["type"] == "pong"


async def test_health_readiness_and_shutdown(edge: EdgeFactory, services: FakeServices) -> None:
    client = await edge()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await services.set_serving(False)
    assert (await client.get("/readyz")).status == 503
    await services.set_serving(True)
    assert (await client.get("/readyz")).status == 200

    socket = await connect(client)
    shutdown: Awaitable[None] = client.app.shutdown()
    closing = asyncio.ensure_future(shutdown)
    message = await socket.ws.receive(timeout=3)
    assert message.type == WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.SERVICE_RESTART
    await closing
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


async def test_oversized_messages_close_the_socket_and_compression_is_never_negotiated(edge: EdgeFactory) -> None:
    client = await edge()
    socket = await connect(client, compress=15)
    assert socket.ws.compress == 0
    await socket.ws.send_str('{"type": "ping", "pad": "' + "x" * (64 * 1024) + '"}')
    message = await socket.ws.receive(timeout=3)
    assert message.type == WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
