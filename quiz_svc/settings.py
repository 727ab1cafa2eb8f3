"""quiz_svc's configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from quizmesh.settings import PERSISTENCE_ADDR, QUIZ_ADDR, SIGNING_KEY, Integer, Variables, signing_key

PUBLISH_TIMEOUT_MS = Integer(
    "QUIZMESH_QUIZ_PUBLISH_TIMEOUT_MS",
    "How long a join or an answer waits for Kafka to acknowledge its event before the client is told "
    "`unavailable` (retrying is safe).",
    default=3000,
    minimum=100,
)
SCHEDULER_TICK_MS = Integer(
    "QUIZMESH_QUIZ_SCHEDULER_TICK_MS",
    "How often the deadline scheduler closes the questions whose time is up.",
    default=100,
    minimum=10,
)
SHUTDOWN_GRACE_S = Integer(
    "QUIZMESH_SHUTDOWN_GRACE_S",
    "quiz_svc's shutdown: how long calls in flight may finish once it stops taking new ones.",
    default=10,
)


@dataclass(frozen=True)
class Settings:
    VARIABLES: ClassVar[Variables] = (
        QUIZ_ADDR,
        PERSISTENCE_ADDR,
        SIGNING_KEY,
        PUBLISH_TIMEOUT_MS,
        SCHEDULER_TICK_MS,
        SHUTDOWN_GRACE_S,
    )

    address: str
    persistence_address: str
    signing_key: bytes
    publish_timeout_ms: int
    scheduler_tick_ms: int
    shutdown_grace_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            address=QUIZ_ADDR.read(env),
            persistence_address=PERSISTENCE_ADDR.read(env),
            signing_key=signing_key(env),
            publish_timeout_ms=PUBLISH_TIMEOUT_MS.read(env),
            scheduler_tick_ms=SCHEDULER_TICK_MS.read(env),
            shutdown_grace_s=SHUTDOWN_GRACE_S.read(env),
        )
