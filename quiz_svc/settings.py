"""quiz_svc's configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from quizmesh.settings import SettingsError, env_int, env_str


@dataclass(frozen=True)
class Settings:
    address: str
    persistence_address: str
    publish_timeout_ms: int
    scheduler_tick_ms: int
    shutdown_grace_s: int
    heartbeat_ms: int = 500
    liveness_ttl_ms: int = 3000
    receipt_grace_ms: int = 30_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            address=env_str(env, "QUIZMESH_QUIZ_ADDR", "127.0.0.1:50051"),
            persistence_address=env_str(env, "QUIZMESH_PERSISTENCE_ADDR", "127.0.0.1:50053"),
            publish_timeout_ms=env_int(env, "QUIZMESH_QUIZ_PUBLISH_TIMEOUT_MS", 3000, minimum=100),
            scheduler_tick_ms=env_int(env, "QUIZMESH_QUIZ_SCHEDULER_TICK_MS", 100, minimum=10),
            shutdown_grace_s=env_int(env, "QUIZMESH_SHUTDOWN_GRACE_S", 10, minimum=0),
            heartbeat_ms=env_int(env, "QUIZMESH_QUIZ_HEARTBEAT_MS", 500, minimum=50),
            liveness_ttl_ms=env_int(env, "QUIZMESH_QUIZ_LIVENESS_TTL_MS", 3000, minimum=200),
            receipt_grace_ms=env_int(env, "QUIZMESH_QUIZ_RECEIPT_GRACE_MS", 30_000, minimum=0),
        )

    def __post_init__(self) -> None:
        if self.liveness_ttl_ms < 3 * self.heartbeat_ms:
            raise SettingsError(
                "QUIZMESH_QUIZ_LIVENESS_TTL_MS must be at least 3 × QUIZMESH_QUIZ_HEARTBEAT_MS, so that a late "
                "heartbeat or two does not get a living process taken for dead"
            )
