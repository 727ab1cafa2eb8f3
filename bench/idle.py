"""The stack's fixed cost: each process's CPU with every service up and nothing to do.

What an idle stack spends is paid at every rate, and per answer it weighs most where answers are few:
0.1 of a core is 200 µs per answer at 500 answers/s. It comes from loops that wake on a timer (polls,
ticks, heartbeats) and from what they make Kafka, Redis and PostgreSQL do.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.pipeline import Deployment, infra_pids, process_cpu_seconds

# Long enough for start-up's own work (consumer groups joining, first heartbeats) to be over.
SETTLE_S = 10.0


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: process_cpu_seconds(name, pid) for name, pid in pids.items()}


async def run(log_dir: Path, *, seconds: float = 30.0, services_from: Path | None = None) -> dict[str, Any]:
    """Cores each process used over `seconds` with the stack up and no players, quizzes or calls."""
    deployment = Deployment(log_dir, "-idle", code_dir=services_from)
    await deployment.start()
    try:
        pids = {name: child.pid for name, child in deployment.children.items()}
        pids.update({f"infra:{name}": pid for name, pid in infra_pids(deployment.topology).items()})
        await asyncio.sleep(SETTLE_S)
        before, started = _cpu(pids), time.monotonic()
        await asyncio.sleep(seconds)
        after, elapsed = _cpu(pids), time.monotonic() - started
    finally:
        deployment.stop()
    cores = {name: round((after[name] - before[name]) / elapsed, 4) for name in pids}
    return {"seconds": round(elapsed, 1), "cores": cores, "total_cores": round(sum(cores.values()), 4)}
