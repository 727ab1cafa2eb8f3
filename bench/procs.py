"""Starting, pinning, measuring and stopping the processes a benchmark runs.

Every child is started here with its own PID recorded and is stopped by that PID, never by name.
CPU time and memory are read from /proc, so nothing beyond the standard library is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Every simulated player connects from 127.0.0.1, so the edge's per-address limits must not apply.
LOOPBACK_EDGE_LIMITS = {
    "QUIZMESH_EDGE_JOINS_PER_MIN": "100000000",
    "QUIZMESH_EDGE_MESSAGES_PER_S": "1000000",
    "QUIZMESH_EDGE_MESSAGES_BURST": "1000000",
}

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this lie the fixed ports scripts/infra.sh gives its servers (and Redis Cluster's bus ports).
_LOWEST_HANDED_OUT = 27000


def _port_pool() -> range:
    """Ports the kernel never picks for an outgoing connection, where there are enough of them. A port
    the kernel chooses (bind to 0) lies in that ephemeral range: between its choice and the server's
    bind, some client's connection could take it, and CI runs failed so."""
    try:
        low, high = map(int, _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return range(0)
    for pool in (range(high + 1, 65536), range(_LOWEST_HANDED_OUT, low)):
        if len(pool) >= 1000:
            return pool
    return range(0)


class _Ports:
    """Hands out loopback ports in turn, each free when handed out and none twice until the pool wraps
    round. Two stacks started one after the other never share a port; the kernel's own choice could
    give the same port twice (a few stacks in a thousand), and two gRPC servers would then both bind
    it and share its connections."""

    def __init__(self) -> None:
        self._pool = _port_pool()
        self._next = random.randrange(len(self._pool)) if self._pool else 0
        self._given: set[int] = set()

    def take(self, count: int) -> int:
        """The first of `count` consecutive ports free now."""
        if not self._pool:
            return self._kernel_choice(count)
        for _ in range(len(self._pool)):
            first = self._pool[self._next]
            self._next = (self._next + count) % len(self._pool)
            if first + count - 1 in self._pool and _bindable(range(first, first + count)):
                return first
        raise OSError(f"no {count} consecutive free ports in {self._pool}")

    def _kernel_choice(self, count: int) -> int:
        while True:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                first = int(probe.getsockname()[1])
            ports = range(first, first + count)
            if self._given.isdisjoint(ports) and ports[-1] < 65536 and _bindable(ports):
                self._given.update(ports)
                return first


def _bindable(ports: range) -> bool:
    with contextlib.ExitStack() as held:
        try:
            for port in ports:
                held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_ports = _Ports()


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to be started."""
    return _ports.take(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports, for a process that binds a run of them."""
    return _ports.take(count)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its direct children (PostgreSQL works in its postmaster's children).

    Children that already exited count through the parent's reaped-children time, so a PostgreSQL backend
    closing during a window moves its CPU from one term to the other instead of dropping it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / _TICKS
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _TICKS
    return total


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    cpus: Sequence[int] = (),
    cwd: Path | None = None,
) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{name}.log").open("wb")
    command = ["taskset", "-c", ",".join(map(str, cpus)), *argv] if cpus else list(argv)
    process = subprocess.Popen(
        command, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Child(name, process)


def spawn_service(
    service: str,
    env: Mapping[str, str],
    log_dir: Path,
    cpus: Sequence[int] = (),
    tag: str = "",
    code_dir: Path | None = None,
) -> Child:
    """Starts a service from this checkout, or from code_dir: another checkout of quizmesh (a `git worktree`
    of an earlier commit, say), whose packages then come first on the service's import path."""
    argv = [sys.executable, "-c", f"from {_command_module(code_dir)} import main; main()", service]
    if code_dir is not None:
        env = {**env, "PYTHONPATH": str(code_dir)}
    return spawn(f"{service}{tag}", argv, env, log_dir, cpus, cwd=code_dir)


def has_migrations(code_dir: Path | None) -> bool:
    """Whether the checkout's services need `quizmesh migrate` before they start; an earlier one's create
    their tables themselves."""
    root = code_dir if code_dir is not None else Path(__file__).resolve().parents[1]
    return (root / "quiz_svc" / "migrations").is_dir()


def _command_module(code_dir: Path | None) -> str:
    """The module of the `quizmesh` command in the checkout that runs the service: apps.cli, or
    quizmesh.cli in a checkout from before the applications moved out of the runtime (`--services-from`
    an earlier commit)."""
    root = code_dir if code_dir is not None else Path(__file__).resolve().parents[1]
    return "apps.cli" if (root / "apps" / "cli.py").is_file() else "quizmesh.cli"


async def grpc_serving(address: str, service: str = "") -> bool:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False


async def http_ready(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def wait_ready(
    children: Sequence[Child], grpc_addrs: Sequence[str], http_urls: Sequence[str], timeout_s: float = 90
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = [("grpc", a) for a in grpc_addrs] + [("http", u) for u in http_urls]
    while pending:
        for child in children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see its log")
        pending = [
            (kind, target)
            for kind, target in pending
            if not await (grpc_serving(target) if kind == "grpc" else http_ready(target))
        ]
        if pending:
            if loop.time() > deadline:
                raise TimeoutError(f"not ready after {timeout_s} s: {pending}")
            await asyncio.sleep(0.2)


class CpuMeter:
    """CPU seconds used by named processes between start() and stop()."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wall = asyncio.get_running_loop().time()

    def stop(self) -> tuple[dict[str, float], float]:
        used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        return used, asyncio.get_running_loop().time() - self._wall
