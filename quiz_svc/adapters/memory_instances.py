"""The registry of quiz_svc processes in process memory: for the embedded mode (one process, which
never finds another dead) and for tests that play several processes sharing one in-memory game store."""

from __future__ import annotations

import time
from collections.abc import Sequence

from quiz_svc.ports import Heartbeat


class InMemoryInstanceRegistry:
    def __init__(self) -> None:
        self._expiry: dict[str, int] = {}
        self._quizzes: dict[str, set[str]] = {}
        self._adopted: dict[str, float] = {}  # dead process -> monotonic time its adoption lapses

    async def beat(self, instance_id: str, now_ms: int, ttl_ms: int, dead_for_ms: int = 0) -> Heartbeat:
        was_given_up = instance_id not in self._expiry
        self._expiry[instance_id] = now_ms + ttl_ms
        return Heartbeat(
            live=frozenset(i for i, until in self._expiry.items() if until >= now_ms),
            dead=tuple(sorted(i for i, until in self._expiry.items() if until < now_ms - dead_for_ms)),
            was_given_up=was_given_up,
        )

    async def register(self, instance_id: str, quiz_ids: Sequence[str]) -> None:
        self._quizzes.setdefault(instance_id, set()).update(quiz_ids)

    async def quizzes(self, instance_id: str) -> list[str]:
        return sorted(self._quizzes.get(instance_id, ()))

    async def adopt(self, dead_id: str, adopter_id: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        if self._adopted.get(dead_id, 0.0) > now:
            return False
        self._adopted[dead_id] = now + ttl_ms / 1000
        return True

    async def forget(self, instance_id: str) -> None:
        self._expiry.pop(instance_id, None)

    async def retire(self, instance_id: str) -> None:
        if instance_id in self._expiry:
            self._expiry[instance_id] = 0

    async def close(self) -> None:
        return None
