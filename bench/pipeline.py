"""Benchmarks 2, 3 and 5: answers/s through the real stack, the big quiz, and CPU per answer per hop.

A private deployment (one process of each service, its own Kafka consumer groups) runs against the
shared Kafka, Redis and PostgreSQL started by scripts/infra.sh; the load generator drives it over real
WebSockets. Nothing is pinned: the services, the infrastructure and the players share both cores, as
a whole deployment on this machine would.

Per-hop CPU: each service's CPU seconds are sampled every second; over the seconds after the last
join, CPU used ÷ answers accepted in those seconds is that hop's cost per answer. It includes what the
answers cause downstream in that process (leaderboard recomputation and fan-out, persistence writes),
which is the point: it is what each answer costs.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench import loadtest
from bench.procs import (
    LOOPBACK_EDGE_LIMITS,
    Child,
    cpu_seconds,
    free_port,
    has_migrations,
    rss_bytes,
    spawn_service,
    tree_cpu_seconds,
    wait_ready,
)
from persistence_svc.consumer import SINK_TOPICS
from quizmesh.settings import Engines

SIGNING_KEY = "bench-signing-key-0123456789abcdef0123456789"


def infra_pids() -> dict[str, int]:
    """Kafka, Redis and PostgreSQL as scripts/infra.sh reports them (shared with everyone on this machine)."""
    status = subprocess.run(["bash", "scripts/infra.sh", "status"], capture_output=True, text=True, check=False)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+running\s+pid=(\d+)", status.stdout, re.M)}


class Deployment:
    def __init__(
        self,
        log_dir: Path,
        tag: str,
        extra_env: Mapping[str, str] | None = None,
        code_dir: Path | None = None,
    ) -> None:
        self.tag = tag
        self.code_dir = code_dir
        engines = Engines.from_env()
        run_id = uuid.uuid4().hex[:8]
        self.quiz_addr = f"127.0.0.1:{free_port()}"
        self.leaderboard_addr = f"127.0.0.1:{free_port()}"
        self.persistence_addr = f"127.0.0.1:{free_port()}"
        self.edge_port = free_port()
        self.postgres_dsn = engines.postgres_dsn
        self.env = {
            **os.environ,
            "QUIZMESH_EVENT_BUS": "kafka",
            "QUIZMESH_STATE_STORE": "redis",
            "QUIZMESH_DATABASE": "postgres",
            "QUIZMESH_KAFKA_BOOTSTRAP": engines.kafka_bootstrap,
            "QUIZMESH_REDIS_URL": engines.redis_url,
            "QUIZMESH_POSTGRES_DSN": engines.postgres_dsn,
            "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
            "QUIZMESH_LEADERBOARD_GROUP": f"leaderboard_svc-bench-{run_id}",
            "QUIZMESH_PERSISTENCE_GROUP": f"persistence_svc-bench-{run_id}",
            "QUIZMESH_QUIZ_ADDR": self.quiz_addr,
            "QUIZMESH_LEADERBOARD_ADDR": self.leaderboard_addr,
            "QUIZMESH_PERSISTENCE_ADDR": self.persistence_addr,
            "QUIZMESH_EDGE_PORT": str(self.edge_port),
            **LOOPBACK_EDGE_LIMITS,
            **(extra_env or {}),
        }
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.edge_port}/ws"

    async def start(self) -> None:
        await start_groups_at_end(
            self.env["QUIZMESH_KAFKA_BOOTSTRAP"],
            [self.env["QUIZMESH_LEADERBOARD_GROUP"], self.env["QUIZMESH_PERSISTENCE_GROUP"]],
            SINK_TOPICS,
        )
        if has_migrations(self.code_dir):
            migrate = spawn_service("migrate", self.env, self.log_dir, tag=self.tag, code_dir=self.code_dir)
            if await asyncio.to_thread(migrate.process.wait) != 0:
                raise RuntimeError(f"quizmesh migrate failed; see its log in {self.log_dir}")
        else:
            # Services that create their tables at start-up need the role that owns them.
            migration_dsn = self.env.get("QUIZMESH_POSTGRES_MIGRATION_DSN")
            self.env["QUIZMESH_POSTGRES_DSN"] = migration_dsn or self.env["QUIZMESH_POSTGRES_DSN"]
        for service in ("quiz-svc", "leaderboard-svc", "persistence-svc", "edge"):
            self.children[service] = spawn_service(
                service, self.env, self.log_dir, tag=self.tag, code_dir=self.code_dir
            )
        await wait_ready(
            list(self.children.values()),
            [self.quiz_addr, self.leaderboard_addr, self.persistence_addr],
            [f"http://127.0.0.1:{self.edge_port}/readyz"],
        )

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()


async def start_groups_at_end(bootstrap: str, groups: Sequence[str], topics: Sequence[str]) -> None:
    """Commits every partition's current end for each new consumer group.

    A new group starts at the earliest retained record, and the shared topics hold every earlier run's
    and test's events (hundreds of thousands): without this, the measured services would spend the run
    replaying them (and rebuilding those quizzes' rankings) instead of serving the load under test.
    """
    for group in groups:
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                while not consumer.assignment():  # the group's only member is given every partition
                    await consumer.getmany(timeout_ms=100)
            partitions = list(consumer.assignment())
            await consumer.commit(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()


async def _sample(pids: Mapping[str, int], into: list[tuple[float, dict[str, float]]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        row = {}
        for name, pid in pids.items():
            try:
                row[name] = tree_cpu_seconds(pid) if name.startswith("infra:") else cpu_seconds(pid)
            except OSError:
                continue
        into.append((time.monotonic(), row))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            continue


async def _persisted(dsn: str, quiz_ids: list[str], expected: int, timeout_s: float = 60) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            stored = int(await connection.fetchval("SELECT count(*) FROM answers WHERE quiz_id = ANY($1)", quiz_ids))
            if stored >= expected or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def measured_run(deployment: Deployment, plan: loadtest.Plan, label: str) -> dict[str, Any]:
    pids = {name: child.pid for name, child in deployment.children.items()}
    pids.update({f"infra:{name}": pid for name, pid in infra_pids().items()})
    samples: list[tuple[float, dict[str, float]]] = []
    rss: list[int] = []
    stop = asyncio.Event()
    edge_pid = pids["edge"]
    rss_before = rss_bytes(edge_pid)

    async def watch_rss() -> None:
        while not stop.is_set():
            rss.append(rss_bytes(edge_pid))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(_sample(pids, samples, stop))
    rss_task = asyncio.create_task(watch_rss())
    children_before = os.times()
    started = time.monotonic()

    def show(line: str) -> None:
        print(f"[{label}] {line}", file=sys.stderr, flush=True)

    report = await loadtest.run(plan, progress=show)
    children_after = os.times()
    stop.set()
    await asyncio.gather(sampler, rss_task)
    persisted = await _persisted(deployment.postgres_dsn, report["quiz_ids"], report["answers_accepted"])
    joined_by = report["all_joined_after_s"] or 0
    window_start, window_end = started + joined_by + 1, started + plan.duration_s - 1
    inside = [(t, row) for t, row in samples if window_start <= t <= window_end]
    per_hop: dict[str, float | None] = {}
    if len(inside) >= 2:
        (t_first, first), (t_last, last) = inside[0], inside[-1]
        second_first, second_last = int(t_first - started), int(t_last - started)
        answers = sum(r["answers_accepted"] for r in report["timeline"] if second_first <= r["second"] < second_last)
        for name in pids:
            if answers and name in first and name in last:
                per_hop[name] = round((last[name] - first[name]) / answers * 1e6, 1)
    generator_cpu = (children_after.children_user + children_after.children_system) - (
        children_before.children_user + children_before.children_system
    )
    peak = report["connections_peak"] or 1
    return {
        "label": label,
        "loadtest": {k: v for k, v in report.items() if k != "timeline"},
        "answers_persisted": persisted,
        "every_answer_persisted": persisted >= report["answers_accepted"],
        "cpu_us_per_answer": per_hop,
        "load_generator_workers_cpu_s": round(generator_cpu, 1),
        "edge_rss_per_connection_bytes": round((max(rss, default=rss_before) - rss_before) / peak),
        "timeline": report["timeline"],
    }


async def run(log_dir: Path, *, quick: bool = False, services_from: Path | None = None) -> dict[str, Any]:
    """The pipeline steps and the big quiz on one deployment, then the batching comparison. With
    services_from, the deployment runs that checkout's services (the load generator stays this one's) and
    the comparison is skipped: the way to measure an earlier commit side by side with this one."""
    duration = 40.0 if quick else 60.0
    results: dict[str, Any] = {"steps": [], "services_from": str(services_from or "")}
    deployment = Deployment(log_dir, "-pipeline", code_dir=services_from)
    await deployment.start()
    try:
        # Offered load = players / 2 s: every player answers every question, one question per 2 s.
        for players in (1000,) if quick else (1000, 2000, 3000, 4000):
            plan = loadtest.Plan(
                url=deployment.url,
                players=players,
                quizzes=max(1, players // 500),
                duration_s=duration,
                join_rate=200,
                answer_min_s=2.0,
                answer_max_s=2.0,
                workers=2,
            )
            results["steps"].append(await measured_run(deployment, plan, f"pipeline-{players // 2}/s"))
        # Joins run at what the stack absorbs (about 50-100/s here), so 10,000 players need minutes.
        big = loadtest.Plan(
            url=deployment.url,
            players=10_000,
            quizzes=1,
            duration_s=90.0 if quick else 180.0,
            join_rate=200,
            answer_min_s=10.0,
            answer_max_s=20.0,
            workers=2,
        )
        results["big_quiz"] = await measured_run(deployment, big, "big-quiz")
    finally:
        deployment.stop()
    if services_from is None:
        results["batching"] = await batching_comparison(log_dir, duration_s=duration)
    return results


# The edge's answer batching, side by side: its behaviour before the in-flight limit (any number of calls,
# each sent 2 ms after its first answer) against the defaults.
BATCHING_SETTINGS: dict[str, dict[str, str]] = {
    "linger-2ms-unbounded": {
        "QUIZMESH_EDGE_ANSWER_BATCH_LINGER_MS": "2",
        "QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT": "100000",
    },
    "defaults": {},
}

# The sinks' Kafka fetches, side by side: each fetch returned as soon as one record is there (aiokafka's
# default, and quizmesh's before the batch waits) against the defaults.
FETCH_SETTINGS: dict[str, dict[str, str]] = {
    "fetch-at-once": {"QUIZMESH_LEADERBOARD_BATCH_WAIT_MS": "0", "QUIZMESH_PERSISTENCE_BATCH_WAIT_MS": "0"},
    "defaults": {},
}


async def batching_comparison(log_dir: Path, *, duration_s: float = 60.0) -> dict[str, Any]:
    return await side_by_side(log_dir, "batching", BATCHING_SETTINGS, duration_s=duration_s)


async def fetch_comparison(log_dir: Path, *, duration_s: float = 60.0) -> dict[str, Any]:
    return await side_by_side(log_dir, "fetch", FETCH_SETTINGS, duration_s=duration_s)


async def side_by_side(
    log_dir: Path, what: str, settings_by_name: Mapping[str, Mapping[str, str]], *, duration_s: float
) -> dict[str, Any]:
    """The same 1,000 answers/s offered to a fresh deployment per setting, one after another."""
    results: dict[str, Any] = {}
    for name, settings in settings_by_name.items():
        deployment = Deployment(log_dir, f"-{what}-{name}", settings)
        await deployment.start()
        try:
            plan = loadtest.Plan(
                url=deployment.url,
                players=2000,
                quizzes=4,
                duration_s=duration_s,
                join_rate=200,
                answer_min_s=2.0,
                answer_max_s=2.0,
                workers=2,
            )
            results[name] = await measured_run(deployment, plan, f"{what}-{name}")
        finally:
            deployment.stop()
    return results
