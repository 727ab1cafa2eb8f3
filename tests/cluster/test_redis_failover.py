"""Cluster scenario 3: the Redis Cluster primary holding a quiz fails under load and its replica is
promoted. Nothing acknowledged is lost, nothing drifts, and answer-once holds although Redis replicates
asynchronously: no player's answer to a question is accepted twice, before, during or after the failover.

Two processes of every service on the multi-node topology (QUIZMESH_REDIS_WAIT_REPLICAS=1 from
`scripts/infra.sh env --topology cluster`). Players answer question after question (the fault harness's
load, tests/faults/harness.py); beside them, every player whose answer was accepted keeps sending it
again, with the same choice and with another one, throughout. Any `answer_result` such a re-send gets is
a second acceptance. Two failures:

- SIGKILL of the primary in the middle of a question's answers; it is restarted RESTART_AFTER_S later,
  as a supervisor would, and rejoins as the new primary's replica. On loopback replication is fast, so
  this shows the failover costs nothing else, not that answer-once survives lost writes; hence:
- a failover that loses the primary's last writes, made certain: the replica's link to its primary is
  cut (and kept cut: a wrong `masterauth` makes it fail to reconnect), one round of answers goes to the
  primary alone, then the replica takes over without its primary's agreement (`CLUSTER FAILOVER
  TAKEOVER`). Without waiting for replicas (QUIZMESH_REDIS_WAIT_REPLICAS=0) that round's answers are
  accepted, forgotten by the promoted replica, and accepted a second time: the test checks that too.

Each test hands the slots back at the end, so the topology ends as it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis.asyncio.cluster import RedisCluster

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.cluster.test_kafka_brokers import _infra
from tests.cluster.test_redis_cluster import Node, _agreed, _command, _owner, _take_over
from tests.faults.harness import GrpcGame, choice_of, converge, write_report
from tests.support.infra import REAL, real_redis, require_cluster
from tests.support.loops import running
from tests.support.stack import process_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(400)]

PLAYERS = 100
QUESTIONS_BEFORE = 3
QUESTIONS_AFTER = 4
RESTART_AFTER_S = 5.0
RESEND_EVERY_S = 0.05
QUESTION_S = 1.0
HERE = "tests/cluster/test_redis_failover.py"


class Resender:
    """Sends answers already accepted again, alternately with the same choice and with another, and
    keeps every outcome: an accepted one is a second acceptance."""

    def __init__(self, game: GrpcGame, stubs: list[Any]) -> None:
        self._game = game
        self._stubs = itertools.cycle(stubs)
        self.phase = "before"  # the test names the phase of the failure re-sends happen in
        self.outcomes: Counter[str] = Counter()
        self.second_acceptances: list[tuple[str, int, str, int]] = []  # (phase, question, player, choice)
        self.calls: Counter[str] = Counter()
        self.failed_calls: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        for round_ in itertools.count():
            if stop.is_set():
                return
            accepted = [k for k in self._game.ledger.accepted if k[0] >= self._game.question_index - 1]
            batch = accepted[(round_ * 50) % max(1, len(accepted)) :][:50]
            if batch:
                await self._send(batch, other_choice=round_ % 2 == 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESEND_EVERY_S)

    async def _send(self, keys: list[tuple[int, str]], *, other_choice: bool) -> None:
        answers = []
        for index, player in keys:
            choice = (choice_of(player, index) + (1 if other_choice else 0)) % 3
            answers.append(pb.Answer(player_token=self._game.tokens[player], question_index=index, choice=choice))
        phase = self.phase
        self.calls[phase] += 1
        try:
            reply = await next(self._stubs).BatchSubmitAnswers(pb.BatchSubmitAnswersRequest(answers=answers), timeout=5)
        except grpc.aio.AioRpcError as exc:
            self.failed_calls[exc.code().name] += 1
            return
        for (index, player), answer, outcome in zip(keys, answers, reply.outcomes, strict=True):
            self.outcomes[f"{phase}:{pb.AnswerError.Name(outcome.error).removeprefix('ANSWER_ERROR_').lower()}"] += 1
            if outcome.error == pb.ANSWER_ERROR_UNSPECIFIED:
                self.second_acceptances.append((phase, index, player, answer.choice))

    def figures(self) -> dict[str, Any]:
        return {
            "resent": sum(self.outcomes.values()),
            "resent_outcomes": dict(self.outcomes),
            "resend_calls": dict(self.calls),
            "resend_calls_failed": dict(self.failed_calls),
            "accepted_twice": len(self.second_acceptances),
        }


@contextlib.asynccontextmanager
async def _resending(game: GrpcGame, quiz_addrs: list[str]) -> AsyncIterator[Resender]:
    channels = [grpc.aio.insecure_channel(a) for a in quiz_addrs]
    resender = Resender(game, [pb_grpc.QuizServiceStub(c) for c in channels])
    try:
        async with running(resender.run):
            yield resender
    finally:
        for channel in channels:
            await channel.close()


async def _paced(game: GrpcGame, questions: int) -> None:
    """Question after question, each lasting at least QUESTION_S, so re-sends meet every one."""
    for _ in range(questions):
        started = time.monotonic()
        await game.next_question()
        await game.answer_question()
        await asyncio.sleep(max(0.0, QUESTION_S - (time.monotonic() - started)))


def _component(node: Node) -> str:
    """The scripts/infra.sh component of a Redis Cluster node: the seeds of `infra.sh env` list redis1 to
    redis6 in order."""
    ports = [int(seed.rsplit(":", 1)[1].split("/")[0]) for seed in REAL.redis_url.split(",")]
    return f"redis{ports.index(node.port) + 1}"


async def _promoted(replica: Node) -> float:
    """Waits until the replica has taken over its primary's slots; returns when (monotonic)."""
    async with contextlib.aclosing(replica.client()) as client, asyncio.timeout(60):
        while True:
            with contextlib.suppress(OSError):
                if (await _command(client, "ROLE"))[0] == b"master":
                    return time.monotonic()
            await asyncio.sleep(0.05)


async def test_sigkill_of_the_primary_holding_a_quiz_loses_nothing_and_accepts_no_answer_twice(
    tmp_path: Path,
) -> None:
    require_cluster()
    assert REAL.redis_wait_replicas >= 1, "export `scripts/infra.sh env --topology cluster`: it waits for replicas"
    redis = real_redis()
    assert isinstance(redis, RedisCluster)
    figures: dict[str, Any] = {}
    async with process_stack(tmp_path / "logs", edges=0) as stack:
        game = GrpcGame(stack.quiz_addrs, players=PLAYERS, questions=QUESTIONS_BEFORE + QUESTIONS_AFTER + 1)
        await game.setup()
        await redis.initialize()
        primary, replica = await _owner(redis, f"qz:{{{game.quiz_id}}}")
        component = _component(primary)
        restarted = False
        try:
            async with _resending(game, stack.quiz_addrs) as resender:
                await game.answer_question()
                await _paced(game, QUESTIONS_BEFORE - 1)
                await game.next_question()
                accepted_before = len(game.ledger.accepted)
                answering = asyncio.create_task(game.answer_question())
                await asyncio.sleep(0.01)  # answers in flight
                killed_at = time.monotonic()
                resender.phase = "during"
                figures["kill_s"] = await asyncio.to_thread(_infra, "stop", component, "--kill")
                figures["promoted_after_s"] = round(await _promoted(replica) - killed_at, 2)
                await asyncio.sleep(max(0.0, RESTART_AFTER_S - (time.monotonic() - killed_at)))
                figures["restart_s"] = await asyncio.to_thread(_infra, "start", component)
                restarted = True
                await answering
                resender.phase = "after"
                figures["answers_back_after_s"] = round(time.monotonic() - killed_at, 2)
                figures["accepted_across_the_failover"] = len(game.ledger.accepted) - accepted_before
                await _paced(game, QUESTIONS_AFTER)
        finally:
            if not restarted:
                await asyncio.to_thread(_infra, "start", component)
            await _hand_back(primary)
            await redis.aclose()
        stores, converged_s = await converge(
            REAL.postgres_dsn, REAL.redis_url, game.quiz_id, game.ledger, timeout_s=60, redis_mode="cluster"
        )
        await game.close()
    report = write_report(
        "cluster-3-redis-primary-killed",
        f"pytest {HERE}::test_sigkill_of_the_primary_holding_a_quiz_loses_nothing_and_accepts_no_answer_twice",
        stores,
        game.ledger,
        converged_s=converged_s,
        killed=component,
        **resender.figures(),
        **figures,
    )
    assert report["accepted_twice"] == 0, (resender.second_acceptances[:10], report)
    assert all(resender.calls[phase] > 0 for phase in ("before", "during", "after")), report
    assert report["accepted_across_the_failover"] > 0, report
    assert (stores.lost, stores.duplicated, stores.drift, stores.refused_without_row) == (0, 0, 0, 0), report
    # Clean refusals only: every error a client saw is a retryable `unavailable`.
    assert all("unavailable" in code.lower() for code in report["client_errors"]), report


async def _hand_back(primary: Node) -> None:
    """The node that was primary takes its slots back (once in sync), as the topology was found."""
    await _take_over(primary)
    await _agreed(primary)


@contextlib.asynccontextmanager
async def _link_cut(replica: Node) -> AsyncIterator[None]:
    """The replica's link to its primary cut, and kept cut: with a password the primary does not have, the
    replica's reconnections fail (Redis retries every second). Restored on the way out."""
    async with contextlib.aclosing(replica.client()) as client:
        await _command(client, "CONFIG", "SET", "masterauth", "not-the-primarys")
        try:
            await _command(client, "CLIENT", "KILL", "TYPE", "master")
            assert (await client.info("replication"))["master_link_status"] == "down"
            yield
        finally:
            await _command(client, "CONFIG", "SET", "masterauth", "")


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["waiting-for-replicas", "without-waiting"])
async def test_a_failover_that_loses_the_primarys_last_writes_accepts_no_answer_twice(
    tmp_path: Path, wait_replicas: int
) -> None:
    require_cluster()
    redis = real_redis()
    assert isinstance(redis, RedisCluster)
    figures: dict[str, Any] = {"wait_replicas": wait_replicas}
    extra = {"QUIZMESH_REDIS_WAIT_REPLICAS": str(wait_replicas)}
    async with process_stack(tmp_path / "logs", edges=0, extra_env=extra) as stack:
        game = GrpcGame(stack.quiz_addrs, players=PLAYERS, questions=3)
        await game.setup()
        await redis.initialize()
        primary, replica = await _owner(redis, f"qz:{{{game.quiz_id}}}")
        try:
            async with _resending(game, stack.quiz_addrs) as resender:
                await game.answer_question()
                await game.next_question()
                async with _link_cut(replica):
                    accepted_before = len(game.ledger.accepted)
                    resender.phase = "during"
                    await game.answer_question(rounds=1)
                    figures["accepted_on_the_primary_alone"] = len(game.ledger.accepted) - accepted_before
                    async with contextlib.aclosing(replica.client()) as client:
                        assert (await client.info("replication"))["master_link_status"] == "down"
                        await _command(client, "CLUSTER", "FAILOVER", "TAKEOVER")
                    await _promoted(replica)
                await _agreed(replica)
                await game.answer_question()
                resender.phase = "after"
                started = time.monotonic()
                await asyncio.sleep(QUESTION_S)
                await game.next_question()
                await game.answer_question()
                await asyncio.sleep(max(0.0, QUESTION_S - (time.monotonic() - started)))
        finally:
            await _hand_back(primary)
            await redis.aclose()
        stores, _ = await converge(
            REAL.postgres_dsn, REAL.redis_url, game.quiz_id, game.ledger, timeout_s=20, redis_mode="cluster"
        )
        await game.close()
    variant = "waiting-for-replicas" if wait_replicas else "without-waiting"
    report = write_report(
        f"cluster-3b-lossy-failover-{variant}",
        f"pytest '{HERE}::test_a_failover_that_loses_the_primarys_last_writes_accepts_no_answer_twice[{variant}]'",
        stores,
        game.ledger,
        **resender.figures(),
        **figures,
    )
    if wait_replicas:
        assert report["accepted_on_the_primary_alone"] == 0, report
        assert report["accepted_twice"] == 0, (resender.second_acceptances[:10], report)
        assert (stores.lost, stores.duplicated, stores.drift, stores.refused_without_row) == (0, 0, 0, 0), report
    else:
        # What the replicas' confirmation prevents: answers accepted on the primary alone, forgotten by
        # the promoted replica, and accepted again when re-sent.
        assert report["accepted_on_the_primary_alone"] > 0, report
        assert report["accepted_twice"] > 0, report
