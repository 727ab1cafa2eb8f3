"""One quiz played end to end through real WebSockets: the foundation's acceptance test.

It runs twice: on the embedded stack (one process, in-memory engines, SQLite) and on separate
processes against the real Kafka, Redis and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.checks import leaderboard_scores, recomputed_scores, wait_for_stored_answers
from tests.support.client import EdgeClient, Message
from tests.support.game import QUESTIONS
from tests.support.infra import REAL, real_redis
from tests.support.stack import Stack, stack_of_kind

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "processes"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack_of_kind(request.param, tmp_path) as running:
        yield running


def is_leaderboard(message: Message) -> bool:
    return bool(message.get("type") == "leaderboard_updated")


async def test_three_players_answer_and_everyone_sees_every_answer(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        host = await EdgeClient.connect(session, stack.ws_url())
        created = await host.request("create_quiz", title="E2E", questions=QUESTIONS)
        assert created["type"] == "quiz_created", created
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        hosting = await host.request("host_quiz", quiz_id=quiz_id, host_token=host_token)
        assert hosting["type"] == "hosting", hosting

        players: list[EdgeClient] = []
        ids: dict[str, str] = {}
        for name in ("ada", "bob", "cy"):
            client = await EdgeClient.connect(session, stack.ws_url())
            joined = await client.request("join_quiz", quiz_id=quiz_id, nickname=name)
            assert joined["type"] == "joined", joined
            assert joined["state"]["phase"] == "lobby"
            ids[name] = joined["player"]["player_id"]
            players.append(client)

        started = await host.request("start_quiz")
        assert started["type"] == "host_ack", started
        for client in players:
            opened = await client.wait_for(
                lambda m: m.get("type") == "quiz_state" and m["state"]["phase"] == "question_open"
            )
            assert "correct_choices" not in str(opened)

        totals: dict[str, int] = {}
        for name, client, choice in zip(ids, players, (1, 1, 0), strict=True):
            result = await client.request("submit_answer", question_index=0, choice=choice)
            assert result["type"] == "answer_result", result
            assert result["correct"] is (choice == 1)
            totals[ids[name]] = result["total_score"]
        assert totals[ids["cy"]] == 0 and 500 <= totals[ids["ada"]] <= 1000

        def reflects_every_answer(message: Message) -> bool:
            if not is_leaderboard(message):
                return False
            shown = {entry["player_id"]: entry["score"] for entry in message["top"]}
            return shown == totals

        for client, name in zip(players, ids, strict=True):
            update = await client.wait_for(reflects_every_answer, timeout_s=20)
            me: dict[str, Any] = update["me"]
            assert me["score"] == totals[ids[name]]
            ranked = sorted(update["top"], key=lambda e: e["rank"])
            assert me["rank"] == next(e["rank"] for e in ranked if e["player_id"] == ids[name])
            if me["rank"] > 1:
                assert update["ahead"]["rank"] == me["rank"] - 1
            else:
                assert update["ahead"] is None
        await host.wait_for(reflects_every_answer, timeout_s=20)

        answers = await wait_for_stored_answers(stack.persistence_addrs[0], quiz_id, expected=3)
        assert len(answers) == 3
        assert len({(a.question_index, a.player_id) for a in answers}) == 3
        recomputed = recomputed_scores(answers)
        assert recomputed == totals
        assert await leaderboard_scores(stack.leaderboard_addrs[0], quiz_id) == recomputed

        if stack.mode == "processes":
            await assert_postgres_and_redis_agree(quiz_id, recomputed)

        for client in [host, *players]:
            await client.close()


async def assert_postgres_and_redis_agree(quiz_id: str, expected: dict[str, int]) -> None:
    """Reads the real stores directly, not through the services."""
    connection = await asyncpg.connect(REAL.postgres_dsn)
    try:
        rows = await connection.fetch(
            "SELECT player_id, count(*) AS n, sum(points) AS total FROM answers WHERE quiz_id = $1 GROUP BY player_id",
            quiz_id,
        )
    finally:
        await connection.close()
    assert {r["player_id"]: int(r["total"]) for r in rows} == expected
    assert all(r["n"] == 1 for r in rows)
    redis = real_redis()
    try:
        raw = await redis.hgetall(f"lb:{{{quiz_id}}}:players")
    finally:
        await redis.aclose()
    scores = {str(k, "utf-8"): int(str(v, "utf-8").split("|")[0]) for k, v in raw.items()}  # type: ignore[arg-type]
    assert scores == expected
