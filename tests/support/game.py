"""Driving a whole quiz through the edge: one host and many players over real WebSockets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NotRequired, TypedDict

import aiohttp

from tests.support.checks import recomputed_scores, stored_participants, wait_for_stored_answers
from tests.support.client import EdgeClient, Message
from tests.support.stack import Stack


class QuestionJson(TypedDict):
    text: str
    choices: list[str]
    correct_choices: list[int]
    time_limit_seconds: int
    points: NotRequired[str]


# Two questions whose scores tell players apart: the second counts double.
QUESTIONS: Final[list[QuestionJson]] = [
    {"text": "2 + 2 = ?", "choices": ["3", "4", "5"], "correct_choices": [1], "time_limit_seconds": 60},
    {
        "text": "Capital of Italy?",
        "choices": ["Rome", "Milan"],
        "correct_choices": [0],
        "time_limit_seconds": 60,
        "points": "double",
    },
]


@dataclass
class Player:
    client: EdgeClient
    player_id: str
    nickname: str
    token: str
    results: dict[int, Message] = field(default_factory=dict)

    def last_leaderboard(self) -> Message | None:
        boards = [m for m in self.client.pushed if m.get("type") == "leaderboard_updated"]
        return boards[-1] if boards else None


@dataclass
class Game:
    stack: Stack
    session: aiohttp.ClientSession
    host: EdgeClient
    quiz_id: str
    host_token: str
    players: list[Player] = field(default_factory=list)

    @classmethod
    async def create(
        cls, stack: Stack, session: aiohttp.ClientSession, questions: Sequence[dict[str, Any]], **options: Any
    ) -> Game:
        host = await EdgeClient.connect(session, stack.ws_url(0))
        created = await host.request("create_quiz", title="Game", questions=list(questions), **options)
        assert created["type"] == "quiz_created", created
        game = cls(stack, session, host, created["quiz"]["quiz_id"], created["host_token"])
        hosting = await host.request("host_quiz", quiz_id=game.quiz_id, host_token=game.host_token)
        assert hosting["type"] == "hosting", hosting
        return game

    async def join(self, count: int, *, prefix: str = "player") -> list[Player]:
        """Joins `count` players, spread over the stack's edges in turn."""

        async def one(n: int) -> Player:
            edge = n % len(self.stack.edge_urls)
            client = await EdgeClient.connect(self.session, self.stack.ws_url(edge))
            nickname = f"{prefix}{len(self.players) + n:03d}"
            joined = await client.request("join_quiz", quiz_id=self.quiz_id, nickname=nickname)
            assert joined["type"] == "joined", joined
            return Player(client, joined["player"]["player_id"], nickname, joined["player_token"])

        joined = await asyncio.gather(*(one(n) for n in range(count)))
        self.players.extend(joined)
        return list(joined)

    async def host_action(self, action: str, **fields: Any) -> Message:
        reply = await self.host.request(action, **fields)
        assert reply["type"] == "host_ack", reply
        return reply

    async def wait_for_phase(self, phase: str, question_index: int) -> None:
        def matches(m: Message) -> bool:
            return (
                m.get("type") == "quiz_state"
                and m["state"]["phase"] == phase
                and m["state"]["question_index"] == question_index
            )

        await asyncio.gather(*(p.client.wait_for(matches, timeout_s=30) for p in self.players))

    async def answer(self, question_index: int, choices: dict[str, int]) -> None:
        """Each named player answers; results are kept per player."""

        async def one(player: Player) -> None:
            reply = await player.client.request(
                "submit_answer", question_index=question_index, choice=choices[player.player_id]
            )
            assert reply["type"] == "answer_result", reply
            player.results[question_index] = reply

        await asyncio.gather(*(one(p) for p in self.players if p.player_id in choices))

    async def close(self) -> None:
        for client in [self.host, *(p.client for p in self.players)]:
            await client.close()


ONE_QUESTION = [{"text": "2 + 2 = ?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 30}]


async def play_and_store(stack: Stack, players: int = 3) -> None:
    """A quiz of one question through the stack's edge: created (quiz_svc stores it), joined, started and
    answered right by every player; then persistence_svc must have stored every participant and answer,
    each scored as the player was told."""
    async with aiohttp.ClientSession() as session:
        game = await Game.create(stack, session, ONE_QUESTION)
        try:
            await game.join(players)
            await game.host_action("start_quiz")
            await game.wait_for_phase("question_open", 0)
            await game.answer(0, {p.player_id: 1 for p in game.players})
            told = {p.player_id: p.results[0]["total_score"] for p in game.players}
            assert all(told.values()), told
            stored = await wait_for_stored_answers(stack.persistence_addrs[0], game.quiz_id, players)
            assert recomputed_scores(stored) == told
            # Joins travel on a topic of their own: they may be stored after the answers.
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                joined = {p.player_id for p in await stored_participants(stack.persistence_addrs[0], game.quiz_id)}
                if joined == set(told) or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert joined == set(told)
        finally:
            await game.close()
