"""quiz_svc's configuration, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from quizmesh.identity import IdentitySettings
from quizmesh.settings import (
    PERSISTENCE_ADDR,
    QUIZ_ADDR,
    SIGNING_KEY,
    FromEnvironment,
    Integer,
    SettingsError,
    nested,
    reads,
    setting,
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
class Settings(FromEnvironment):
    address: str = setting(QUIZ_ADDR)
    persistence_address: str = setting(PERSISTENCE_ADDR)
    # Required, and never shown: `quizmesh.settings.signing_key` reads it and refuses a short one.
    signing_key: bytes = field(kw_only=True, repr=False, metadata=reads(SIGNING_KEY, read=signing_key))
    publish_timeout_ms: int = setting(PUBLISH_TIMEOUT_MS)
    scheduler_tick_ms: int = setting(SCHEDULER_TICK_MS)
    shutdown_grace_s: int = setting(SHUTDOWN_GRACE_S)
    heartbeat_ms: int = setting(HEARTBEAT_MS)
    liveness_ttl_ms: int = setting(LIVENESS_TTL_MS)
    receipt_grace_ms: int = setting(RECEIPT_GRACE_MS)
    identity: IdentitySettings = nested(IdentitySettings)

    def __post_init__(self) -> None:
        if self.liveness_ttl_ms < 3 * self.heartbeat_ms:
            raise SettingsError(
                "QUIZMESH_QUIZ_LIVENESS_TTL_MS must be at least 3 × QUIZMESH_QUIZ_HEARTBEAT_MS, so that a late "
                "heartbeat or two does not get a living process taken for dead"
            )
