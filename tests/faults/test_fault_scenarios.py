"""The nine fault scenarios of issue 6 and those added since (8b), each ending with lost = 0, duplicated = 0, drift = 0.

Each runs its own process stack (separate quiz_svc, leaderboard_svc, persistence_svc and, where
players use WebSockets, edge processes) on the private infrastructure of conftest.py, plays one quiz
under load while the fault happens, then compares the ledger with PostgreSQL and Redis and writes
its figures to .infra/reliability/<scenario>.json (docs/reliability.md holds the last run's table).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc
from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as ps_grpc
from tests.faults import redis_loss
from tests.faults.harness import GrpcGame, Ledger, converge, write_report
from tests.faults.pg_proxy import CommitHoldingProxy, InsertHoldingProxy
from tests.faults.redis_loss import redis_lost_while_persistence_lags
from tests.support.client import EdgeClient
from tests.support.private_infra import PrivateInfra
from tests.support.stack import Stack, process_stack, stop_process, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]

PLAYERS = int(os.environ.get("QUIZMESH_FAULT_PLAYERS", "250"))
QUESTIONS = 12
KAFKA_DOWN_S = float(os.environ.get("QUIZMESH_FAULT_KAFKA_DOWN_S", "60"))


def command(test: str) -> str:
    return f"pytest tests/faults/test_fault_scenarios.py::{test}"


@contextlib.asynccontextmanager
async def stack_on(infra: PrivateInfra, tmp_path: Path, **counts: Any) -> AsyncIterator[Stack]:
    counts.setdefault("edges", 0)
    extra = {**infra.service_env, **counts.pop("extra_env", {})}
    async with process_stack(tmp_path / "logs", extra_env=extra, **counts) as stack:
        yield stack


async def playing(stack: Stack, players: int = PLAYERS, questions: int = QUESTIONS) -> GrpcGame:
    game = GrpcGame(stack.quiz_addrs, players=players, questions=questions)
    await game.setup()
    return game


async def finish(
    infra: PrivateInfra, scenario: str, test: str, game: GrpcGame | None, ledger: Ledger, quiz_id: str, **extra: Any
) -> dict[str, Any]:
    figures, converged_s = await converge(infra.postgres_dsn, infra.redis_url, quiz_id, ledger, timeout_s=60)
    if game is not None:
        await game.close()
    report = write_report(scenario, command(test), figures, ledger, converged_s=converged_s, **extra)
    assert figures.accepted > 0, report
    assert (figures.lost, figures.refused_without_row, figures.duplicated, figures.drift) == (0, 0, 0, 0), report
    return report


async def restart(stack: Stack, service: str, index: int = 0) -> float:
    """Starts the service's process again and returns the seconds until every service is ready."""
    started = time.monotonic()
    stack.restart(service, index)
    assert stack.log_dir is not None
    await wait_ready(stack, stack.log_dir)
    return round(time.monotonic() - started, 2)


# --- 1 ---


async def test_sigkill_leaderboard_with_answers_in_flight(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """leaderboard_svc is SIGKILLed mid-quiz and stays down while a third of the answers arrive."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack)
        figures: dict[str, Any] = {}

        async def fault(index: int) -> None:
            if index == QUESTIONS // 3:
                await asyncio.sleep(0.05)
                stop_process(stack.processes["leaderboard-svc"][0], kill=True)
                figures["accepted_before_kill"] = len(game.ledger.accepted)
            elif index == 2 * QUESTIONS // 3:
                figures["backlog_at_restart"] = len(game.ledger.accepted) - figures["accepted_before_kill"]
                figures["recovery_s"] = await restart(stack, "leaderboard-svc")

        await game.play(fault)
        await finish(
            private_infra,
            "1-sigkill-leaderboard",
            "test_sigkill_leaderboard_with_answers_in_flight",
            game,
            game.ledger,
            game.quiz_id,
            **figures,
        )


# --- 2 ---


async def test_sigkill_persistence_between_db_commit_and_offset_commit(
    private_infra: PrivateInfra, tmp_path: Path
) -> None:
    """persistence_svc is stopped while answers pile up in Kafka, restarted behind a PostgreSQL proxy
    that holds back the reply to its first batch's COMMIT (the rows are committed; the offsets cannot
    be yet), SIGKILLed there, and restarted straight on PostgreSQL."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack)
        figures: dict[str, Any] = {}
        normal_env = stack.envs["persistence-svc"][0]
        postgres = urlsplit(private_infra.postgres_dsn)
        assert postgres.hostname is not None and postgres.port is not None
        proxy = CommitHoldingProxy(postgres.hostname, postgres.port)
        proxied_dsn = await proxy.proxied_dsn(private_infra.postgres_dsn)

        async def fault(index: int) -> None:
            if index == 3:
                await asyncio.to_thread(stop_process, stack.processes["persistence-svc"][0])
            elif index == 6:
                stack.envs["persistence-svc"][0] = {**normal_env, "QUIZMESH_POSTGRES_DSN": proxied_dsn}
                stack.restart("persistence-svc")
                figures["redelivered_rows"] = await asyncio.wait_for(proxy.held, 60)
                stop_process(stack.processes["persistence-svc"][0], kill=True)
                await proxy.close()
                stack.envs["persistence-svc"][0] = normal_env
                figures["recovery_s"] = await restart(stack, "persistence-svc")

        try:
            await game.play(fault)
        finally:
            await proxy.close()
        report = await finish(
            private_infra,
            "2-sigkill-persistence-after-db-commit",
            "test_sigkill_persistence_between_db_commit_and_offset_commit",
            game,
            game.ledger,
            game.quiz_id,
            **figures,
        )
        assert report["redelivered_rows"] > 0


# --- 3 ---


async def test_second_consumer_joins_and_leaves_mid_stream(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """A second leaderboard_svc and persistence_svc join their groups mid-quiz and leave again."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack)
        figures: dict[str, Any] = {}

        async def fault(index: int) -> None:
            assert stack.log_dir is not None
            if index == 3:
                started = time.monotonic()
                stack.add("leaderboard-svc")
                stack.add("persistence-svc")
                await wait_ready(stack, stack.log_dir)
                figures["join_s"] = round(time.monotonic() - started, 2)
            elif index == 8:
                await asyncio.gather(
                    asyncio.to_thread(stop_process, stack.processes["leaderboard-svc"][1]),
                    asyncio.to_thread(stop_process, stack.processes["persistence-svc"][1]),
                )

        await game.play(fault)
        assert stack.log_dir is not None
        logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
        figures["commits_lost_to_rebalance"] = logs.count("offset commit lost to a rebalance")
        await finish(
            private_infra,
            "3-rebalance",
            "test_second_consumer_joins_and_leaves_mid_stream",
            game,
            game.ledger,
            game.quiz_id,
            **figures,
        )


# --- 4 ---


async def test_kafka_broker_restarted_under_load(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """The broker is restarted twice mid-quiz, SIGTERM (clean) then SIGKILL, while players keep
    answering question after question."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack)
        figures: dict[str, Any] = {}

        async def restart_kafka(kind: str) -> None:
            stop = ("stop", "kafka") if kind == "sigterm" else ("stop", "kafka", "--kill")
            figures[f"{kind}_stop_s"] = await asyncio.to_thread(private_infra.infra, *stop)
            figures[f"{kind}_start_s"] = await asyncio.to_thread(private_infra.infra, "start", "kafka")

        await game.answer_question()
        for kind in ("sigterm", "sigkill"):
            restarting = asyncio.create_task(restart_kafka(kind))
            while not restarting.done() and game.question_index < QUESTIONS - 1:
                await game.next_question()
                await game.answer_question()  # retries while the broker is away
            await restarting
        while game.question_index < QUESTIONS - 1:
            await game.next_question()
            await game.answer_question()
        assert stack.log_dir is not None
        logs = "".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
        # Stuck members the consumers' watchdog replaced by the end of play (quizmesh.eventbus.kafka).
        figures["consumers_replaced"] = logs.count("replaced the Kafka consumer of group")
        report = await finish(
            private_infra, "4-kafka-restart", "test_kafka_broker_restarted_under_load",
            game, game.ledger, game.quiz_id, **figures,
        )  # fmt: skip
        assert report["client_errors"].get("answer:unavailable", 0) > 0, report  # the load met the outage


# --- 5 ---


async def test_kafka_down_for_a_minute(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """The broker is down for KAFKA_DOWN_S while players keep answering: every call returns a
    retryable error within its deadline, and every answer accepted before or after is kept."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack, players=100, questions=5)
        figures: dict[str, Any] = {}
        for _ in range(2):
            await game.answer_question()
            await game.next_question()
        # The question is open before the broker goes: opening it needs no Kafka, answering does.
        await asyncio.to_thread(private_infra.infra, "stop", "kafka")
        calls_before = len(game.ledger.call_seconds)
        answering = asyncio.create_task(game.answer_question(give_up_after_s=KAFKA_DOWN_S + 60))
        await asyncio.sleep(KAFKA_DOWN_S)
        outage_calls = game.ledger.call_seconds[calls_before:]
        figures["outage_calls"] = len(outage_calls)
        figures["outage_max_call_s"] = round(max(outage_calls, default=0.0), 3)
        figures["restart_s"] = await asyncio.to_thread(private_infra.infra, "start", "kafka")
        await answering
        for _ in range(2):
            await game.next_question()
            await game.answer_question()
        report = await finish(
            private_infra, "5-kafka-down", "test_kafka_down_for_a_minute",
            game, game.ledger, game.quiz_id, down_s=KAFKA_DOWN_S, deadline_s=game.deadline_s, **figures,
        )  # fmt: skip
        assert report["outage_calls"] > 0, report
        assert report["max_call_s"] <= game.deadline_s, report
        # Clean failures only: answers refused as unavailable, never a call cut off by its deadline.
        assert "call:DEADLINE_EXCEEDED" not in report["client_errors"], report
        assert report["client_errors"].get("answer:unavailable", 0) > 0, report


# --- 6 ---


async def flush_redis(infra: PrivateInfra) -> None:
    redis = Redis.from_url(infra.redis_url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


async def read_leaderboard(stack: Stack, quiz_id: str) -> None:
    async with grpc.aio.insecure_channel(stack.leaderboard_addrs[0]) as channel:
        await lb_grpc.LeaderboardServiceStub(channel).GetLeaderboard(
            lb_pb.GetLeaderboardRequest(quiz_id=quiz_id, top_n=10), timeout=5
        )


async def test_redis_data_lost_mid_quiz_leaderboard_rebuilt(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """Redis loses everything (FLUSHALL) while answers flow: leaderboard_svc notices the ranking is
    gone (on the next event, or on the next read) and rebuilds it from PostgreSQL."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack, questions=5)
        figures: dict[str, Any] = {}

        async def fault(index: int) -> None:
            if index == 4:
                await asyncio.sleep(0.05)
                await flush_redis(private_infra)
                figures["accepted_before_loss"] = len(game.ledger.accepted)

        with contextlib.suppress(Exception):
            # quiz_svc's own live state went with Redis: later answers may be refused; only what
            # clients saw accepted is in the ledger, and all of it must survive.
            await game.play(fault)
        started = time.monotonic()
        await read_leaderboard(stack, game.quiz_id)
        report = await finish(
            private_infra,
            "6-redis-data-lost",
            "test_redis_data_lost_mid_quiz_leaderboard_rebuilt",
            game,
            game.ledger,
            game.quiz_id,
            **figures,
        )
        report["rebuild_s"] = round(time.monotonic() - started, 2)


async def test_redis_data_lost_mid_quiz_game_continues(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """quiz_svc rebuilds the quiz's live state from PostgreSQL (via PersistenceService, once it has
    stored what Kafka holds) and the game goes on. The loss comes right after the answers were
    accepted, whatever persistence_svc has stored by then (6c makes sure it has stored none of them)."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack, players=50, questions=3)
        await game.answer_question()
        await flush_redis(private_infra)
        for _ in range(2):
            await game.next_question()
            await game.answer_question(give_up_after_s=30)
        await finish(
            private_infra, "6b-redis-data-lost-game-continues", "test_redis_data_lost_mid_quiz_game_continues",
            game, game.ledger, game.quiz_id,
        )  # fmt: skip


async def test_redis_data_lost_while_persistence_lags(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """Issue 12's scenario 7 on one node (tests/faults/redis_loss.py): Redis is flushed while
    persistence_svc's sink, stalled on PostgreSQL, holds none of the last question's answers; the
    rebuilds of the quiz's live state and of its ranking wait until it has stored what Kafka holds, so
    later totals count them."""
    postgres = urlsplit(private_infra.postgres_dsn)
    assert postgres.hostname is not None and postgres.port is not None
    sinks = InsertHoldingProxy(postgres.hostname, postgres.port)
    stalled = {"QUIZMESH_POSTGRES_DSN": await sinks.proxied_dsn(private_infra.postgres_dsn)}
    try:
        async with stack_on(private_infra, tmp_path, process_env={"persistence-svc": [stalled]}) as stack:
            game = await playing(stack, players=redis_loss.PLAYERS, questions=redis_loss.QUESTIONS)
            figures = await redis_lost_while_persistence_lags(
                game, sinks, private_infra.postgres_dsn, private_infra.redis_url, "single"
            )
            report = await finish(
                private_infra, "6c-redis-lost-while-persistence-lags", "test_redis_data_lost_while_persistence_lags",
                game, game.ledger, game.quiz_id, **figures,
            )  # fmt: skip
    finally:
        sinks.release()
        await sinks.close()
    assert report["answers_stored_at_loss"] < report["answers_accepted_at_loss"], report
    assert report["players_shown_a_last_total"] == redis_loss.PLAYERS, report
    assert report["players_with_wrong_totals"] == 0, report


# --- 7 ---


async def test_postgres_restarted_under_load(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """PostgreSQL is stopped (fast shutdown) with a question open, players answer it while the
    database is down (Kafka holds the answers), and it is started again: persistence_svc stores them."""
    async with stack_on(private_infra, tmp_path) as stack:
        game = await playing(stack)
        figures: dict[str, Any] = {}
        for _ in range(4):
            await game.answer_question()
            await game.next_question()
        # Host actions write the game state to PostgreSQL, so the question is opened before it goes.
        figures["stop_s"] = await asyncio.to_thread(private_infra.infra, "stop", "postgres")
        before = len(game.ledger.accepted)
        await game.answer_question()
        figures["accepted_while_down"] = len(game.ledger.accepted) - before
        figures["start_s"] = await asyncio.to_thread(private_infra.infra, "start", "postgres")
        for _ in range(QUESTIONS - 5):
            await game.next_question()
            await game.answer_question()
        report = await finish(
            private_infra, "7-postgres-restart", "test_postgres_restarted_under_load",
            game, game.ledger, game.quiz_id, **figures,
        )  # fmt: skip
        assert report["accepted_while_down"] == PLAYERS, report


# --- 8 ---

WS_PLAYERS = int(os.environ.get("QUIZMESH_FAULT_WS_PLAYERS", "200"))


class WsPlayers:
    """Players over real WebSockets through one edge, each with its credential for resuming."""

    def __init__(self, session: aiohttp.ClientSession, url: str, quiz_id: str) -> None:
        self.session, self.url, self.quiz_id = session, url, quiz_id
        self.clients: list[EdgeClient] = []
        self.tokens: list[str] = []
        self.ids: list[str] = []
        self.ledger = Ledger()
        self.resume_seconds: list[float] = []  # per player, from the start of reconnect_all until resumed

    async def join(self, count: int) -> None:
        gate = asyncio.Semaphore(20)

        async def one(n: int) -> tuple[EdgeClient, dict[str, Any]]:
            async with gate:
                client = await EdgeClient.connect(self.session, self.url)
                joined = await client.request("join_quiz", quiz_id=self.quiz_id, nickname=f"ws{n}")
                assert joined["type"] == "joined", joined
                return client, joined

        for client, joined in await asyncio.gather(*(one(n) for n in range(count))):
            self.clients.append(client)
            self.tokens.append(joined["player_token"])
            self.ids.append(joined["player"]["player_id"])

    async def reconnect_all(self, at_once: int = 50) -> int:
        """Every player opens a new socket and resumes with its credential, `at_once` of them at a time;
        returns how many resumed."""
        gate = asyncio.Semaphore(at_once)
        started = time.monotonic()

        async def one(n: int) -> bool:
            async with gate:
                for _ in range(100):
                    try:
                        client = await EdgeClient.connect(self.session, self.url)
                    except (aiohttp.ClientError, OSError):
                        await asyncio.sleep(0.1)
                        continue
                    resumed = await client.request("resume", player_token=self.tokens[n])
                    self.clients[n] = client
                    if resumed["type"] == "resumed":
                        self.tokens[n] = resumed["player_token"]
                        self.resume_seconds.append(time.monotonic() - started)
                        return True
                    self.ledger.errors[f"resume:{resumed.get('code')}"] += 1
                    return False
                return False

        return sum(await asyncio.gather(*(one(n) for n in range(len(self.clients)))))

    async def answer(self, index: int, spread_s: float = 0.0) -> None:
        """Every player answers question `index`, retrying what is retryable; with `spread_s`, the players
        start evenly over that many seconds instead of all at once."""

        async def one(n: int) -> None:
            await asyncio.sleep(spread_s * n / len(self.clients))
            for _ in range(50):
                started = time.monotonic()
                reply = await self.clients[n].request("submit_answer", question_index=index, choice=(n + index) % 3)
                self.ledger.call_seconds.append(time.monotonic() - started)
                if reply["type"] == "answer_result":
                    self.ledger.accepted[(index, self.ids[n])] = reply["total_score"]
                    return
                self.ledger.errors[f"answer:{reply.get('code')}"] += 1
                if reply.get("code") == "already_answered":
                    self.ledger.refused_as_answered.add((index, self.ids[n]))
                if not reply.get("retryable"):
                    return
                await asyncio.sleep(0.2)

        await asyncio.gather(*(one(n) for n in range(len(self.clients))))

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@contextlib.asynccontextmanager
async def ws_game(
    infra: PrivateInfra, tmp_path: Path, *, questions: int, **counts: Any
) -> AsyncIterator[tuple[Stack, GrpcGame, WsPlayers]]:
    """A stack with one edge, a quiz hosted over gRPC, and WS_PLAYERS players joined through the edge who
    have answered its first question."""
    # limit=0: aiohttp's default pool of 100 connections would hold the 101st socket back forever.
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        stack_on(infra, tmp_path, edges=1, **counts) as stack,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        host = GrpcGame(stack.quiz_addrs, players=0, questions=questions)
        await host.setup()
        players = WsPlayers(session, stack.ws_url(), host.quiz_id)
        await players.join(WS_PLAYERS)
        # setup() started the quiz before anyone joined over WebSockets; late joining is allowed.
        await players.answer(0)
        yield stack, host, players


async def answer_once_more_and_finish(
    infra: PrivateInfra, scenario: str, test: str, host: GrpcGame, players: WsPlayers, **extra: Any
) -> dict[str, Any]:
    """The host opens the next question, every player answers it, and the stores are checked against the
    players' ledger."""
    await host.next_question()
    await players.answer(host.question_index)
    await players.close()
    return await finish(infra, scenario, test, host, players.ledger, host.quiz_id, players=WS_PLAYERS, **extra)


async def test_reconnect_storm_every_player_resumes(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """The edge holding every socket is SIGKILLed and restarted; all players reconnect at once,
    resume with their credentials and keep answering."""
    async with ws_game(private_infra, tmp_path, questions=4) as (stack, host, players):
        await host.next_question()
        await players.answer(1)
        started = time.monotonic()
        stop_process(stack.processes["edge"][0], kill=True)
        stack.restart("edge")
        resumed = await players.reconnect_all()
        storm_s = round(time.monotonic() - started, 2)
        report = await answer_once_more_and_finish(
            private_infra,
            "8-reconnect-storm",
            "test_reconnect_storm_every_player_resumes",
            host,
            players,
            resumed=resumed,
            reconnect_all_s=storm_s,
        )
        assert report["resumed"] == WS_PLAYERS, report
        assert report["accepted"] == 3 * WS_PLAYERS, report


# --- 8b ---


async def test_sigterm_quiz_svc_behind_an_edge_mid_question(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """The edge sends answer batches on StreamAnswers calls to two quiz_svc replicas; one is sent SIGTERM
    while players answer. It answers the batches it read and ends its streams; the edge sends the rest to
    the other replica. Every player's answer is accepted once, none lost, none refused as internal."""
    async with ws_game(private_infra, tmp_path, questions=3, quiz_services=2) as (stack, host, players):
        await host.next_question()
        answering = asyncio.create_task(players.answer(1, spread_s=3.0))
        await asyncio.sleep(1.0)
        host.down.add(0)
        started = time.monotonic()
        exit_code = await asyncio.to_thread(stop_process, stack.processes["quiz-svc"][0])
        stop_s = round(time.monotonic() - started, 2)
        await answering
        report = await answer_once_more_and_finish(
            private_infra,
            "8b-sigterm-quiz-svc-behind-an-edge",
            "test_sigterm_quiz_svc_behind_an_edge_mid_question",
            host,
            players,
            exit_code=exit_code,
            stop_s=stop_s,
        )
        assert exit_code == 0, report
        assert report["accepted"] == 3 * WS_PLAYERS, report
        assert not players.ledger.errors["answer:internal"], report


# --- 9 ---


async def _serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class Readers:
    """Keeps GetLeaderboard and ListAnswers calls in flight on chosen replicas; counts failed calls
    that began before the replica was told to stop."""

    def __init__(self, stack: Stack, quiz_id: str, ledger: Ledger) -> None:
        self.stack, self.quiz_id, self.ledger = stack, quiz_id, ledger
        self.down: dict[str, set[int]] = {"leaderboard": set(), "persistence": set()}
        self.terminated_at: float | None = None
        self.calls = 0

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._loop(kind, stop) for kind in ("leaderboard", "persistence") for _ in range(4)))

    async def _loop(self, kind: str, stop: asyncio.Event) -> None:
        addresses = self.stack.leaderboard_addrs if kind == "leaderboard" else self.stack.persistence_addrs
        channels = [grpc.aio.insecure_channel(a) for a in addresses]
        try:
            while not stop.is_set():
                index = next(i for i in range(len(addresses)) if i not in self.down[kind])
                started = time.monotonic()
                try:
                    if kind == "leaderboard":
                        await lb_grpc.LeaderboardServiceStub(channels[index]).GetLeaderboard(
                            lb_pb.GetLeaderboardRequest(quiz_id=self.quiz_id, top_n=100), timeout=5
                        )
                    else:
                        await ps_grpc.PersistenceServiceStub(channels[index]).ListAnswers(
                            ps_pb.ListAnswersRequest(quiz_id=self.quiz_id, page_size=500), timeout=5
                        )
                    self.calls += 1
                except grpc.aio.AioRpcError as exc:
                    self.ledger.errors[f"{kind}:{exc.code().name}"] += 1
                    if self.terminated_at is not None and started < self.terminated_at:
                        self.ledger.inflight_failures += 1
                await asyncio.sleep(0.01)
        finally:
            for channel in channels:
                await channel.close()


async def test_sigterm_each_service_under_load(private_infra: PrivateInfra, tmp_path: Path) -> None:
    """Two replicas of each gRPC service; replica 0 of each is taken out of rotation and sent SIGTERM
    in turn, under load. Calls already in flight must all succeed within the grace period."""
    async with stack_on(private_infra, tmp_path, quiz_services=2, leaderboards=2, persistences=2) as stack:
        game = await playing(stack)
        readers = Readers(stack, game.quiz_id, game.ledger)
        stop_reading = asyncio.Event()
        reading = asyncio.create_task(readers.run(stop_reading))
        figures: dict[str, Any] = {}
        plan = {3: "quiz-svc", 6: "leaderboard-svc", 9: "persistence-svc"}

        async def fault(index: int) -> None:
            service = plan.get(index)
            if service is None:
                return
            await asyncio.sleep(0.1)  # calls in flight
            if service == "quiz-svc":
                game.down.add(0)
            else:
                readers.down[service.removesuffix("-svc")].add(0)
            game.terminated_at = readers.terminated_at = time.monotonic()
            started = time.monotonic()
            code = await asyncio.to_thread(stop_process, stack.processes[service][0])
            figures[f"{service}_exit_code"] = code
            figures[f"{service}_stop_s"] = round(time.monotonic() - started, 2)

        await game.play(fault)
        stop_reading.set()
        await reading
        await finish(
            private_infra,
            "9-sigterm-each-service",
            "test_sigterm_each_service_under_load",
            game,
            game.ledger,
            game.quiz_id,
            reader_calls=readers.calls,
            **figures,
        )
        assert game.ledger.inflight_failures == 0
        assert all(figures[f"{s}_exit_code"] == 0 for s in plan.values()), figures
        assert signal.SIGTERM  # the signal stop_process sends without kill=True
