"""Cluster scenarios 2 and 1: a Kafka broker of three fails while players answer.

Two quiz_svc, two leaderboard_svc and two persistence_svc run on the multi-node topology; the load is
the fault harness's (tests/faults/harness.py): every player answers every question in calls of 50, a
failed answer is retried unchanged, and the ledger of what clients saw accepted is compared with
PostgreSQL and the Redis Cluster at the end (lost, duplicated, drift). The broker is stopped and
started with scripts/infra.sh on the shared topology, which the test leaves as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from quizmesh.eventbus.ports import ANSWER_SUBMITTED
from tests.faults.harness import GrpcGame, converge, write_report
from tests.support.infra import REAL, require_cluster
from tests.support.stack import Stack, process_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
DOWN_S = float(os.environ.get("QUIZMESH_FAULT_KAFKA_DOWN_S", "60"))
PLAYERS = 100
# Each question lasts at least this long, so the load is about PLAYERS / QUESTION_S answers a second
# however fast the machine, and the quiz's questions (at most 500) outlast the outage.
QUESTION_S = 0.5


def _infra(*args: str) -> float:
    """scripts/infra.sh on the multi-node topology; returns the seconds it took."""
    started = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "scripts" / "infra.sh"), *args, "--topology", "cluster"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return round(time.monotonic() - started, 2)


@contextlib.asynccontextmanager
async def _game(tmp_path: Path) -> AsyncIterator[tuple[Stack, GrpcGame]]:
    require_cluster()
    async with process_stack(tmp_path / "logs", edges=0) as stack:
        game = GrpcGame(stack.quiz_addrs, players=PLAYERS, questions=500)
        await game.setup()
        try:
            yield stack, game
        finally:
            await game.close()


@contextlib.asynccontextmanager
async def _broker_down(broker: str, *, kill: bool) -> AsyncIterator[dict[str, float]]:
    """The broker stopped (SIGTERM, or SIGKILL), and started again on the way out however the test went."""
    figures: dict[str, float] = {}
    figures["stop_s"] = await asyncio.to_thread(_infra, "stop", broker, *(["--kill"] if kill else []))
    try:
        yield figures
    finally:
        figures["restart_s"] = await asyncio.to_thread(_infra, "start", broker)


async def _answer_for(game: GrpcGame, seconds: float) -> list[float]:
    """Question after question, every player answering each, for `seconds`; returns when each question
    whose answers met a refusal ended (the harness counts refusals, not their times)."""
    refused_until: list[float] = []
    until = time.monotonic() + seconds
    while (started := time.monotonic()) < until:
        errors = sum(game.ledger.errors.values())
        await game.answer_question()
        if sum(game.ledger.errors.values()) > errors:
            refused_until.append(time.monotonic())
        await game.next_question()
        await asyncio.sleep(max(0.0, QUESTION_S - (time.monotonic() - started)))
    return refused_until


async def _finish(scenario: str, test: str, game: GrpcGame, **extra: Any) -> dict[str, Any]:
    figures, converged_s = await converge(
        REAL.postgres_dsn, REAL.redis_url, game.quiz_id, game.ledger, timeout_s=60, redis_mode="cluster"
    )
    report = write_report(
        f"cluster-{scenario}",
        f"pytest tests/cluster/test_kafka_brokers.py::{test}",
        figures,
        game.ledger,
        converged_s=converged_s,
        **extra,
    )
    assert figures.accepted > 0, report
    assert (figures.lost, figures.duplicated, figures.drift) == (0, 0, 0), report
    return report


async def test_one_broker_down_for_a_minute_under_load_costs_clients_nothing(tmp_path: Path) -> None:
    """Scenario 2: with one broker of three stopped, two in-sync replicas remain: acks=all and
    min.insync.replicas=2 still acknowledge, leaders move, and no client sees any error."""
    async with _game(tmp_path) as (_stack, game):
        await game.answer_question()
        await game.next_question()
        accepted_before = len(game.ledger.accepted)
        async with _broker_down("kafka2", kill=False) as outage:
            started = time.monotonic()
            await _answer_for(game, DOWN_S)
            outage["down_s"] = round(time.monotonic() - started, 1)
            outage["accepted_while_down"] = len(game.ledger.accepted) - accepted_before
        await game.answer_question()
        report = await _finish(
            "2-broker-down",
            "test_one_broker_down_for_a_minute_under_load_costs_clients_nothing",
            game,
            **outage,
        )
        assert report["accepted_while_down"] > 0, report
        assert report["client_errors"] == {}, report


async def _leader_of_the_quiz(quiz_id: str) -> str:
    """The broker (as an infra.sh component) leading the answer_submitted partition of quiz_id's key."""
    producer = AIOKafkaProducer(bootstrap_servers=REAL.kafka_bootstrap)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(ANSWER_SUBMITTED))
        partition = DefaultPartitioner()(quiz_id.encode(), partitions, partitions)
        leader = producer.client.cluster.leader_for_partition(TopicPartition(ANSWER_SUBMITTED, partition))
    finally:
        await producer.stop()
    return f"kafka{leader}"


async def test_sigkill_of_the_broker_leading_the_quiz_partition_loses_nothing(tmp_path: Path) -> None:
    """Scenario 1: the leader of the quiz's answer partition is SIGKILLed under load. Until the
    controller fences it (broker.session.timeout.ms, 4 s) and a follower of the ISR takes over, answers
    to that partition are refused as retryable `unavailable`; nothing acknowledged is lost."""
    async with _game(tmp_path) as (_stack, game):
        await game.answer_question()
        await game.next_question()
        broker = await _leader_of_the_quiz(game.quiz_id)
        async with _broker_down(broker, kill=True) as outage:
            killed_at = time.monotonic()
            refused_until = await _answer_for(game, 20)
            outage["unavailable_for_at_most_s"] = round(max(refused_until, default=killed_at) - killed_at, 1)
        await game.answer_question()
        report = await _finish(
            "1-sigkill-partition-leader",
            "test_sigkill_of_the_broker_leading_the_quiz_partition_loses_nothing",
            game,
            broker=broker,
            **outage,
        )
        # Clean refusals only: every error a client saw is a retryable `unavailable`.
        assert all("unavailable" in code.lower() for code in report["client_errors"]), report
