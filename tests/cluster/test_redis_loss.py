"""Cluster scenario 7: the Redis Cluster loses its data while persistence_svc lags behind Kafka.

Two processes of every service on the multi-node topology; both persistence_svc write through one
PostgreSQL proxy that stalls their sinks on demand (tests/faults/redis_loss.py tells the story). Every
primary of the Redis Cluster is flushed while the sinks hold none of the last question's answers; the
rebuilds must count them all.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.faults import redis_loss
from tests.faults.harness import GrpcGame, converge, write_report
from tests.faults.pg_proxy import InsertHoldingProxy
from tests.support.infra import REAL, require_cluster
from tests.support.stack import process_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(400)]

PERSISTENCE_PROCESSES = 2


async def test_redis_data_lost_while_persistence_lags_later_totals_count_every_answer(tmp_path: Path) -> None:
    require_cluster()
    postgres = urlsplit(REAL.postgres_dsn)
    assert postgres.hostname is not None and postgres.port is not None
    sinks = InsertHoldingProxy(postgres.hostname, postgres.port)
    stalled = {"QUIZMESH_POSTGRES_DSN": await sinks.proxied_dsn(REAL.postgres_dsn)}
    try:
        async with process_stack(
            tmp_path / "logs",
            edges=0,
            persistences=PERSISTENCE_PROCESSES,
            process_env={"persistence-svc": [stalled] * PERSISTENCE_PROCESSES},
        ) as stack:
            game = GrpcGame(stack.quiz_addrs, players=redis_loss.PLAYERS, questions=redis_loss.QUESTIONS)
            await game.setup()
            try:
                figures = await redis_loss.redis_lost_while_persistence_lags(
                    game, sinks, REAL.postgres_dsn, REAL.redis_url, REAL.redis_mode
                )
                stores, converged_s = await converge(
                    REAL.postgres_dsn, REAL.redis_url, game.quiz_id, game.ledger, timeout_s=60, redis_mode="cluster"
                )
            finally:
                await game.close()
    finally:
        sinks.release()
        await sinks.close()
    report = write_report(
        "cluster-7-redis-lost-while-persistence-lags",
        "pytest tests/cluster/test_redis_loss.py",
        stores,
        game.ledger,
        converged_s=converged_s,
        **figures,
    )
    assert (stores.lost, stores.duplicated, stores.drift) == (0, 0, 0), report
    assert report["answers_stored_at_loss"] < report["answers_accepted_at_loss"], report
    assert report["players_shown_a_last_total"] == redis_loss.PLAYERS, report
    assert report["players_with_wrong_totals"] == 0, report
