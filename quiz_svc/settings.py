"""quiz_svc's configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from quizmesh.identity import IDENTITY_VARIABLES, IdentitySettings
from quizmesh.settings import (
    PERSISTENCE_ADDR,
    QUIZ_ADDR,
    SIGNING_KEY,
    Integer,
    SettingsError,
    Variables,
    signing_key,
)

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
HEARTBEAT_MS = Integer(
    "QUIZMESH_QUIZ_HEARTBEAT_MS",
    "How often a quiz_svc process renews its liveness, by which others know its claims are still being worked on.",
    default=500,
    minimum=50,
)
LIVENESS_TTL_MS = Integer(
    "QUIZMESH_QUIZ_LIVENESS_TTL_MS",
    "How long after its last heartbeat a quiz_svc process is taken for dead and its claimed answers and "
    "unfinished host actions are recovered by another (at least 3 heartbeats).",
    default=3000,
    minimum=200,
)
RECEIPT_GRACE_MS = Integer(
    "QUIZMESH_QUIZ_RECEIPT_GRACE_MS",
    "How old an edge's receipt time of an answer may be when it reaches quiz_svc (an outage or failover in "
    "between); older ones are judged at quiz_svc's own time.",
    default=30_000,
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
        HEARTBEAT_MS,
        LIVENESS_TTL_MS,
        RECEIPT_GRACE_MS,
        *IDENTITY_VARIABLES,
    )

    address: str
    persistence_address: str
    signing_key: bytes
    publish_timeout_ms: int
    scheduler_tick_ms: int
    shutdown_grace_s: int
    heartbeat_ms: int = 500
    liveness_ttl_ms: int = 3000
    receipt_grace_ms: int = 30_000
    identity: IdentitySettings = field(default_factory=IdentitySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            address=QUIZ_ADDR.read(env),
            persistence_address=PERSISTENCE_ADDR.read(env),
            signing_key=signing_key(env),
            publish_timeout_ms=PUBLISH_TIMEOUT_MS.read(env),
            scheduler_tick_ms=SCHEDULER_TICK_MS.read(env),
            shutdown_grace_s=SHUTDOWN_GRACE_S.read(env),
            heartbeat_ms=HEARTBEAT_MS.read(env),
            liveness_ttl_ms=LIVENESS_TTL_MS.read(env),
            receipt_grace_ms=RECEIPT_GRACE_MS.read(env),
            identity=IdentitySettings.from_env(env),
        )

    def __post_init__(self) -> None:
        if self.liveness_ttl_ms < 3 * self.heartbeat_ms:
            raise SettingsError(
                "QUIZMESH_QUIZ_LIVENESS_TTL_MS must be at least 3 × QUIZMESH_QUIZ_HEARTBEAT_MS, so that a late "
                "heartbeat or two does not get a living process taken for dead"
            )
