"""The fault harness: a ledger of every answer a client saw accepted, load that fills it, and the
comparison of the ledger with PostgreSQL and Redis after a fault (after Kafka's `validate_delivery`).

Figures per scenario:
- lost: accepted by quiz_svc (the client saw answer_result) but not in PostgreSQL;
- refused without row: refused as already_answered although PostgreSQL holds no answer of that player
  to that question (an answer neither accepted nor free to be sent again);
- duplicated: PostgreSQL rows beyond one per (question, player) and one per event ID;
- drift: the sum over players of |Redis score - the sum of their points in PostgreSQL|;
- errors seen by clients, by code, and the longest call (a hang would show here);
- recovery and convergence times.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from leaderboard_svc.domain import score_of
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from quizmesh.redis_client import connect
from quizmesh.settings import RedisMode

REPORT_DIR = Path(__file__).resolve().parents[2] / ".infra" / "reliability"
CHOICES = ["right", "wrong", "also wrong"]

AnswerKey = tuple[int, str]  # (question index, player ID)


@dataclass
class Ledger:
    """What clients were told: accepted answers, errors by code, and how long each call took."""

    accepted: dict[AnswerKey, int] = field(default_factory=dict)  # -> total score the client was shown
    refused_as_answered: set[AnswerKey] = field(default_factory=set)  # told already_answered
    errors: Counter[str] = field(default_factory=Counter)
    call_seconds: list[float] = field(default_factory=list)
    inflight_failures: int = 0  # calls begun before a SIGTERM that did not succeed

    @property
    def max_call_s(self) -> float:
        return max(self.call_seconds, default=0.0)


@dataclass
class StoreFigures:
    accepted: int
    persisted: int
    lost: int
    refused_without_row: int
    duplicated: int
    drift: int
    unconfirmed: int  # persisted but never confirmed to a client (its reply was lost): not a loss


async def store_figures(
    postgres_dsn: str, redis_url: str, quiz_id: str, ledger: Ledger, redis_mode: RedisMode = "single"
) -> StoreFigures:
    connection = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT question_index, player_id, points, event_id FROM answers WHERE quiz_id = $1", quiz_id
        )
    finally:
        await connection.close()
    keys = {(r["question_index"], r["player_id"]) for r in rows}
    duplicated = (len(rows) - len(keys)) + (len(rows) - len({r["event_id"] for r in rows}))
    recomputed: Counter[str] = Counter()
    for r in rows:
        recomputed[r["player_id"]] += r["points"]
    redis = connect(redis_url, redis_mode)
    try:
        ranked: list[Any] = await redis.zrange(f"lb:{{{quiz_id}}}:rank", 0, -1, withscores=True)
    finally:
        await redis.aclose()
    shown = {member.decode(): score_of(int(score)) for member, score in ranked}
    drift = sum(abs(shown.get(p, 0) - recomputed.get(p, 0)) for p in set(shown) | set(recomputed))
    return StoreFigures(
        accepted=len(ledger.accepted),
        persisted=len(rows),
        lost=len(set(ledger.accepted) - keys),
        refused_without_row=len(ledger.refused_as_answered - keys),
        duplicated=duplicated,
        drift=drift,
        unconfirmed=len(keys - set(ledger.accepted)),
    )


async def converge(
    postgres_dsn: str,
    redis_url: str,
    quiz_id: str,
    ledger: Ledger,
    timeout_s: float = 60,
    redis_mode: RedisMode = "single",
) -> tuple[StoreFigures, float]:
    """The figures once nothing is lost and nothing drifts (or at the timeout), and the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            figures = await store_figures(postgres_dsn, redis_url, quiz_id, ledger, redis_mode)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            figures = None  # a store still coming back
        elapsed = time.monotonic() - started
        settled = figures is not None and figures.lost == figures.refused_without_row == figures.drift == 0
        if figures is not None and (settled or elapsed > timeout_s):
            return figures, round(elapsed, 2)
        if figures is None and elapsed > timeout_s:
            raise TimeoutError(f"the stores did not answer within {timeout_s} s")
        await asyncio.sleep(0.5)


def write_report(scenario: str, command: str, figures: StoreFigures, ledger: Ledger, **extra: Any) -> dict[str, Any]:
    report = {
        "scenario": scenario,
        "command": command,
        **asdict(figures),
        "client_errors": dict(ledger.errors),
        "max_call_s": round(ledger.max_call_s, 3),
        "calls": len(ledger.call_seconds),
        "inflight_failures": ledger.inflight_failures,
        **extra,
    }
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"{scenario}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def retryable(code: grpc.StatusCode) -> bool:
    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def choice_of(player: str, index: int) -> int:
    """The choice a GrpcGame player sends for a question (every third player is right)."""
    return (zlib.crc32(player.encode()) + index) % 3


class GrpcGame:
    """One quiz played over gRPC as the edge's micro-batcher would: BatchSubmitAnswers of up to
    `batch_size` answers, each call under `deadline_s`, spread over the quiz_svc replicas, retrying a
    failed answer unchanged (same player, question and choice) until it is accepted or refused."""

    def __init__(
        self,
        quiz_addrs: Sequence[str],
        *,
        players: int,
        questions: int,
        batch_size: int = 50,
        deadline_s: float = 5.0,
        concurrency: int = 4,
    ) -> None:
        self.ledger = Ledger()
        self.players = players
        self.questions = questions
        self.batch_size = batch_size
        self.deadline_s = deadline_s
        self.concurrency = concurrency
        self.quiz_id = ""
        self.tokens: dict[str, str] = {}  # player ID -> credential
        self.question_index = -1
        self.terminated_at: float | None = None  # monotonic time of a SIGTERM under test
        self._channels = [grpc.aio.insecure_channel(a) for a in quiz_addrs]
        self._stubs = [pb_grpc.QuizServiceStub(c) for c in self._channels]
        self._next_stub = itertools.count()
        self._host_token = ""
        self.down: set[int] = set()  # replicas the test took away; calls avoid them

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def _stub(self) -> Any:
        for _ in range(len(self._stubs)):
            index = next(self._next_stub) % len(self._stubs)
            if index not in self.down:
                return self._stubs[index]
        raise RuntimeError("every quiz_svc replica is down")

    async def _call(self, method: str, request: Any, attempts: int = 60) -> Any:
        """A unary call retried on transient failures (host and join calls)."""
        for attempt in range(attempts):
            try:
                return await getattr(self._stub(), method)(request, timeout=self.deadline_s)
            except grpc.aio.AioRpcError as exc:
                if not retryable(exc.code()) or attempt == attempts - 1:
                    raise
                self.ledger.errors[f"{method}:{exc.code().name}"] += 1
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")

    async def setup(self) -> None:
        question = pb.Question(
            text="Which?",
            choices=CHOICES,
            correct_choices=[0],
            time_limit_seconds=120,
            points_mode=pb.POINTS_MODE_STANDARD,
        )
        created = await self._call(
            "CreateQuiz", pb.CreateQuizRequest(title="faults", questions=[question] * self.questions)
        )
        self.quiz_id, self._host_token = created.quiz.quiz_id, created.host_token
        gate = asyncio.Semaphore(16)

        async def join(n: int) -> None:
            async with gate:
                reply = await self._call("JoinQuiz", pb.JoinQuizRequest(quiz_id=self.quiz_id, nickname=f"p{n}"))
                self.tokens[reply.player.player_id] = reply.player_token

        await asyncio.gather(*(join(n) for n in range(self.players)))
        await self._call("StartQuiz", pb.StartQuizRequest(quiz_id=self.quiz_id, host_token=self._host_token))
        self.question_index = 0

    async def next_question(self) -> None:
        """Closes the open question and opens the next; each names its question, so a retry of a call
        that took effect succeeds (and closing one the deadline closed already is no error)."""
        index, token = self.question_index, self._host_token
        await self._call(
            "CloseQuestion", pb.CloseQuestionRequest(quiz_id=self.quiz_id, host_token=token, question_index=index)
        )
        await self._call(
            "NextQuestion", pb.NextQuestionRequest(quiz_id=self.quiz_id, host_token=token, question_index=index + 1)
        )
        self.question_index += 1

    async def answer_question(self, give_up_after_s: float = 90, *, rounds: int | None = None) -> None:
        """Every player answers the open question; returns once each answer is accepted or refused, or
        after `rounds` rounds of calls if given (the answers still unaccepted then are left so)."""
        index = self.question_index
        pending = {
            p: pb.Answer(player_token=t, question_index=index, choice=choice_of(p, index))
            for p, t in self.tokens.items()
        }
        give_up = time.monotonic() + give_up_after_s
        gate = asyncio.Semaphore(self.concurrency)
        for round_ in itertools.count():
            if not pending or round_ == rounds:
                return
            if time.monotonic() > give_up:
                raise TimeoutError(f"{len(pending)} answers to question {index} still not accepted")
            players = list(pending)
            batches = [players[i : i + self.batch_size] for i in range(0, len(players), self.batch_size)]

            async def send(batch: list[str]) -> None:
                async with gate:
                    await self._send(index, batch, pending)

            await asyncio.gather(*(send(b) for b in batches))
            if pending and round_ + 1 != rounds:
                await asyncio.sleep(0.2)

    async def _send(self, index: int, players: list[str], pending: dict[str, pb.Answer]) -> None:
        request = pb.BatchSubmitAnswersRequest(answers=[pending[p] for p in players])
        started = time.monotonic()
        try:
            reply = await self._stub().BatchSubmitAnswers(request, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            self.ledger.call_seconds.append(time.monotonic() - started)
            self.ledger.errors[f"call:{exc.code().name}"] += 1
            if self.terminated_at is not None and started < self.terminated_at:
                self.ledger.inflight_failures += 1
            if not retryable(exc.code()):
                raise
            return
        self.ledger.call_seconds.append(time.monotonic() - started)
        for player, outcome in zip(players, reply.outcomes, strict=True):
            if outcome.error == pb.ANSWER_ERROR_UNSPECIFIED:
                self.ledger.accepted[(index, player)] = outcome.result.total_score
                del pending[player]
            elif outcome.error == pb.ANSWER_ERROR_UNAVAILABLE:
                self.ledger.errors["answer:unavailable"] += 1
            else:
                # Refused for good (already_answered: an earlier attempt was accepted but its reply
                # was lost, so the client never saw it; it shows as `unconfirmed`).
                self.ledger.errors[f"answer:{pb.AnswerError.Name(outcome.error)}"] += 1
                if outcome.error == pb.ANSWER_ERROR_ALREADY_ANSWERED:
                    self.ledger.refused_as_answered.add((index, player))
                del pending[player]

    async def play(self, on_question: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Answers every question; on_question(index) runs concurrently with each question's answers."""
        for index in range(self.questions):
            if index > 0:
                await self.next_question()
            if on_question is None:
                await self.answer_question()
            else:
                await asyncio.gather(self.answer_question(), on_question(index))
