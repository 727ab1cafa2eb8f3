"""`python -m bench profile`: where each service spends its CPU under the pipeline's load.

The deployment of the pipeline benchmark runs a steady load (1,000 answers/s by default); once every
player has joined, py-spy samples each service for a while without stopping it (`--nonblocking`), and
the samples' stacks are folded into the frames that cost most: by themselves (self) and with what they
call (total). Idle samples (a loop waiting in select/epoll) are not recorded, so the shares are shares
of the CPU the process used.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadtest
from bench.pipeline import Deployment, steady_plan

# Seconds the load runs before sampling starts: every player has joined and the batches are steady.
_WARM_UP_S = 20.0


@dataclass(frozen=True)
class Frames:
    """One service's folded samples."""

    samples: int
    self_counts: Counter[str]
    total_counts: Counter[str]

    def top(self, counts: Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"frame": frame, "share": round(count / self.samples, 3)} for frame, count in counts.most_common(n)]


def fold(raw: str) -> Frames:
    """py-spy's raw format: one line a stack, frames from the root joined by ';', then its count."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        samples += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count
    return Frames(samples, self_counts, total_counts)


def _short(frame: str) -> str:
    """`handle (quiz_svc/service.py:120)` → `handle (quiz_svc/service.py)`: lines within a function fold
    together, and site-packages paths lose their prefix."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return f"{name} ({path})"


async def _record(pid: int, seconds: float, out: Path) -> Frames:
    process = await asyncio.create_subprocess_exec(
        _py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"py-spy failed for pid {pid}: {stderr.decode(errors='replace')[-500:]}")
    return fold(await asyncio.to_thread(out.read_text))


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


async def run(
    log_dir: Path, *, players: int = 2000, seconds: float = 30.0, top: int = 25, services_from: Path | None = None
) -> dict[str, Any]:
    """Profiles every service of one deployment at players / 2 answers/s."""
    deployment = Deployment(log_dir, "-profile", code_dir=services_from)
    await deployment.start()
    results: dict[str, Any] = {"answers_per_s": players // 2, "seconds": seconds}
    try:
        plan = steady_plan(deployment.url, players, _WARM_UP_S + seconds + 10)
        load = asyncio.create_task(loadtest.run(plan, progress=lambda line: None))
        await asyncio.sleep(_WARM_UP_S)
        names = list(deployment.children)
        recorded = await asyncio.gather(
            *(_record(deployment.children[name].pid, seconds, log_dir / f"profile-{name}.txt") for name in names)
        )
        report = await load
        results["answers_accepted"] = report["answers_accepted"]
        results["services"] = {
            name: {
                "samples": frames.samples,
                "self": frames.top(frames.self_counts, top),
                "total": frames.top(frames.total_counts, top),
            }
            for name, frames in zip(names, recorded, strict=True)
        }
    finally:
        deployment.stop()
    return results
