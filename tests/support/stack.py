"""Running a whole quizmesh for end-to-end tests.

`embedded_stack` runs the four components in this test's process on in-memory engines and SQLite,
exactly as `quizmesh dev` does. `process_stack` starts each component as its own `quizmesh <service>`
process against the real Kafka, Redis and PostgreSQL, as many processes of each as asked, and ends
exactly the processes it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quizmesh.services import embedded_env, run_embedded
from tests.support.infra import REAL, require_real_stack

SIGNING_KEY = "e2e-signing-key-0123456789abcdef0123456789"
# Every test client connects from 127.0.0.1, which the per-address join limit would treat as one
# flooding client: tests that need the production limits set their own.
LOOPBACK_LIMITS = {
    "QUIZMESH_EDGE_JOINS_PER_MIN": "100000",
    "QUIZMESH_EDGE_MESSAGES_PER_S": "1000",
    "QUIZMESH_EDGE_MESSAGES_BURST": "1000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    edge_urls: list[str]
    quiz_addrs: list[str]
    leaderboard_addrs: list[str]
    persistence_addrs: list[str]
    mode: str
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    # The environment each process was started with, by service and index: for restarts in fault tests.
    envs: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    log_dir: Path | None = None

    def ws_url(self, edge: int = 0) -> str:
        return f"{self.edge_urls[edge]}/ws"

    @property
    def metrics_targets(self) -> list[tuple[str, str]]:
        """(service, host:port) of each process's metrics endpoint (a process_stack with metrics=True)."""
        return [
            (service, f"127.0.0.1:{env['QUIZMESH_METRICS_PORT']}")
            for service, group in self.envs.items()
            for env in group
            if "QUIZMESH_METRICS_PORT" in env
        ]

    def restart(self, service: str, index: int = 0) -> subprocess.Popen[bytes]:
        """Starts process `index` of `service` again with its environment (stop it first)."""
        assert self.log_dir is not None, "only a process_stack's processes can be restarted"
        number = sum(len(group) for group in self.processes.values())
        process = _spawn(service, self.envs[service][index], self.log_dir, number)
        self.processes[service][index] = process
        return process

    def add(self, service: str) -> tuple[int, str]:
        """Starts one more process of a gRPC service in the same deployment; returns its index and address."""
        assert self.log_dir is not None, "only a process_stack can grow"
        variable = f"QUIZMESH_{service.removesuffix('-svc').upper()}_ADDR"
        address = f"127.0.0.1:{free_port()}"
        env = {**self.envs[service][0], variable: address}
        self.envs[service].append(env)
        number = sum(len(group) for group in self.processes.values())
        self.processes[service].append(_spawn(service, env, self.log_dir, number))
        addresses = {"quiz-svc": self.quiz_addrs, "leaderboard-svc": self.leaderboard_addrs}
        addresses.get(service, self.persistence_addrs).append(address)
        return len(self.processes[service]) - 1, address


@contextlib.asynccontextmanager
async def embedded_stack(tmp_path: Path, extra_env: Mapping[str, str] | None = None) -> AsyncIterator[Stack]:
    ports = {"edge": free_port(), "quiz": free_port(), "leaderboard": free_port(), "persistence": free_port()}
    base = {**os.environ, "QUIZMESH_LEADERBOARD_INTERVAL_MS": "200", **LOOPBACK_LIMITS, **(extra_env or {})}
    env = embedded_env(base, ports, str(tmp_path / "embedded.sqlite3"))
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_embedded(env, stop, ready.set_result))
    watchers: list[asyncio.Future[Any]] = [task, ready]
    await asyncio.wait(watchers, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    if not ready.done():
        raise TimeoutError("the embedded stack did not become ready in 30 s")
    try:
        yield Stack(
            [f"http://127.0.0.1:{ports['edge']}"],
            [env["QUIZMESH_QUIZ_ADDR"]],
            [env["QUIZMESH_LEADERBOARD_ADDR"]],
            [env["QUIZMESH_PERSISTENCE_ADDR"]],
            mode="embedded",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _grpc_serving(address: str) -> bool:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False


async def _http_ready(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _spawn(service: str, env: Mapping[str, str], log_dir: Path, n: int) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{service}-{n}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", "from quizmesh.cli import main; main()", service],
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 15) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return int(process.returncode)


@contextlib.asynccontextmanager
async def process_stack(
    log_dir: Path,
    *,
    edges: int = 1,
    quiz_services: int = 1,
    leaderboards: int = 1,
    persistences: int = 1,
    extra_env: Mapping[str, str] | None = None,
    metrics: bool = False,
) -> AsyncIterator[Stack]:
    require_real_stack()
    common = {
        **os.environ,
        "QUIZMESH_EVENT_BUS": "kafka",
        "QUIZMESH_STATE_STORE": "redis",
        "QUIZMESH_DATABASE": "postgres",
        "QUIZMESH_KAFKA_BOOTSTRAP": REAL.kafka_bootstrap,
        "QUIZMESH_REDIS_URL": REAL.redis_url,
        "QUIZMESH_POSTGRES_DSN": REAL.postgres_dsn,
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_LEADERBOARD_INTERVAL_MS": "200",
        **LOOPBACK_LIMITS,
        # Stacks reuse the default consumer groups, like a redeploy: each starts from the offsets the
        # previous one committed instead of replaying the topics' whole history.
        **(extra_env or {}),
    }
    quiz_addrs = [f"127.0.0.1:{free_port()}" for _ in range(quiz_services)]
    leaderboard_addrs = [f"127.0.0.1:{free_port()}" for _ in range(leaderboards)]
    persistence_addrs = [f"127.0.0.1:{free_port()}" for _ in range(persistences)]
    edge_ports = [free_port() for _ in range(edges)]
    processes: dict[str, list[subprocess.Popen[bytes]]] = {}
    envs: dict[str, list[dict[str, str]]] = {}
    log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(service: str, env: dict[str, str], n: int) -> None:
        if metrics:
            env = {**env, "QUIZMESH_METRICS_PORT": str(free_port())}
        envs.setdefault(service, []).append(env)
        processes.setdefault(service, []).append(_spawn(service, env, log_dir, n))

    try:
        for i, address in enumerate(quiz_addrs):
            # quiz_svc reads PersistenceService to rebuild a quiz's live state after Redis lost it.
            quiz_env = {**common, "QUIZMESH_QUIZ_ADDR": address, "QUIZMESH_PERSISTENCE_ADDR": persistence_addrs[0]}
            spawn("quiz-svc", quiz_env, i)
        for i, address in enumerate(leaderboard_addrs):
            spawn("leaderboard-svc", {**common, "QUIZMESH_LEADERBOARD_ADDR": address}, i)
        for i, address in enumerate(persistence_addrs):
            spawn("persistence-svc", {**common, "QUIZMESH_PERSISTENCE_ADDR": address}, i)
        for i, port in enumerate(edge_ports):
            # Edges are spread over the backends, as a load balancer would.
            edge_env = {
                **common,
                "QUIZMESH_EDGE_PORT": str(port),
                "QUIZMESH_QUIZ_ADDR": quiz_addrs[i % len(quiz_addrs)],
                "QUIZMESH_LEADERBOARD_ADDR": leaderboard_addrs[i % len(leaderboard_addrs)],
                "QUIZMESH_PERSISTENCE_ADDR": persistence_addrs[i % len(persistence_addrs)],
            }
            spawn("edge", edge_env, i)
        stack = Stack(
            [f"http://127.0.0.1:{p}" for p in edge_ports],
            quiz_addrs,
            leaderboard_addrs,
            persistence_addrs,
            mode="processes",
            processes=processes,
            envs=envs,
            log_dir=log_dir,
        )
        await wait_ready(stack, log_dir)
        yield stack
    finally:
        for group in processes.values():
            for process in group:
                stop_process(process)


async def wait_ready(stack: Stack, log_dir: Path, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    pending = [("grpc", a) for a in stack.quiz_addrs + stack.leaderboard_addrs + stack.persistence_addrs] + [
        ("http", u) for u in stack.edge_urls
    ]
    while pending:
        for group in stack.processes.values():
            for process in group:
                if process.poll() is not None:
                    raise RuntimeError(f"a service exited with {process.returncode}; see the logs in {log_dir}")
        still = []
        for kind, target in pending:
            ok = await (_grpc_serving(target) if kind == "grpc" else _http_ready(target))
            if not ok:
                still.append((kind, target))
        pending = still
        if pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not ready after {timeout_s} s: {pending}; logs in {log_dir}")
            await asyncio.sleep(0.2)
