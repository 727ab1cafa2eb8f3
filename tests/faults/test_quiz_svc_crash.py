"""quiz_svc SIGKILLed at precise steps (issue 18), on one and on two replicas behind one edge.

Players and the host speak WebSocket to one edge, which reaches every quiz_svc replica through one
round_robin target. Each quiz_svc reaches Redis through its own FreezingProxy: armed with a script's
SHA, it stops the process exactly at a step (a call held back, or a reply held back), and the test
SIGKILLs it there, then starts it again. The figures (accepted, lost, refused without row, duplicated,
drift, errors seen by clients, longest call, time to recover) go to .infra/reliability/<scenario>.json;
docs/reliability.md holds the last run's table.

Required of every scenario: nothing lost, no already_answered without a stored answer, no duplicate,
no drift between the leaderboard and PostgreSQL; each player sees each question open once and close
once with its results; and an answer's points do not depend on the outage: it is scored from when the
edge first received it, before the retry that got it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp
import asyncpg
import pytest

from tests.faults.freezing_proxy import FreezingProxy, Hold, Link, Trigger, script_sha
from tests.faults.harness import Ledger, converge, write_report
from tests.support.client import EdgeClient, Message
from tests.support.private_infra import PrivateInfra
from tests.support.stack import Stack, process_stack, stop_process, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(240)]

PLAYERS = int(os.environ.get("QUIZMESH_FAULT_CRASH_PLAYERS", "60"))
QUESTIONS = 3
FAULT_QUESTION = 1  # question 0 plays normally, 1 meets the fault, 2 shows the game goes on
GIVE_UP_S = 60.0
RECORD = script_sha("record_verdicts.lua")
TRANSITION = script_sha("replace_state.lua")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class CrashStack:
    stack: Stack
    proxies: list[FreezingProxy]
    infra: PrivateInfra
    replicas: int

    def arm(self, sha: bytes, hold: Hold, *, once: bool) -> Trigger:
        """Arms every replica's proxy with one trigger."""
        trigger = Trigger(sha, hold, once=once)
        for proxy in self.proxies:
            proxy.arm(trigger)
        return trigger

    async def crash(
        self, frozen: Link, restart_after_s: float, recovered: Callable[[], Awaitable[float]]
    ) -> dict[str, Any]:
        """SIGKILLs the replica frozen at its step and starts it again restart_after_s later; meanwhile
        `recovered` (returning when, monotonic) waits for the players to have what the crash held up.
        Returns the figures: which replica, the restart's delay and duration, and the recovery time."""
        stop_process(self.stack.processes["quiz-svc"][frozen.process], kill=True)
        killed = time.monotonic()
        recovering = asyncio.ensure_future(recovered())
        await asyncio.sleep(restart_after_s)
        started = time.monotonic()
        self.stack.restart("quiz-svc", frozen.process)
        assert self.stack.log_dir is not None
        await wait_ready(self.stack, self.stack.log_dir)
        restart_s = round(time.monotonic() - started, 2)
        return {
            "killed_replica": frozen.process,
            "restart_after_s": restart_after_s,
            "restart_s": restart_s,
            "recovered_s": round(await recovering - killed, 2),
        }


@pytest.fixture(scope="module", params=[1, 2], ids=["1-replica", "2-replicas"])
async def crashing(
    request: pytest.FixtureRequest, private_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CrashStack]:
    replicas: int = request.param
    redis = urlparse(private_infra.redis_url)
    assert redis.hostname is not None and redis.port is not None
    proxies = [FreezingProxy(n, redis.hostname, redis.port) for n in range(replicas)]
    ports = [await proxy.start() for proxy in proxies]
    logs = tmp_path_factory.mktemp(f"quiz-svc-crash-{replicas}") / "logs"
    try:
        async with process_stack(
            logs,
            quiz_services=replicas,
            extra_env=private_infra.service_env,
            process_env={"quiz-svc": [{"QUIZMESH_REDIS_URL": f"redis://127.0.0.1:{port}/0"} for port in ports]},
        ) as stack:
            yield CrashStack(stack, proxies, private_infra, replicas)
    finally:
        for proxy in proxies:
            await proxy.close()


@dataclass
class Seat:
    client: EdgeClient
    player_id: str
    sends: dict[int, list[int]] = field(default_factory=dict)  # question -> ms of every attempt


class Table:
    """One quiz played over WebSockets through the edge: a host and PLAYERS players, each keeping the
    ledger of what it was told and every state pushed to it."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.ledger = Ledger()
        self.seats: list[Seat] = []
        self.host: EdgeClient | None = None
        self.quiz_id = ""
        self.question = -1

    async def setup(self, time_limits: list[int]) -> None:
        self.host = await EdgeClient.connect(self.session, self.url)
        questions = [
            {"text": f"Question {i}?", "choices": ["right", "wrong", "also wrong"], "correct_choices": [0],
             "time_limit_seconds": limit}
            for i, limit in enumerate(time_limits)
        ]  # fmt: skip
        created = await self.host.request("create_quiz", title="crash", questions=questions)
        assert created["type"] == "quiz_created", created
        self.quiz_id = created["quiz"]["quiz_id"]
        hosting = await self.host.request("host_quiz", quiz_id=self.quiz_id, host_token=created["host_token"])
        assert hosting["type"] == "hosting", hosting
        gate = asyncio.Semaphore(20)

        async def join(n: int) -> Seat:
            async with gate:
                client = await EdgeClient.connect(self.session, self.url)
                joined = await client.request("join_quiz", quiz_id=self.quiz_id, nickname=f"crash{n}")
                assert joined["type"] == "joined", joined
                return Seat(client, joined["player"]["player_id"])

        self.seats = list(await asyncio.gather(*(join(n) for n in range(PLAYERS))))
        await self.act("start_quiz")

    async def act(self, action: str, **fields: Any) -> Message:
        """A host action, repeated while it meets a retryable error (it names its question, so a repeat
        of one that took effect succeeds)."""
        assert self.host is not None
        give_up = time.monotonic() + GIVE_UP_S
        while True:
            started = time.monotonic()
            reply = await self.host.request(action, **fields)
            self.ledger.call_seconds.append(time.monotonic() - started)
            if reply["type"] == "host_ack":
                self.question = reply["state"]["question_index"]
                return reply
            self.ledger.errors[f"host:{reply.get('code')}"] += 1
            assert reply.get("retryable") and time.monotonic() < give_up, reply
            await asyncio.sleep(0.2)

    async def next_question(self) -> None:
        await self.act("close_question", question_index=self.question)
        await self.act("next_question", question_index=self.question + 1)

    async def answer(self) -> float:
        """Every player answers the open question, retrying while told to; returns when the last was
        accepted (monotonic)."""
        index = self.question
        finished: list[float] = []

        async def one(n: int, seat: Seat) -> None:
            attempts = seat.sends.setdefault(index, [])
            give_up = time.monotonic() + GIVE_UP_S
            while time.monotonic() < give_up:
                attempts.append(now_ms())
                started = time.monotonic()
                reply = await seat.client.request("submit_answer", question_index=index, choice=(n + index) % 3)
                self.ledger.call_seconds.append(time.monotonic() - started)
                if reply["type"] == "answer_result":
                    self.ledger.accepted[(index, seat.player_id)] = reply["total_score"]
                    finished.append(time.monotonic())
                    return
                self.ledger.errors[f"answer:{reply.get('code')}"] += 1
                if reply.get("code") == "already_answered":
                    self.ledger.refused_as_answered.add((index, seat.player_id))
                if not reply.get("retryable"):
                    return
                await asyncio.sleep(0.2)
            raise TimeoutError(f"an answer to question {index} was neither accepted nor refused in {GIVE_UP_S} s")

        await asyncio.gather(*(one(n, seat) for n, seat in enumerate(self.seats)))
        return max(finished, default=time.monotonic())

    def pushed_states(self, seat: Seat) -> list[Message]:
        return [m for m in seat.client.pushed if m.get("type") == "quiz_state"]

    async def everyone_saw(self, phase: str, index: int) -> float:
        """Waits until every player was pushed the question in that phase; returns when (monotonic)."""
        for seat in self.seats:
            await seat.client.wait_for(
                lambda m: (
                    m.get("type") == "quiz_state"
                    and m["state"]["phase"] == phase
                    and m["state"]["question_index"] == index
                ),
                timeout_s=GIVE_UP_S,
            )
        return time.monotonic()

    def check_pushes(self) -> None:
        """Each question opened and closed once for every player, the close with its results."""
        for seat in self.seats:
            states = self.pushed_states(seat)
            for index in range(QUESTIONS):
                seen = [m for m in states if m["state"]["question_index"] == index]
                opens = [m for m in seen if m["state"]["phase"] == "question_open"]
                closes = [m for m in seen if m["state"]["phase"] == "question_closed"]
                assert len(opens) == 1, (seat.player_id, index, opens)
                assert len(closes) == 1 and closes[0]["results"]["question_index"] == index, (seat.player_id, closes)

    async def check_points(self, postgres_dsn: str) -> dict[str, Any]:
        """Every stored answer was scored from when the edge first received it: after its first attempt
        was sent, and before the retry that got it accepted (or told it was). Returns figures."""
        connection = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT question_index, player_id, answered_at FROM answers WHERE quiz_id = $1", self.quiz_id
            )
        finally:
            await connection.close()
        sends = {(index, seat.player_id): attempts for seat in self.seats for index, attempts in seat.sends.items()}
        retried, longest_wait_ms, latest_receipt_ms = 0, 0, 0
        for row in rows:
            attempts = sends[(row["question_index"], row["player_id"])]
            received = int(row["answered_at"].timestamp() * 1000)
            where = (row["player_id"], row["question_index"], attempts, received)
            assert attempts[0] <= received, where
            latest_receipt_ms = max(latest_receipt_ms, received - attempts[0])
            if len(attempts) > 1:
                assert received < attempts[-1], where  # the outage cost it nothing
                retried += 1
                longest_wait_ms = max(longest_wait_ms, attempts[-1] - attempts[0])
        return {
            "answers_retried": retried,
            "longest_answer_wait_s": round(longest_wait_ms / 1000, 2),
            "receipt_after_first_send_max_ms": latest_receipt_ms,
        }

    async def close(self) -> None:
        for client in [self.host, *(s.client for s in self.seats)]:
            if client is not None:
                await client.close()


@contextlib.asynccontextmanager
async def table(crashing: CrashStack, time_limits: list[int] | None = None) -> AsyncIterator[Table]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        played = Table(session, crashing.stack.ws_url())
        await played.setup(time_limits or [120] * QUESTIONS)
        try:
            yield played
        finally:
            await played.close()


async def finish(
    crashing: CrashStack, played: Table, scenario: str, request: pytest.FixtureRequest, **figures: Any
) -> dict[str, Any]:
    """Plays the last question, ends the quiz, and checks and reports the figures."""
    while played.question < QUESTIONS - 1:
        await played.next_question()
        await played.answer()
    await played.act("close_question", question_index=played.question)
    await played.act("end_quiz")
    played.check_pushes()
    stored, converged_s = await converge(
        crashing.infra.postgres_dsn, crashing.infra.redis_url, played.quiz_id, played.ledger, timeout_s=60
    )
    figures.update(await played.check_points(crashing.infra.postgres_dsn))
    name = f"{scenario}-{crashing.replicas}-replica{'s' if crashing.replicas > 1 else ''}"
    command = f"pytest '{request.node.nodeid}'"
    report = write_report(
        name, command, stored, played.ledger, replicas=crashing.replicas, converged_s=converged_s, **figures
    )
    # Every answer stored; those a retry found already stored count as `unconfirmed` (the reply to the
    # attempt that stored it was lost with the process, or the recovery published it first).
    assert stored.persisted == PLAYERS * QUESTIONS == stored.accepted + stored.unconfirmed, report
    assert (stored.lost, stored.refused_without_row, stored.duplicated, stored.drift) == (0, 0, 0, 0), report
    return report


async def freeze_the_transition(crashing: CrashStack) -> Link:
    """Freezes the replica that next changes a quiz's state, once the change is made (its reply held);
    another replica's attempt that lost the compare-and-set goes on."""
    trigger = crashing.arm(TRANSITION, Hold.REPLY, once=False)
    try:
        while True:
            link = await asyncio.wait_for(trigger.frozen.get(), GIVE_UP_S)
            await asyncio.wait_for(link.reply_arrived.wait(), 10)
            if link.held_reply.startswith(b":1"):
                return link
            link.thaw()
    finally:
        trigger.disarm()


async def freeze_answers(crashing: CrashStack, hold: Hold) -> Link:
    """Freezes the replica that next writes verdicts, before (Hold.CALL) or after (Hold.REPLY) it does."""
    trigger = crashing.arm(RECORD, hold, once=True)
    return await asyncio.wait_for(trigger.frozen.get(), GIVE_UP_S)


# --- 1: answers claimed, not yet judged ---


@pytest.mark.parametrize("restart_after_s", [1, 3], ids=["restart-1s", "restart-3s"])
async def test_sigkill_with_answers_claimed_not_yet_judged(
    crashing: CrashStack, restart_after_s: int, request: pytest.FixtureRequest
) -> None:
    """quiz_svc is killed while it holds reservations it has not judged yet (its verdicts' call held
    back); the players' retries, or the recovery of the dead process, free them and they are judged
    from their first receipt."""
    async with table(crashing) as played:
        await played.answer()
        await played.next_question()
        answering = asyncio.create_task(played.answer())
        frozen = await freeze_answers(crashing, Hold.CALL)
        figures = await crashing.crash(frozen, restart_after_s, lambda: answering)
        await finish(crashing, played, f"18-1-claimed-unjudged-restart-{restart_after_s}s", request, **figures)


# --- 2: judged, not yet published ---


async def test_sigkill_after_judging_before_the_kafka_publish(
    crashing: CrashStack, request: pytest.FixtureRequest
) -> None:
    """quiz_svc is killed once its verdicts are written (the reply of that call held back), before it
    publishes them: they reach Kafka with the same verdict, and no standing counts anything else."""
    async with table(crashing) as played:
        await played.answer()
        await played.next_question()
        answering = asyncio.create_task(played.answer())
        frozen = await freeze_answers(crashing, Hold.REPLY)
        figures = await crashing.crash(frozen, 1, lambda: answering)
        await finish(crashing, played, "18-2-judged-unpublished", request, **figures)


# --- 3: in the middle of a transition ---


@pytest.mark.parametrize("action", ["next_question", "close_question"])
async def test_sigkill_in_the_middle_of_a_host_action(
    crashing: CrashStack, action: str, request: pytest.FixtureRequest
) -> None:
    """quiz_svc is killed right after it changed the quiz's state for the host (the reply of the
    compare-and-set held back), before the deadline, the push and the durable copy: the host's retry
    succeeds, and every player gets the change once."""
    async with table(crashing) as played:
        await played.answer()
        if action == "next_question":
            await played.act("close_question", question_index=0)
            target, phase = 1, "question_open"
        else:
            await played.next_question()
            await played.answer()
            target, phase = 1, "question_closed"
        freezing = asyncio.create_task(freeze_the_transition(crashing))
        acting = asyncio.create_task(played.act(action, question_index=target))
        frozen = await freezing

        async def acted_and_delivered() -> float:
            await acting  # the host's retry succeeded
            return await played.everyone_saw(phase, target)

        figures = await crashing.crash(frozen, 1, acted_and_delivered)
        if action == "next_question":
            await played.answer()
        await finish(crashing, played, f"18-3-sigkill-in-{action}", request, **figures)


async def test_sigkill_at_a_questions_deadline(crashing: CrashStack, request: pytest.FixtureRequest) -> None:
    """quiz_svc is killed as its scheduler closes a question at its deadline (the reply of that
    compare-and-set held back): the close and its results still reach every player, once."""
    async with table(crashing, [120, 5, 120]) as played:
        await played.answer()
        await played.next_question()
        freezing = asyncio.create_task(freeze_the_transition(crashing))
        await played.answer()
        frozen = await freezing
        figures = await crashing.crash(frozen, 1, lambda: played.everyone_saw("question_closed", FAULT_QUESTION))
        await finish(crashing, played, "18-3-sigkill-at-deadline", request, **figures)
