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
import urllib.request
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
    spawn,
    spawn_service,
    tree_cpu_seconds,
    wait_ready,
)
from persistence_svc.consumer import SINK_TOPICS
from quizmesh.grpc_retry import target
from quizmesh.settings import Engines

SIGNING_KEY = "bench-signing-key-0123456789abcdef0123456789"
HAPROXY_CONFIG = Path(__file__).resolve().parents[1] / "scripts" / "haproxy" / "quizmesh.cfg"


def _infra(command: str, topology: str) -> str:
    return subprocess.run(
        ["bash", "scripts/infra.sh", command, "--topology", topology], capture_output=True, text=True, check=False
    ).stdout


def infra_pids(topology: str = "single") -> dict[str, int]:
    """Every Kafka broker, Redis and PostgreSQL server of the topology, as scripts/infra.sh reports them."""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^([\w-]+)\s+running\s+pid=(\d+)", _infra("status", topology), re.M)
    }


def infra_env(topology: str) -> dict[str, str]:
    """What `scripts/infra.sh env --topology TOPOLOGY` exports: the services' settings for that topology."""
    return dict(re.findall(r"^export (\w+)=(.*)$", _infra("env", topology), re.M))


# The services a deployment runs, each with the variable that gives its gRPC address (the edge: its port).
_SERVICES = {
    "quiz-svc": "QUIZMESH_QUIZ_ADDR",
    "leaderboard-svc": "QUIZMESH_LEADERBOARD_ADDR",
    "persistence-svc": "QUIZMESH_PERSISTENCE_ADDR",
}


class Deployment:
    """The four services on the real infrastructure: one process of each by default, on whatever the
    environment points at. With a topology, on that topology's infrastructure (`scripts/infra.sh env`); with
    replicas > 1, that many processes of each service, every client reaching a service's processes through
    one round-robin target, and the edges behind HAProxy (scripts/haproxy/quizmesh.cfg), as on the
    multi-node topology."""

    def __init__(
        self,
        log_dir: Path,
        tag: str,
        extra_env: Mapping[str, str] | None = None,
        code_dir: Path | None = None,
        *,
        topology: str | None = None,
        replicas: int = 1,
        max_connections: int = 9_900,
    ) -> None:
        self.tag = tag
        self.code_dir = code_dir
        self.replicas = replicas
        self.max_connections = max_connections
        base = dict(os.environ)
        if topology is not None:
            # The shell's own engine settings may be the other topology's.
            engine_variables = {variable.name for variable in Engines.VARIABLES}
            base = {name: value for name, value in base.items() if name not in engine_variables}
            base.update(infra_env(topology))
        engines = Engines.from_env(base)
        self.topology = topology or ("cluster" if engines.redis_mode == "cluster" else "single")
        run_id = uuid.uuid4().hex[:8]
        self.addrs = {service: [f"127.0.0.1:{free_port()}" for _ in range(replicas)] for service in _SERVICES}
        self.edge_ports = [free_port() for _ in range(replicas)]
        # quiz_svc's metrics endpoints: its count of answer calls gives the answers per call (§11 of
        # docs/performance.md), which decides the CPU per answer at low rates.
        self.quiz_metrics_ports = [free_port() for _ in range(replicas)]
        self.balancer_port = free_port() if replicas > 1 else None
        self.postgres_dsn = engines.postgres_dsn
        self.env = {
            **base,
            "QUIZMESH_EVENT_BUS": "kafka",
            "QUIZMESH_STATE_STORE": "redis",
            "QUIZMESH_DATABASE": "postgres",
            "QUIZMESH_KAFKA_BOOTSTRAP": engines.kafka_bootstrap,
            "QUIZMESH_REDIS_URL": engines.redis_url,
            "QUIZMESH_POSTGRES_DSN": engines.postgres_dsn,
            "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
            "QUIZMESH_LEADERBOARD_GROUP": f"leaderboard_svc-bench-{run_id}",
            "QUIZMESH_PERSISTENCE_GROUP": f"persistence_svc-bench-{run_id}",
            **{variable: target(self.addrs[service]) for service, variable in _SERVICES.items()},
            # HAProxy appends one address to X-Forwarded-For.
            **({"QUIZMESH_EDGE_TRUSTED_PROXY_HOPS": "1"} if self.balancer_port else {}),
            **LOOPBACK_EDGE_LIMITS,
            **(extra_env or {}),
        }
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    @property
    def url(self) -> str:
        """Where players connect: HAProxy when there is one, the edge otherwise."""
        return f"ws://127.0.0.1:{self.balancer_port or self.edge_ports[0]}/ws"

    def edge_url(self, edge: int) -> str:
        return f"ws://127.0.0.1:{self.edge_ports[edge]}/ws"

    def _name(self, service: str, index: int) -> str:
        return service if self.replicas == 1 else f"{service}-{index + 1}"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            self.stop()  # the processes started before one failed
            raise

    async def _start(self) -> None:
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
        own: list[tuple[str, dict[str, str]]] = []
        for service, variable in _SERVICES.items():
            for index, address in enumerate(self.addrs[service]):
                settings = {variable: address}
                if service == "quiz-svc":
                    settings["QUIZMESH_METRICS_PORT"] = str(self.quiz_metrics_ports[index])
                own.append((service, settings))
        own += [("edge", {"QUIZMESH_EDGE_PORT": str(port)}) for port in self.edge_ports]
        for service, settings in own:
            name = self._name(service, sum(1 for n in self.children if n.startswith(service)))
            self.children[name] = spawn_service(
                service,
                {**self.env, **settings},
                self.log_dir,
                tag=f"{name.removeprefix(service)}{self.tag}",
                code_dir=self.code_dir,
            )
        ready = [f"http://127.0.0.1:{port}/readyz" for port in self.edge_ports]
        if self.balancer_port is not None:
            self.children["haproxy"] = self._balancer()
            ready.append(f"http://127.0.0.1:{self.balancer_port}/readyz")
        await wait_ready(list(self.children.values()), [a for group in self.addrs.values() for a in group], ready)

    def _balancer(self) -> Child:
        """HAProxy as the topology runs it; `-n` overrides the file's maxconn (9,000). HAProxy needs two
        descriptors per connection and 19 more: 9,990 connections fit the 20,000 this machine allows a
        process (its hard limit, which nothing here may raise), 10,000 players do not."""
        edges = {f"QUIZMESH_LB_EDGE_{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(self.edge_ports)}
        env = {**os.environ, "QUIZMESH_LB_BIND": f"127.0.0.1:{self.balancer_port}", **edges}
        argv = ["haproxy", "-db", "-n", str(self.max_connections), "-f", str(HAPROXY_CONFIG)]
        return spawn(f"haproxy{self.tag}", argv, env, self.log_dir)

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()

    async def answer_calls(self) -> float | None:
        """Answer batches quiz_svc has judged so far, as StreamAnswers messages or BatchSubmitAnswers calls
        (every process; the count appears with the first batch); None when an endpoint does not answer."""
        calls = 0.0
        for port in self.quiz_metrics_ports:
            try:
                text = await asyncio.to_thread(_get_text, f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return None
            found = _ANSWER_CALLS.search(text)
            calls += float(found.group(1)) if found else 0.0
        return calls


_ANSWER_CALLS = re.compile(r"^quizmesh_quiz_answer_batch_duration_seconds_count(?:\{[^}]*\})? (\S+)$", re.M)


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


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


def process_cpu_seconds(name: str, pid: int) -> float:
    """CPU seconds of one measured process: with its children for the infrastructure (PostgreSQL)."""
    return tree_cpu_seconds(pid) if name.startswith("infra:") else cpu_seconds(pid)


async def _sample(pids: Mapping[str, int], into: list[tuple[float, dict[str, float]]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        row = {}
        for name, pid in pids.items():
            try:
                row[name] = process_cpu_seconds(name, pid)
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
    pids.update({f"infra:{name}": pid for name, pid in infra_pids(deployment.topology).items()})
    samples: list[tuple[float, dict[str, float]]] = []
    rss: list[int] = []
    stop = asyncio.Event()
    edge_pids = [pid for name, pid in pids.items() if name.startswith("edge")]
    rss_before = sum(map(rss_bytes, edge_pids))

    async def watch_rss() -> None:
        while not stop.is_set():
            rss.append(sum(map(rss_bytes, edge_pids)))
            await asyncio.sleep(1.0)

    calls_before = await deployment.answer_calls()
    sampler = asyncio.create_task(_sample(pids, samples, stop))
    rss_task = asyncio.create_task(watch_rss())
    children_before = os.times()
    started = time.monotonic()

    def show(line: str) -> None:
        print(f"[{label}] {line}", file=sys.stderr, flush=True)

    report = await loadtest.run(plan, progress=show)
    children_after = os.times()
    calls_after = await deployment.answer_calls()
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
        "answers_per_call": _per_call(report["answers_accepted"], calls_before, calls_after),
        "load_generator_workers_cpu_s": round(generator_cpu, 1),
        "edge_rss_per_connection_bytes": round((max(rss, default=rss_before) - rss_before) / peak),
        "timeline": report["timeline"],
    }


def _per_call(answers: int, calls_before: float | None, calls_after: float | None) -> float | None:
    if calls_before is None or calls_after is None or calls_after <= calls_before:
        return None
    return round(answers / (calls_after - calls_before), 2)


def steady_plan(url: str, players: int, duration_s: float) -> loadtest.Plan:
    """Offered load = players / 2 s: every player answers every question, one question per 2 s, in quizzes
    of 500 players."""
    return loadtest.Plan(
        url=url,
        players=players,
        quizzes=max(1, players // 500),
        duration_s=duration_s,
        join_rate=200,
        answer_min_s=2.0,
        answer_max_s=2.0,
        workers=2,
    )


def big_quiz_plan(
    url: str, duration_s: float, *, players: int = 10_000, player_urls: tuple[str, ...] = ()
) -> loadtest.Plan:
    """10,000 players in one quiz, each answering every 10-20 s. Joins run at what the stack absorbs (about
    50-100/s here), so they take minutes."""
    return loadtest.Plan(
        url=url,
        player_urls=player_urls,
        players=players,
        quizzes=1,
        duration_s=duration_s,
        join_rate=200,
        answer_min_s=10.0,
        answer_max_s=20.0,
        workers=2,
    )


async def run(log_dir: Path, *, quick: bool = False, services_from: Path | None = None) -> dict[str, Any]:
    """The pipeline steps and the big quiz on one deployment, then the batching comparison. With
    services_from, the deployment runs that checkout's services (the load generator stays this one's) and
    the comparison is skipped: the way to measure an earlier commit side by side with this one."""
    duration = 40.0 if quick else 60.0
    results: dict[str, Any] = {"steps": [], "services_from": str(services_from or "")}
    deployment = Deployment(log_dir, "-pipeline", code_dir=services_from)
    await deployment.start()
    try:
        for players in (1000,) if quick else (1000, 2000, 3000, 4000):
            plan = steady_plan(deployment.url, players, duration)
            results["steps"].append(await measured_run(deployment, plan, f"pipeline-{players // 2}/s"))
        big = big_quiz_plan(deployment.url, 90.0 if quick else 180.0)
        results["big_quiz"] = await measured_run(deployment, big, "big-quiz")
    finally:
        deployment.stop()
    if services_from is None:
        results["batching"] = await batching_comparison(log_dir, duration_s=duration)
    return results


# The edge's answer batching, side by side: its behaviour before the in-flight limit (any number of calls,
# each sent 2 ms after its first answer), the limit's first default (two calls) and the defaults (one).
BATCHING_SETTINGS: dict[str, dict[str, str]] = {
    "linger-2ms-unbounded": {
        "QUIZMESH_EDGE_ANSWER_BATCH_LINGER_MS": "2",
        "QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT": "100000",
    },
    "two-in-flight": {"QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT": "2"},
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
            plan = steady_plan(deployment.url, 2000, duration_s)
            results[name] = await measured_run(deployment, plan, f"{what}-{name}")
        finally:
            deployment.stop()
    return results
