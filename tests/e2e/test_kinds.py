"""A quiz with every kind of question, media included, played end to end through the edge over plain
WebSockets; every score recomputed from the documented formulas and compared with what the players
were told, what was stored and the leaderboard."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.support.checks import leaderboard_ranking, stored_participants, wait_for_stored_answers
from tests.support.client import EdgeClient, Message
from tests.support.recompute import recompute
from tests.support.stack import Stack, stack_of_kind

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NAMES = ("ada", "bob", "cy")


@pytest.fixture(params=["embedded", "processes"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack_of_kind(request.param, tmp_path) as running:
        yield running


async def create_with_media(session: aiohttp.ClientSession, edge_url: str, document: Path) -> Message:
    """POST /quizzes: the document and every file it names, as the host page sends them."""
    quiz = json.loads(document.read_text())
    form = aiohttp.FormData()
    form.add_field("quiz", json.dumps(quiz), filename=document.name, content_type="application/json")
    named = {r for q in quiz["questions"] for r in (q.get("image"), q.get("audio"), *q.get("choice_images", [])) if r}
    for name in sorted(named):
        form.add_field("media", (document.parent / name).read_bytes(), filename=name)
    async with session.post(f"{edge_url}/quizzes", data=form) as response:
        assert response.status == 200, await response.text()
        created: Message = await response.json()
        return created


def answers_for(kind: str, question: Message) -> dict[str, dict[str, Any]]:
    """What ada (right), bob (partly right, or by the single choice of older clients) and cy (wrong) send."""
    if kind == "single_choice":
        return {"ada": {"choice": 0}, "bob": {"choice": 1}, "cy": {"choice": 0}}
    if kind == "multiple_select":
        return {"ada": {"choices": [0, 1, 3]}, "bob": {"choices": [0, 1]}, "cy": {"choices": [2]}}
    if kind == "true_false":
        return {"ada": {"truth": True}, "bob": {"choice": 0}, "cy": {"truth": False}}
    if kind == "type_answer":
        return {"ada": {"text": "  Colour! "}, "bob": {"text": "colr"}, "cy": {"text": "red"}}
    if kind == "ordering":
        right = ["I", "have", "never", "been", "to", "London"]
        shown = question["items"]
        exact = [shown.index(item) for item in right]
        swapped = exact[:2][::-1] + exact[2:]
        return {"ada": {"order": exact}, "bob": {"order": swapped}, "cy": {"order": exact[::-1]}}
    if kind == "estimate":
        return {"ada": {"number": 1969}, "bob": {"number": "1972"}, "cy": {"number": 1950.5}}
    return {"ada": {"choice": 1}, "bob": {"choice": 1}, "cy": {"choice": 2}}


def opened(index: int) -> Callable[[Message], bool]:
    def matches(m: Message) -> bool:
        state = m.get("state") or {}
        return m.get("type") == "quiz_state" and state["phase"] == "question_open" and state["question_index"] == index

    return matches


EXPECTED_RESULTS = [
    # (correct for ada, bob, cy), credit for ada, bob, cy, tallies
    ((True, False, True), ("1", "0", "1"), {"0": 2, "1": 1}),
    ((True, False, False), ("1", "2/3", "0"), {"0": 2, "1": 2, "2": 1, "3": 1}),
    ((True, True, False), ("1", "1", "0"), {"0": 2, "1": 1}),
    ((True, True, False), ("1", "1", "0"), {"a0": 1, "a1": 1, "other": 1}),
    ((True, False, False), ("1", "14/15", "0"), {"exact": 1, "i0": 1, "i1": 1, "i2": 2, "i3": 2, "i4": 2, "i5": 2}),
    ((True, True, False), ("1", "7/10", "0"), {"b6": 1, "b7": 1, "b5": 1}),
    ((False, False, False), ("0", "0", "0"), {"1": 2, "2": 1}),
]


async def test_every_kind_plays_end_to_end_and_every_score_recomputes(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        created = await create_with_media(session, stack.edge_urls[0], EXAMPLES / "kinds.json")
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        host = await EdgeClient.connect(session, stack.ws_url(0))
        hosting = await host.request("host_quiz", quiz_id=quiz_id, host_token=host_token)
        kinds = [q["kind"] for q in hosting["quiz"]["questions"]]
        assert kinds == [
            "single_choice",
            "multiple_select",
            "true_false",
            "type_answer",
            "ordering",
            "estimate",
            "poll",
        ]
        players: dict[str, EdgeClient] = {}
        for n, name in enumerate(NAMES):
            players[name] = await EdgeClient.connect(session, stack.ws_url(n % len(stack.edge_urls)))
            joined = await players[name].request("join_quiz", quiz_id=quiz_id, nickname=name)
            assert joined["type"] == "joined", joined

        told: dict[str, list[Message]] = {name: [] for name in NAMES}
        shown_items: dict[int, list[str]] = {}
        for index, kind in enumerate(kinds):
            await host.request("start_quiz" if index == 0 else "next_question", question_index=index)
            states = await asyncio.gather(*(p.wait_for(opened(index)) for p in players.values()))
            question = states[0]["state"]["question"]
            assert question["kind"] == kind
            assert not {"correct_choices", "accepted_answers", "answer"} & set(question)
            if kind == "ordering":
                shown_items[index] = question["items"]
                assert question["items"] != ["I", "have", "never", "been", "to", "London"]
            if kind == "estimate":
                assert question["estimate"] == {"min": "1900", "max": "2000"}
                refused = await players["bob"].request("submit_answer", question_index=index, number=2500)
                assert (refused["type"], refused["code"]) == ("error", "invalid_answer")
            if kind == "single_choice":
                assert len(question["image"]) == 64 and len(question["choice_images"]) == 3
                refused = await players["bob"].request("submit_answer", question_index=index, text="Paris")
                assert (refused["type"], refused["code"]) == ("error", "invalid_answer")
                async with session.get(f"{stack.edge_urls[0]}/media/{question['image']}") as picture:
                    assert picture.status == 200
                    assert await picture.read() == (EXAMPLES / "media" / "tower.png").read_bytes()
            for name, fields in answers_for(kind, question).items():
                result = await players[name].request("submit_answer", question_index=index, **fields)
                assert result["type"] == "answer_result", result
                told[name].append(result)
            closed = await host.request("close_question", question_index=index)
            correct, credits, tallies = EXPECTED_RESULTS[index]
            assert tuple(told[name][index]["correct"] for name in NAMES) == correct, kind
            assert tuple(told[name][index]["credit"] for name in NAMES) == credits, kind
            assert closed["results"]["tallies"] == tallies, kind
            assert closed["results"]["kind"] == kind
        # "colr" is one letter from "color" (5 letters), two from "colour": the results show what was accepted.
        assert (told["ada"][3]["accepted_answer"], told["bob"][3]["accepted_answer"]) == ("colour", "color")
        assert told["ada"][6]["points"] == 0 and told["ada"][6]["streak"] == told["ada"][5]["streak"]
        await host.request("end_quiz")

        answers = await wait_for_stored_answers(stack.persistence_addrs[0], quiz_id, expected=3 * len(kinds))
        assert len(answers) == 3 * len(kinds)
        async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel:
            quiz = (
                await pb_grpc.QuizServiceStub(channel).GetQuiz(
                    pb.GetQuizRequest(quiz_id=quiz_id, host_token=host_token), timeout=10
                )
            ).quiz
        participants = await stored_participants(stack.persistence_addrs[0], quiz_id)
        points_of, ranking = recompute(quiz, participants, answers, shown_items)
        by_player = {p.player_id: p.nickname for p in participants}
        for answer in answers:
            reply = told[by_player[answer.player_id]][answer.question_index]
            assert points_of[answer.event_id] == answer.points == reply["points"], answer
        board = await leaderboard_ranking(stack.leaderboard_addrs[0], quiz_id)
        assert [(e.player_id, e.score) for e in board] == [(s.player_id, s.score) for s in ranking]

        async with session.get(
            f"{stack.edge_urls[0]}/quizzes/{quiz_id}/results.csv", headers={"Authorization": f"Bearer {host_token}"}
        ) as export:
            rows = list(csv.DictReader(io.StringIO(await export.text())))
        ada = [r["answer"] for r in rows if r["nickname"] == "ada"]
        assert ada == [
            "Paris",
            "glad; cheerful; joyful",
            "true",
            "  Colour! ",
            "I / have / never / been / to / London",
            "1969",
            "Listening",
        ]
        for client in [host, *players.values()]:
            await client.close()
