"""Starting quizmesh's components in this process, each under its own composition root.

`quizmesh <service>` runs one component, as in production; `quizmesh dev` (the embedded mode) runs
all four in one process on one shared in-memory bus, behind the same gRPC contracts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from edge import main as edge_main
from edge.settings import Settings as EdgeSettings
from leaderboard_svc import main as leaderboard_main
from leaderboard_svc.settings import Settings as LeaderboardSettings
from persistence_svc import main as persistence_main
from persistence_svc.settings import Settings as PersistenceSettings
from quiz_svc import main as quiz_main
from quiz_svc.settings import Settings as QuizSettings
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines, signing_key
from quizmesh.telemetry import Telemetry, setup_telemetry

log = logging.getLogger(__name__)

Settings = TypeVar("Settings")
OnReady = Callable[[int], None] | None
ServiceRunner = Callable[[Runtime, Mapping[str, str], asyncio.Event, OnReady], Coroutine[Any, Any, None]]


def _component(
    read_settings: Callable[[Mapping[str, str]], Settings],
    run: Callable[[Runtime, Settings, asyncio.Event, OnReady], Awaitable[None]],
) -> ServiceRunner:
    """Starts a component: its settings from the environment, then its composition root."""

    async def start(runtime: Runtime, env: Mapping[str, str], stop: asyncio.Event, on_ready: OnReady) -> None:
        await run(runtime, read_settings(env), stop, on_ready)

    return start


SERVICES: dict[str, ServiceRunner] = {
    "quiz-svc": _component(QuizSettings.from_env, quiz_main.run),
    "leaderboard-svc": _component(LeaderboardSettings.from_env, leaderboard_main.run),
    "persistence-svc": _component(PersistenceSettings.from_env, persistence_main.run),
    "edge": _component(EdgeSettings.from_env, edge_main.run),
}


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def serve_one(name: str, env: Mapping[str, str] = os.environ) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    telemetry = setup_telemetry(name, env)
    try:
        await SERVICES[name](Runtime(Engines.from_env(env), telemetry=telemetry), env, stop, None)
    finally:
        telemetry.close()


def embedded_env(base: Mapping[str, str], ports: Mapping[str, int], sqlite_path: str) -> dict[str, str]:
    """The environment of the embedded mode: in-memory engines, SQLite, loopback addresses."""
    env = dict(base)
    env.update(
        QUIZMESH_EVENT_BUS="memory",
        QUIZMESH_STATE_STORE="memory",
        QUIZMESH_DATABASE="sqlite",
        QUIZMESH_SQLITE_PATH=sqlite_path,
        QUIZMESH_QUIZ_ADDR=f"127.0.0.1:{ports['quiz']}",
        QUIZMESH_LEADERBOARD_ADDR=f"127.0.0.1:{ports['leaderboard']}",
        QUIZMESH_PERSISTENCE_ADDR=f"127.0.0.1:{ports['persistence']}",
        QUIZMESH_EDGE_PORT=str(ports["edge"]),
    )
    if not env.get("QUIZMESH_SIGNING_KEY") and not env.get("QUIZMESH_SIGNING_KEY_FILE"):
        # A throwaway key: credentials of the embedded mode do not survive a restart, by design.
        env["QUIZMESH_SIGNING_KEY"] = signing_key({}, allow_ephemeral=True).hex()
    return env


async def run_embedded(
    env: Mapping[str, str],
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
    *,
    telemetry: Telemetry | None = None,
) -> None:
    """All four components in this process. on_ready receives the edge's port once all serve.

    The components share the process's telemetry (one metrics endpoint), set up here unless given."""
    if telemetry is None:
        telemetry = setup_telemetry("quizmesh", env)
        try:
            await run_embedded(env, stop, on_ready, telemetry=telemetry)
        finally:
            telemetry.close()
        return
    runtime = Runtime(Engines.from_env(env), telemetry=telemetry)
    backends_ready = asyncio.Event()
    pending = {"quiz-svc", "leaderboard-svc", "persistence-svc"}

    def backend_ready(name: str) -> Callable[[int], None]:
        def ready(_port: int) -> None:
            pending.discard(name)
            if not pending:
                backends_ready.set()

        return ready

    async def edge_after_backends() -> None:
        await backends_ready.wait()
        await SERVICES["edge"](runtime, env, stop, on_ready)

    async with asyncio.TaskGroup() as group:
        for name in sorted(pending):
            group.create_task(SERVICES[name](runtime, env, stop, backend_ready(name)), name=name)
        group.create_task(edge_after_backends(), name="edge")
