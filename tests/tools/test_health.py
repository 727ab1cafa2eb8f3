"""grpc.health.v1 tells the truth on every service: never SERVING before its dependencies answer, and
NOT_SERVING from the moment shutdown starts, before the server stops taking calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apps.launcher import SERVICES
from bench.procs import free_port
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from tests.support.stack import SIGNING_KEY

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNREACHABLE = "unreachable"
SERVICE_NAMES = {
    "quiz-svc": "quizmesh.quiz.v1.QuizService",
    "leaderboard-svc": "quizmesh.leaderboard.v1.LeaderboardService",
    "persistence-svc": "quizmesh.persistence.v1.PersistenceService",
}


async def _check(address: str, service: str = "") -> int | str:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=0.2
            )
            return int(reply.status)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), exc
        return UNREACHABLE


@contextlib.asynccontextmanager
async def _silent_dependency() -> AsyncIterator[str]:
    """A TCP endpoint that accepts connections and never answers, like a hung Redis or PostgreSQL."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def _env_with_silent(name: str, silent: str, address: str, tmp_path: Path) -> Mapping[str, str]:
    env = {
        "QUIZMESH_EVENT_BUS": "memory",
        "QUIZMESH_STATE_STORE": "memory",
        "QUIZMESH_DATABASE": "sqlite",
        "QUIZMESH_SQLITE_PATH": str(tmp_path / "health.sqlite3"),
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_QUIZ_ADDR": address,
        "QUIZMESH_LEADERBOARD_ADDR": address,
        "QUIZMESH_PERSISTENCE_ADDR": address,
    }
    if name == "persistence-svc":  # its one dependency is its database
        env.update(QUIZMESH_DATABASE="postgres", QUIZMESH_POSTGRES_DSN=f"postgresql://u:p@{silent}/db")
    else:
        env.update(QUIZMESH_STATE_STORE="redis", QUIZMESH_REDIS_URL=f"redis://{silent}/0")
    return env


def _on_ready(event: asyncio.Event) -> Callable[[int], None]:
    return lambda _port: event.set()


@pytest.mark.parametrize("name", sorted(SERVICE_NAMES))
async def test_a_service_is_never_serving_while_a_dependency_does_not_answer(name: str, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with _silent_dependency() as silent:
        env = _env_with_silent(name, silent, address, tmp_path)
        ready = asyncio.Event()
        service = asyncio.create_task(
            SERVICES[name](Runtime(Engines.from_env(env)), env, asyncio.Event(), _on_ready(ready))
        )
        try:
            answers = set()
            # About a second of probing, well inside the dependencies' own 5 s deadlines.
            deadline = asyncio.get_running_loop().time() + 1
            while asyncio.get_running_loop().time() < deadline:
                answers |= {await _check(address), await _check(address, SERVICE_NAMES[name])}
                await asyncio.sleep(0.05)
            assert not service.done(), "the service gave up early; the window tested nothing"
        finally:
            service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service
    assert not ready.is_set()
    assert SERVING not in answers
    if name == "leaderboard-svc":
        # It listens before its dependencies answer (after a moment of starting), and says it is not serving.
        assert answers - {UNREACHABLE} == {NOT_SERVING}


async def _watch_until_not_serving(address: str, service: str, serving: asyncio.Event) -> list[int | str]:
    """Every status the Watch stream reports, until NOT_SERVING follows SERVING (then it hangs up, so the
    server's graceful stop need not wait for it) or the stream ends."""
    seen: list[int | str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async for reply in health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=service)
            ):
                seen.append(int(reply.status))
                if reply.status == SERVING:
                    serving.set()
                elif SERVING in seen:
                    return seen
        except grpc.aio.AioRpcError as exc:
            seen.append(f"ended: {exc.code().name}")
    return seen


async def test_every_service_turns_not_serving_when_shutdown_starts(tmp_path: Path) -> None:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICE_NAMES}
    env = {
        "QUIZMESH_EVENT_BUS": "memory",
        "QUIZMESH_STATE_STORE": "memory",
        "QUIZMESH_DATABASE": "sqlite",
        "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
        "QUIZMESH_QUIZ_ADDR": addresses["quiz-svc"],
        "QUIZMESH_LEADERBOARD_ADDR": addresses["leaderboard-svc"],
        "QUIZMESH_PERSISTENCE_ADDR": addresses["persistence-svc"],
    }
    runtime = Runtime(Engines.from_env(env))  # one in-memory bus, as in the embedded mode
    stop = asyncio.Event()
    watches: dict[tuple[str, str], asyncio.Task[list[int | str]]] = {}
    serving: list[asyncio.Event] = []
    ready = {name: asyncio.Event() for name in SERVICE_NAMES}
    async with asyncio.TaskGroup() as services:
        for name in SERVICE_NAMES:
            # Each its own SQLite file: this test is about health, not about sharing one database.
            own = {**env, "QUIZMESH_SQLITE_PATH": str(tmp_path / f"{name}.sqlite3")}
            services.create_task(SERVICES[name](runtime, own, stop, _on_ready(ready[name])))
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready.values())), 10)
        for name, address in addresses.items():
            for service in ("", SERVICE_NAMES[name]):
                serving.append(asyncio.Event())
                watches[(name, service)] = asyncio.create_task(_watch_until_not_serving(address, service, serving[-1]))
        try:
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in serving)), 10)
        finally:
            stop.set()
    # Each watch saw SERVING, then NOT_SERVING before its stream ended.
    seen = {key: await asyncio.wait_for(task, 10) for key, task in watches.items()}
    assert seen == {key: [SERVING, NOT_SERVING] for key in watches}
