"""Socket.IO clients play through the edge with the official python-socketio client, beside plain clients.

One embedded stack serves the package (conftest.py): a plain WebSocket host runs the quiz, a plain player and Socket.IO
players answer, and everyone reads the same leaderboard from the same fan-out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.socketio.sio_client import SocketIOPlayer
from tests.support.client import EdgeClient
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

QUESTIONS = [
    {"text": "2 + 2 = ?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 60},
    {"text": "3 + 3 = ?", "choices": ["6", "7"], "correct_choices": [0], "time_limit_seconds": 60},
]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def hosted_quiz(http: aiohttp.ClientSession, stack: Stack) -> tuple[EdgeClient, str]:
    host = await EdgeClient.connect(http, stack.ws_url())
    created = await host.request("create_quiz", title="Socket.IO", questions=QUESTIONS)
    quiz_id = created["quiz"]["quiz_id"]
    hosting = await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])
    assert hosting["type"] == "hosting", hosting
    return host, quiz_id


def question_open(index: int) -> Any:
    return lambda event, data: (
        event == "quiz_state"
        and data["state"]["question_index"] == index
        and (data["state"]["phase"] == "question_open")
    )


def board_showing(score: int) -> Any:
    return lambda event, data: (
        event == "leaderboard_updated" and data["me"] is not None and (data["me"]["score"] == score)
    )


async def test_players_with_acks_join_answer_see_the_board_and_resume_after_reconnecting(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    host, quiz_id = await hosted_quiz(http, stack)
    ada = SocketIOPlayer(reconnection_delay=0.1, reconnection_delay_max=0.5)
    plain = await EdgeClient.connect(http, stack.ws_url())
    try:
        await ada.connect(stack.edge_urls[0])
        joined = await ada.call("join_quiz", {"quiz_id": quiz_id, "nickname": "Ada"})
        assert joined["type"] == "joined", joined
        assert joined["state"]["phase"] == "lobby"
        ada_id, token = joined["player"]["player_id"], joined["player_token"]
        plain_joined = await plain.request("join_quiz", quiz_id=quiz_id, nickname="Bob")
        bob_id = plain_joined["player"]["player_id"]

        assert (await host.request("start_quiz"))["type"] == "host_ack"
        await ada.wait_for(question_open(0))
        result = await ada.call("submit_answer", {"question_index": 0, "choice": 1})
        assert result["type"] == "answer_result", result
        assert result["correct"] is True and 500 <= result["total_score"] <= 1000
        assert (await plain.request("submit_answer", question_index=0, choice=0))["correct"] is False

        board = await ada.wait_for(board_showing(result["total_score"]))
        assert board["type"] == "leaderboard_updated" and board["quiz_id"] == quiz_id
        assert board["me"] == {"rank": 1, "score": result["total_score"]} and board["ahead"] is None
        assert [entry["player_id"] for entry in board["top"]] == [ada_id, bob_id]
        # The plain player received the same update: same shared part, its own standing.
        plain_board = await plain.wait_for(
            lambda m: m.get("type") == "leaderboard_updated" and m["version"] == board["version"]
        )
        assert {k: v for k, v in plain_board.items() if k not in ("me", "ahead")} == {
            k: v for k, v in board.items() if k not in ("me", "ahead")
        }
        assert plain_board["me"]["rank"] == 2 and plain_board["ahead"]["player_id"] == ada_id

        # The transport drops; python-socketio reconnects on its own, and the player resumes by token.
        await ada.sio.eio.ws.close()
        await ada.wait_connected(2)
        resumed = await ada.call("resume", {"player_token": token})
        assert resumed["type"] == "resumed", resumed
        assert resumed["player"]["player_id"] == ada_id
        assert resumed["player"]["score"] == result["total_score"]
        assert resumed["answered_current_question"] is True

        # Updates reach the resumed socket again.
        assert (await host.request("close_question"))["type"] == "host_ack"
        advanced = await host.request("next_question")
        assert advanced["type"] == "host_ack", advanced
        await ada.wait_for(question_open(1))
        second = await ada.call("submit_answer", {"question_index": 1, "choice": 0})
        assert second["total_score"] > result["total_score"]
        await ada.wait_for(board_showing(second["total_score"]))
    finally:
        await ada.close()
        await plain.close()
        await host.close()


async def test_without_acks_replies_arrive_as_the_original_designs_events(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    host, quiz_id = await hosted_quiz(http, stack)
    cy = SocketIOPlayer()
    try:
        await cy.connect(stack.edge_urls[0])
        await cy.emit("join_quiz", {"quiz_id": quiz_id, "nickname": "Cy"})
        joined = await cy.wait_for(lambda event, data: event == "user_joined_quiz")
        assert joined["type"] == "joined" and joined["player"]["nickname"] == "Cy"

        await host.request("start_quiz")
        await cy.wait_for(question_open(0))
        await cy.emit("submit_answer", {"question_index": 0, "choice": 1})
        result = await cy.wait_for(lambda event, data: event == "answer_submitted")
        assert result["type"] == "answer_result" and result["correct"] is True

        await cy.emit("submit_answer", {"question_index": 0, "choice": 0})
        refused = await cy.wait_for(lambda event, data: event == "error")
        assert refused["code"] == "already_answered"
        await cy.wait_for(board_showing(result["total_score"]))
    finally:
        await cy.close()
        await host.close()


async def test_bad_payloads_get_the_plain_protocols_errors_and_the_socket_stays_usable(stack: Stack) -> None:
    dee = SocketIOPlayer()
    try:
        await dee.connect(stack.edge_urls[0])
        missing = await dee.call("submit_answer", {"question_index": "first"})
        assert (missing["type"], missing["code"]) == ("error", "invalid_field")
        invalid = await dee.call("join_quiz", {"quiz_id": 7, "nickname": "Dee"})
        assert (invalid["type"], invalid["code"]) == ("error", "invalid_field")
        assert "quiz_id" in invalid["message"]
        not_an_object = await dee.sio.call("join_quiz", ["Q", "Dee"], timeout=15)
        assert not_an_object["code"] == "invalid_message"
        unknown = await dee.call("launch_rockets", {})
        assert unknown["code"] == "unknown_type"
        absent = await dee.call("join_quiz", {"quiz_id": "NOSUCHQZ", "nickname": "Dee"})
        assert absent["code"] == "quiz_not_found"
        assert (await dee.call("ping", {}))["type"] == "pong"
    finally:
        await dee.close()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("EIO=4&transport=polling", 0),
        ("EIO=3&transport=websocket", 5),
        ("EIO=4&transport=websocket&sid=abc", 1),
        ("EIO=4&transport=websocket", 3),  # a plain GET, not a WebSocket upgrade
    ],
)
async def test_what_this_websocket_only_server_cannot_serve_gets_engine_ios_400(
    stack: Stack, http: aiohttp.ClientSession, query: str, code: int
) -> None:
    async with http.get(f"{stack.edge_urls[0]}/socket.io/?{query}") as response:
        assert response.status == 400
        body = await response.json()
    assert body["code"] == code and isinstance(body["message"], str)


async def test_a_client_that_tries_long_polling_first_cannot_connect(stack: Stack) -> None:
    import socketio

    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(stack.edge_urls[0], transports=["polling"], wait_timeout=5)
    await client.shutdown()


KINDS = [
    {
        "kind": "multiple_select",
        "text": "Synonyms of happy?",
        "choices": ["glad", "sad", "joyful"],
        "correct_choices": [0, 2],
        "time_limit_seconds": 60,
    },
    {
        "kind": "type_answer",
        "text": "Spell it",
        "accepted_answers": ["café"],
        "accent_insensitive": True,
        "time_limit_seconds": 60,
    },
    {"kind": "ordering", "text": "Order", "items": ["one", "two", "three"], "time_limit_seconds": 60},
    {
        "kind": "estimate",
        "text": "Year?",
        "estimate": {"min": 1900, "max": 2000, "answer": 1969, "tolerance": 10},
        "time_limit_seconds": 60,
    },
]


async def test_every_kinds_answer_travels_over_socketio_as_over_plain_websockets(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    host = await EdgeClient.connect(http, stack.ws_url())
    created = await host.request("create_quiz", title="Kinds over Socket.IO", questions=KINDS)
    quiz_id = created["quiz"]["quiz_id"]
    await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])
    ada = SocketIOPlayer()
    try:
        await ada.connect(stack.edge_urls[0])
        assert (await ada.call("join_quiz", {"quiz_id": quiz_id, "nickname": "Ada"}))["type"] == "joined"
        replies = []
        for index in range(len(KINDS)):
            await host.request("start_quiz" if index == 0 else "next_question", question_index=index)
            opened = await ada.wait_for(question_open(index))
            question = opened["state"]["question"]
            answers: list[dict[str, Any]] = [
                {"choices": [0, 2]},
                {"text": "Cafe"},
                {"order": [question["items"].index(item) for item in ("one", "two", "three")] if index == 2 else []},
                {"number": "1974"},
            ]
            answer = answers[index]
            replies.append(await ada.call("submit_answer", {"question_index": index, **answer}))
            await host.request("close_question", question_index=index)
        assert [(r["type"], r["correct"], r["credit"]) for r in replies] == [
            ("answer_result", True, "1"),
            ("answer_result", True, "1"),
            ("answer_result", True, "1"),
            ("answer_result", True, "3/4"),
        ]
        assert replies[1]["accepted_answer"] == "café"
        refused = await ada.call("submit_answer", {"question_index": 3, "number": "soon"})
        assert (refused["type"], refused["code"]) == ("error", "invalid_answer")
    finally:
        await ada.close()
        await host.close()
