"""Benchmark 4: many idle quiz sessions: Redis memory per session, creation time, idle CPU per service.

A private redis-server (its own port, no persistence) and a private PostgreSQL database
(`quizmesh_bench`, dropped afterwards) hold the sessions, so the shared ones are not touched. A private
deployment of every service runs against them; sessions are created with quiz_svc's CreateQuiz
(5 questions each), `concurrency` calls in flight. Redis memory is INFO used_memory after − before,
divided by the sessions; idle CPU is each service's CPU over `idle_s` seconds after creation, against
the same window before it (once the fresh processes have settled).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import grpc
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.pipeline import Deployment
from bench.procs import cpu_seconds, free_port, rss_bytes, spawn, wait_ready
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from quizmesh.settings import Engines

DATABASE = "quizmesh_bench"


def _request(n: int) -> quiz_pb2.CreateQuizRequest:
    return quiz_pb2.CreateQuizRequest(
        title=f"idle session {n}",
        questions=[
            quiz_pb2.Question(
                text=f"Question {q + 1} of an idle quiz?",
                choices=["one", "two", "three", "four"],
                correct_choices=[q % 4],
                time_limit_seconds=20,
                points_mode=quiz_pb2.POINTS_MODE_STANDARD,
            )
            for q in range(5)
        ],
    )


async def _create(address: str, count: int, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = quiz_grpc.QuizServiceStub(channel)
        numbers = iter(range(count))
        started = time.monotonic()

        async def creator() -> None:
            for n in numbers:
                await stub.CreateQuiz(_request(n), timeout=30)

        await asyncio.gather(*(creator() for _ in range(concurrency)))
        return time.monotonic() - started


async def _idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    return {name: round((cpu_seconds(pid) - before[name]) / seconds * 100, 2) for name, pid in pids.items()}


async def run(
    count: int, log_dir: Path, *, concurrency: int = 64, idle_s: float = 30.0, settle_s: float = 20.0
) -> dict[str, Any]:
    shared = Engines.from_env()
    admin = await asyncpg.connect(shared.postgres_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    private_dsn = urlunparse(urlparse(shared.postgres_dsn)._replace(path=f"/{DATABASE}"))
    redis_port = free_port()
    redis = spawn(
        "redis-bench",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        os.environ,
        log_dir,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    deployment = Deployment(
        log_dir, "-sessions", {"QUIZMESH_REDIS_URL": redis_url, "QUIZMESH_POSTGRES_DSN": private_dsn}
    )
    client = Redis.from_url(redis_url)
    try:
        await wait_ready([redis], [], [])
        for _ in range(50):
            try:
                await client.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.1)
        await deployment.start()
        pids = {name: child.pid for name, child in deployment.children.items()}
        pids["redis"] = redis.pid
        # New consumer groups and fresh processes do start-up work for a while; the baseline is after it.
        await asyncio.sleep(settle_s)
        idle_before = await _idle_cpu(pids, idle_s)
        memory_before = int((await client.info("memory"))["used_memory"])
        keys_before = int(await client.dbsize())
        rss_before = {name: rss_bytes(pid) for name, pid in pids.items()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        seconds = await _create(deployment.addrs["quiz-svc"][0], count, concurrency)
        cpu_per_session = {
            name: round((cpu_seconds(pid) - cpu_before[name]) / count * 1e6) for name, pid in pids.items()
        }
        rss_per_session = {name: round((rss_bytes(pid) - rss_before[name]) / count) for name, pid in pids.items()}
        memory_after = int((await client.info("memory"))["used_memory"])
        keys_after = int(await client.dbsize())
        idle_after = await _idle_cpu(pids, idle_s)
        per_session = (memory_after - memory_before) / count
        return {
            "sessions": count,
            "concurrency": concurrency,
            "create_seconds": round(seconds, 1),
            "sessions_per_s": round(count / seconds),
            "redis_bytes_per_session": round(per_session),
            "redis_keys_per_session": round((keys_after - keys_before) / count, 2),
            "redis_gb_for_1m_sessions_extrapolated": round(per_session * 1_000_000 / 1e9, 2),
            "minutes_for_1m_sessions_extrapolated": round(1_000_000 / (count / seconds) / 60, 1),
            "cpu_us_per_created_session": cpu_per_session,
            "rss_bytes_per_session": rss_per_session,
            "idle_cpu_percent_before": idle_before,
            "idle_cpu_percent_after": idle_after,
        }
    finally:
        await client.aclose()
        deployment.stop()
        redis.stop()
        admin = await asyncpg.connect(shared.postgres_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        finally:
            await admin.close()
