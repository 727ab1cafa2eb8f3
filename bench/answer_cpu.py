"""`python -m bench.answer_cpu [memory|redis]`: quiz_svc's CPU per answer in BatchSubmitAnswers, and the
wall time of each batch (p50, p99).

The servicer and the service layer in one process, with the production telemetry setup (sampling as
the environment says), the cached quiz repository, an in-memory bus and the chosen game store; 400
players answer 12 questions in batches of 100, each answer carrying its own edge-made trace context.
No gRPC transport, no Kafka: what is left is quiz_svc's own work per answer, and its store's round
trips. The Redis store waits for replicas as QUIZMESH_REDIS_WAIT_REPLICAS says (the Redis Cluster of
`scripts/infra.sh env --topology cluster` sets 1; compare with 0 to see what WAIT costs)."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

from quiz_svc.adapters.cached_repo import CachedQuizRepository
from quiz_svc.adapters.game_events import BusGameEvents
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.redis_game import RedisGameStore
from quiz_svc.adapters.redis_instances import RedisInstanceRegistry
from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.domain import HostAction, PointsMode, Question, QuizDefinition
from quiz_svc.grpc_api import QuizServicer
from quiz_svc.kinds import SingleChoice
from quiz_svc.ports import GameStore, StoredResults
from quiz_svc.service import QuizGame
from quizmesh.auth import Credentials
from quizmesh.eventbus.memory import InMemoryBus, InMemoryPublisher
from quizmesh.pubsub import InMemoryChannels
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from quizmesh.telemetry import setup_telemetry
from quizmesh.tracing import current_trace_context

PLAYERS, QUESTIONS, BATCH = 400, 12, 100


class FixedClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.now


class NoCallMetadata:
    """The one part of a call's context that BatchSubmitAnswers reads: its metadata, none here."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class NoResults:
    async def results(self, quiz: QuizDefinition) -> StoredResults:
        raise AssertionError("no quiz is restored here")

    async def close(self) -> None:
        return None


async def measure(store_kind: str) -> tuple[float, list[float]]:
    """CPU seconds per answer and each batch's wall seconds, the first two questions (warm-up) left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER")}
    telemetry = setup_telemetry("quiz_svc", env)
    clock = FixedClock()
    source = await SqliteQuizRepository.open(":memory:")
    await source.ensure_schema()
    runtime = Runtime(Engines.from_env())
    redis = runtime.redis() if store_kind == "redis" else None
    store: GameStore = RedisGameStore(redis, runtime.replica_acks()) if redis is not None else InMemoryGameStore()
    feed = ChannelUpdateFeed(InMemoryChannels(), clock)
    publisher = telemetry.traced_publisher(InMemoryPublisher(InMemoryBus()))
    instances = RedisInstanceRegistry(redis) if redis is not None else InMemoryInstanceRegistry()
    game = QuizGame(
        CachedQuizRepository(source, redis),
        store,
        BusGameEvents(publisher),
        feed,
        Credentials(b"k" * 32),
        clock,
        NoResults(),
        instances,
    )
    servicer = QuizServicer(game, feed, clock, telemetry)
    question = Question("q", SingleChoice(("a", "b", "c"), frozenset({1})), 60, PointsMode.STANDARD)
    try:
        quiz, host = await game.create_quiz("answer cpu", [question] * QUESTIONS, True)
        tokens = [(await game.join(quiz.quiz_id, f"p{i}"))[1] for i in range(PLAYERS)]
        edge = telemetry.tracer("edge")
        cpu, answers, batches = 0.0, 0, []
        for index in range(QUESTIONS):
            await game.host_action(quiz.quiz_id, host, HostAction.START if index == 0 else HostAction.NEXT)
            clock.now += 1000
            for start in range(0, PLAYERS, BATCH):
                request = pb.BatchSubmitAnswersRequest()
                for i, token in enumerate(tokens[start : start + BATCH]):
                    with edge.start_as_current_span("edge client message"):
                        carrier = current_trace_context()
                    answer = request.answers.add(player_token=token, question_index=index, choice=i % 3)
                    answer.trace_context.update(carrier)
                began, began_wall = time.process_time(), time.perf_counter()
                response = await servicer.BatchSubmitAnswers(request, NoCallMetadata())
                if index >= 2:
                    cpu += time.process_time() - began
                    batches.append(time.perf_counter() - began_wall)
                    answers += len(request.answers)
                if not all(o.HasField("result") for o in response.outcomes):
                    raise RuntimeError(f"an answer was refused: {response.outcomes}")
            await game.host_action(quiz.quiz_id, host, HostAction.CLOSE)
            clock.now += 1000
        return cpu / answers, batches
    finally:
        if redis is not None:
            await redis.aclose()
        await source.close()
        telemetry.close()


def main() -> None:
    store_kind = sys.argv[1] if len(sys.argv) > 1 else "memory"
    per_answer, batches = asyncio.run(measure(store_kind))
    waits = os.environ.get("QUIZMESH_REDIS_WAIT_REPLICAS", "0") if store_kind == "redis" else "0"
    p50, p99 = statistics.median(batches), statistics.quantiles(batches, n=100)[98]
    print(
        f"quiz_svc, {store_kind} store, waiting for {waits} replicas: {per_answer * 1e6:.1f} µs CPU per answer; "
        f"a batch of {BATCH} takes {p50 * 1e3:.2f} ms (p50), {p99 * 1e3:.2f} ms (p99), {len(batches)} batches"
    )


if __name__ == "__main__":
    main()
