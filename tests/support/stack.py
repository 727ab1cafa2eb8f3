"""Running a whole quizmesh for end-to-end tests.

`embedded_stack` runs the four components in this test's process on in-memory engines and SQLite,
exactly as `quizmesh dev` does. `process_stack` starts each component as its own `quizmesh <service>`
process against the real Kafka, Redis and PostgreSQL, as many processes of each as asked, and ends
exactly the processes it started. Every client of a service (each edge, quiz_svc's reads of
persistence_svc) reaches all of that service's replicas through one gRPC target listing them
(`quizmesh.grpc_retry.target`), over which round_robin spreads its calls: a replica that goes down
costs only the calls in flight on it, as behind a load balancer.

On the multi-node topology (`scripts/infra.sh env --topology cluster` exported) a process stack has two
processes of each service unless asked otherwise, and the edges sit behind HAProxy (scripts/haproxy/quizmesh.cfg),
which the stack starts and ends too: `edge_urls` is then HAProxy's address, `direct_edge_urls` the edges'.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.launcher import embedded_env, run_embedded
from bench.procs import free_port, grpc_serving, http_ready
from quizmesh.grpc_retry import target
from tests.support.infra import REAL, REAL_MIGRATION_DSN, migrate_database, require_real_stack

SIGNING_KEY = "e2e-signing-key-0123456789abcdef0123456789"
# Every test client connects from 127.0.0.1, which the per-address join limit would treat as one
# flooding client: tests that need the production limits set their own.
LOOPBACK_LIMITS = {
    "QUIZMESH_EDGE_JOINS_PER_MIN": "100000",
    "QUIZMESH_EDGE_MESSAGES_PER_S": "1000",
    "QUIZMESH_EDGE_MESSAGES_BURST": "1000",
}


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
    # The edges themselves; edge_urls is HAProxy's address when the stack has one in front of them.
    direct_edge_urls: list[str] = field(default_factory=list)
    balancer: subprocess.Popen[bytes] | None = None

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
        """Starts one more process of a gRPC service in the same deployment; returns its index and address.

        Processes already running do not learn of it: their targets list the replicas they started with."""
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


def _spawn(service: str, env: Mapping[str, str], log_dir: Path, n: int) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{service}-{n}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", "from apps.cli import main; main()", service],
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_quizmesh(
    *args: str, env: Mapping[str, str], cwd: Path, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs `quizmesh ARGS` to its end (a service that refuses to start, a command) and returns what it
    printed and its exit code."""
    return subprocess.run(
        [sys.executable, "-c", "from apps.cli import main; main()", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=cwd,
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


ON_CLUSTER = REAL.redis_mode == "cluster"
HAPROXY_CONFIG = Path(__file__).resolve().parents[2] / "scripts" / "haproxy" / "quizmesh.cfg"
# Behind HAProxy: one trusted hop, and a drain longer than HAProxy needs to mark an edge down (0.6 s).
BALANCED_EDGE_ENV = {"QUIZMESH_EDGE_TRUSTED_PROXY_HOPS": "1", "QUIZMESH_EDGE_DRAIN_MS": "1500"}


@contextlib.asynccontextmanager
async def process_stack(
    log_dir: Path,
    *,
    edges: int | None = None,
    quiz_services: int | None = None,
    leaderboards: int | None = None,
    persistences: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    process_env: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
    metrics: bool = False,
) -> AsyncIterator[Stack]:
    """Counts left out are 1 each, or 2 each on the multi-node topology. `process_env` adds to the
    environment of single processes: by service, one mapping per process (a fault test points one
    quiz_svc at its own proxy in front of Redis, say)."""
    require_real_stack()
    default_count = 2 if ON_CLUSTER else 1
    common = {
        **os.environ,
        "QUIZMESH_EVENT_BUS": "kafka",
        "QUIZMESH_STATE_STORE": "redis",
        "QUIZMESH_DATABASE": "postgres",
        "QUIZMESH_KAFKA_BOOTSTRAP": REAL.kafka_bootstrap,
        "QUIZMESH_REDIS_MODE": REAL.redis_mode,
        "QUIZMESH_REDIS_URL": REAL.redis_url,
        "QUIZMESH_REDIS_PUBSUB_URL": REAL.redis_pubsub_url,
        "QUIZMESH_POSTGRES_DSN": REAL.postgres_dsn,
        "QUIZMESH_POSTGRES_REPLICA_DSN": REAL.postgres_replica_dsn,
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_LEADERBOARD_INTERVAL_MS": "200",
        **LOOPBACK_LIMITS,
        **(BALANCED_EDGE_ENV if ON_CLUSTER else {}),
        # Stacks reuse the default consumer groups, like a redeploy: each starts from the offsets the
        # previous one committed instead of replaying the topics' whole history.
        **(extra_env or {}),
    }
    # As in a deployment: the migrations first (the quizmesh-migrate Job), then the services.
    moved = extra_env or {}
    if "QUIZMESH_POSTGRES_DSN" in moved and "QUIZMESH_POSTGRES_MIGRATION_DSN" not in moved:
        raise ValueError("extra_env moves PostgreSQL: give QUIZMESH_POSTGRES_MIGRATION_DSN for it as well")
    await migrate_database(moved.get("QUIZMESH_POSTGRES_MIGRATION_DSN", REAL_MIGRATION_DSN))
    quiz_addrs = [f"127.0.0.1:{free_port()}" for _ in range(quiz_services or default_count)]
    leaderboard_addrs = [f"127.0.0.1:{free_port()}" for _ in range(leaderboards or default_count)]
    persistence_addrs = [f"127.0.0.1:{free_port()}" for _ in range(persistences or default_count)]
    edge_ports = [free_port() for _ in range(edges or default_count)]
    processes: dict[str, list[subprocess.Popen[bytes]]] = {}
    envs: dict[str, list[dict[str, str]]] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    balancer: subprocess.Popen[bytes] | None = None

    def spawn(service: str, env: dict[str, str], n: int) -> None:
        index, own = len(envs.get(service, ())), (process_env or {}).get(service, ())
        if index < len(own):
            env = {**env, **own[index]}
        if metrics:
            env = {**env, "QUIZMESH_METRICS_PORT": str(free_port())}
        envs.setdefault(service, []).append(env)
        processes.setdefault(service, []).append(_spawn(service, env, log_dir, n))

    try:
        persistence_target = target(persistence_addrs)
        for i, address in enumerate(quiz_addrs):
            # quiz_svc reads PersistenceService to rebuild a quiz's live state after Redis lost it.
            quiz_env = {**common, "QUIZMESH_QUIZ_ADDR": address, "QUIZMESH_PERSISTENCE_ADDR": persistence_target}
            spawn("quiz-svc", quiz_env, i)
        for i, address in enumerate(leaderboard_addrs):
            # leaderboard_svc reads PersistenceService to rebuild a ranking after Redis lost it.
            leaderboard_env = {
                **common,
                "QUIZMESH_LEADERBOARD_ADDR": address,
                "QUIZMESH_PERSISTENCE_ADDR": persistence_target,
            }
            spawn("leaderboard-svc", leaderboard_env, i)
        for i, address in enumerate(persistence_addrs):
            # persistence_svc's DeleteUserData renames the user's players in quiz_svc and leaderboard_svc.
            persistence_env = {
                **common,
                "QUIZMESH_PERSISTENCE_ADDR": address,
                "QUIZMESH_QUIZ_ADDR": target(quiz_addrs),
                "QUIZMESH_LEADERBOARD_ADDR": target(leaderboard_addrs),
            }
            spawn("persistence-svc", persistence_env, i)
        for i, port in enumerate(edge_ports):
            edge_env = {
                **common,
                "QUIZMESH_EDGE_PORT": str(port),
                "QUIZMESH_QUIZ_ADDR": target(quiz_addrs),
                "QUIZMESH_LEADERBOARD_ADDR": target(leaderboard_addrs),
                "QUIZMESH_PERSISTENCE_ADDR": target(persistence_addrs),
            }
            spawn("edge", edge_env, i)
        direct_edge_urls = [f"http://127.0.0.1:{p}" for p in edge_ports]
        edge_urls = direct_edge_urls
        if ON_CLUSTER and edge_ports:
            balancer, edge_urls = start_balancer(edge_ports, log_dir)
        stack = Stack(
            edge_urls,
            quiz_addrs,
            leaderboard_addrs,
            persistence_addrs,
            mode="processes",
            processes=processes,
            envs=envs,
            log_dir=log_dir,
            direct_edge_urls=direct_edge_urls,
            balancer=balancer,
        )
        await wait_ready(stack, log_dir)
        yield stack
    finally:
        stop_all([process for group in processes.values() for process in group])
        if balancer is not None:
            stop_process(balancer)


def start_balancer(edge_ports: list[int], log_dir: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    """HAProxy in front of two edges, as scripts/haproxy/quizmesh.cfg sets it up; returns it and its URL."""
    if len(edge_ports) != 2:
        raise ValueError(f"scripts/haproxy/quizmesh.cfg balances exactly 2 edges, not {len(edge_ports)}")
    port = free_port()
    env = {
        **os.environ,
        "QUIZMESH_LB_BIND": f"127.0.0.1:{port}",
        "QUIZMESH_LB_EDGE_1": f"127.0.0.1:{edge_ports[0]}",
        "QUIZMESH_LB_EDGE_2": f"127.0.0.1:{edge_ports[1]}",
    }
    log = (log_dir / "haproxy.log").open("wb")
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(HAPROXY_CONFIG)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, [f"http://127.0.0.1:{port}"]


def stop_all(processes: list[subprocess.Popen[bytes]], timeout_s: float = 15) -> None:
    """SIGTERM to all at once, then waits for each: draining edges and services shut down side by side."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        stop_process(process, timeout_s=timeout_s)


@contextlib.asynccontextmanager
async def stack_of_kind(kind: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole quizmesh, `embedded` in this process or as separate `processes` on the real infrastructure:
    what a test parametrised over both runs against."""
    if kind == "embedded":
        async with embedded_stack(tmp_path) as running:
            yield running
    else:
        async with process_stack(tmp_path / "logs") as running:
            yield running


async def wait_ready(stack: Stack, log_dir: Path, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    edges = stack.direct_edge_urls or stack.edge_urls
    pending = [("grpc", a) for a in stack.quiz_addrs + stack.leaderboard_addrs + stack.persistence_addrs] + [
        ("http", u) for u in dict.fromkeys([*edges, *stack.edge_urls])
    ]
    logs = {log_dir / f"{name}-{n}.log": p for name, group in stack.processes.items() for n, p in enumerate(group)}
    if stack.balancer is not None:
        logs[log_dir / "haproxy.log"] = stack.balancer
    while pending:
        for log, process in logs.items():
            if process.poll() is not None:
                # CI keeps no files: the end of the log is the only trace of why the process stopped.
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{log.stem} exited with {process.returncode} before ready; it logged:\n{tail}")
        still = []
        for kind, where in pending:
            ok = await (grpc_serving(where) if kind == "grpc" else http_ready(f"{where}/readyz"))
            if not ok:
                still.append((kind, where))
        pending = still
        if pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not ready after {timeout_s} s: {pending}; logs in {log_dir}")
            await asyncio.sleep(0.2)
