"""Redis loses its data while persistence_svc lags behind Kafka (issue 12's scenario 7), on either topology.

persistence_svc reaches PostgreSQL through a proxy (tests/faults/pg_proxy.py) that, once told, holds back
the reply to every INSERT that wrote rows: its sinks stall inside their transactions, their rows
invisible and their offsets uncommitted, while its reads go on. One question is answered with the sinks
stalled (Kafka holds the answers, PostgreSQL does not), Redis is flushed (every primary of a Redis
Cluster) and the host moves on at once: quiz_svc must rebuild the quiz's live state and leaderboard_svc
its ranking, while persistence_svc lags. The sinks are released a moment later. The rebuilds must include
every answer Kafka holds, not only what PostgreSQL stored: players' later totals, what the leaderboard
shows and PostgreSQL must agree.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg

from quizmesh.redis_client import connect
from quizmesh.settings import RedisMode
from tests.faults.harness import GrpcGame
from tests.faults.pg_proxy import InsertHoldingProxy

PLAYERS = 60
QUESTIONS = 4
# The sinks stay stalled this long after the loss, while the host's first move waits for the rebuild.
STALLED_AFTER_LOSS_S = 3.0


async def flush_redis(redis_url: str, redis_mode: RedisMode) -> None:
    """FLUSHALL on the Redis, or on every primary of a Redis Cluster."""
    redis = connect(redis_url, redis_mode)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


async def stored_points(postgres_dsn: str, quiz_id: str) -> tuple[int, Counter[str]]:
    """The answers PostgreSQL holds of the quiz, and each player's points summed over them."""
    connection = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        rows = await connection.fetch("SELECT player_id, points FROM answers WHERE quiz_id = $1", quiz_id)
    finally:
        await connection.close()
    points: Counter[str] = Counter()
    for row in rows:
        points[row["player_id"]] += row["points"]
    return len(rows), points


async def every_accepted_answer_stored(postgres_dsn: str, game: GrpcGame) -> Counter[str]:
    """Waits (up to 60 s) until PostgreSQL holds as many answers as the ledger; each player's points."""
    async with asyncio.timeout(60):
        while True:
            stored, points = await stored_points(postgres_dsn, game.quiz_id)
            if stored >= len(game.ledger.accepted):
                return points
            await asyncio.sleep(0.1)


async def redis_lost_while_persistence_lags(
    game: GrpcGame, sinks: InsertHoldingProxy, postgres_dsn: str, redis_url: str, redis_mode: RedisMode
) -> dict[str, Any]:
    """Plays the scenario on a game that is set up (question 0 open), with every persistence_svc writing
    through `sinks`; returns its figures. The caller compares the stores with the ledger (lost,
    duplicated, drift) once it returns."""
    figures: dict[str, Any] = {}
    await game.answer_question()
    await every_accepted_answer_stored(postgres_dsn, game)
    sinks.hold()
    await game.next_question()
    await game.answer_question()
    await asyncio.wait_for(asyncio.shield(sinks.held), 30)
    stored_at_loss, _ = await stored_points(postgres_dsn, game.quiz_id)
    figures["answers_accepted_at_loss"] = len(game.ledger.accepted)
    figures["answers_stored_at_loss"] = stored_at_loss
    await flush_redis(redis_url, redis_mode)
    lost_at = time.monotonic()

    async def release_sinks() -> None:
        await asyncio.sleep(STALLED_AFTER_LOSS_S)
        sinks.release()

    # The host moves on right away: the rebuilds wait for the sinks to store what Kafka holds.
    await asyncio.gather(game.next_question(), release_sinks())
    figures["sinks_stalled_s"] = STALLED_AFTER_LOSS_S
    figures["rebuilt_s"] = round(time.monotonic() - lost_at, 2)
    await game.answer_question()
    await game.next_question()
    await game.answer_question()

    # Every total a player was shown after the loss counts every answer stored before it.
    points = await every_accepted_answer_stored(postgres_dsn, game)
    last = game.questions - 1
    shown = {player: total for (index, player), total in game.ledger.accepted.items() if index == last}
    figures["players_with_wrong_totals"] = sum(1 for player, total in shown.items() if total != points[player])
    figures["points_missing_from_totals"] = sum(points[player] - total for player, total in shown.items())
    figures["players_shown_a_last_total"] = len(shown)
    return figures
