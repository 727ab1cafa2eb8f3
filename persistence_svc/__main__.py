"""`python -m persistence_svc`: runs the service alone, configured from the environment."""

from __future__ import annotations

import asyncio
import logging
import signal

from persistence_svc.main import run
from persistence_svc.settings import Settings
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines


async def _serve() -> None:
    settings = Settings.from_env()
    runtime = Runtime(Engines.from_env())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(runtime, settings, stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve())
