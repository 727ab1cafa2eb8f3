"""Waiting until persistence_svc has stored everything Kafka holds of one quiz.

A quiz's live state (quiz_svc) and ranking (leaderboard_svc) are rebuilt from what persistence_svc
stored once Redis lost them. The sink may lag behind Kafka (stopped, paused, or simply busy), and a
rebuild that read only the rows stored so far would miss answers Kafka already holds: players' later
totals would come out too low, and an answer the rebuild does not know could be accepted a second time.

The sink commits a partition's offsets only once the batch is in the primary database. So once the
group's committed offset on each sink topic's partition of the quiz has reached the end the partition had
when the read began, the primary holds every event of the quiz that Kafka held then.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from persistence_svc.consumer import SINK_TOPICS
from quizmesh.eventbus.ports import EventBusUnavailable, GroupProgress

POLL_S = 0.05


class NotCaughtUp(Exception):
    """The sink had not stored everything Kafka held of the quiz within the time allowed."""


@dataclass(frozen=True)
class CatchUp:
    """Waits for the sink's consumer group (every persistence_svc process of the deployment shares it)."""

    progress: GroupProgress
    group: str
    poll_s: float = POLL_S

    async def wait(self, quiz_id: str, within_s: float) -> None:
        """Returns once the group has committed, on the quiz's partition of every sink topic, the end the
        partition had when called; raises NotCaughtUp if that takes longer than within_s, or if Kafka
        cannot tell."""
        started = time.monotonic()
        behind: int | None = None
        try:
            async with asyncio.timeout(within_s):
                ends = await self.progress.end_offsets(SINK_TOPICS, quiz_id)
                while True:
                    committed = await self.progress.committed(self.group, list(ends))
                    behind = sum(max(0, end - committed[partition]) for partition, end in ends.items())
                    if behind == 0:
                        return
                    await asyncio.sleep(self.poll_s)
        except TimeoutError:
            raise NotCaughtUp(
                f"persistence_svc had not stored every event Kafka holds of quiz {quiz_id} after "
                f"{time.monotonic() - started:.1f} s ({behind if behind is not None else 'an unknown number of'} "
                "records of its partitions still to store: its consumers lag or are down)"
            ) from None
        except EventBusUnavailable as exc:
            raise NotCaughtUp(f"Kafka could not tell how far persistence_svc has stored quiz {quiz_id}: {exc}") from exc
