"""leaderboard_svc's configuration, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from quizmesh.settings import env_int, env_str


@dataclass(frozen=True)
class Settings:
    address: str  # host:port to serve gRPC on; port 0 picks a free one
    interval_ms: int  # a quiz's leaderboard is published at most once per interval
    consumer_group: str  # every process of one deployment shares it, splitting the partitions
    ranking_ttl_s: int  # a quiz's ranking is dropped from Redis this long after its last change
    batch_wait_ms: int  # how long Kafka may hold a fetch of events for more; small next to interval_ms
    # PersistenceService, which a Redis ranking is rebuilt from (host:port, or a gRPC target list).
    persistence_address: str = "127.0.0.1:50053"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            address=env_str(env, "QUIZMESH_LEADERBOARD_ADDR", "127.0.0.1:50052"),
            interval_ms=env_int(env, "QUIZMESH_LEADERBOARD_INTERVAL_MS", 500, minimum=1),
            consumer_group=env_str(env, "QUIZMESH_LEADERBOARD_GROUP", "leaderboard_svc"),
            ranking_ttl_s=env_int(env, "QUIZMESH_LEADERBOARD_TTL_S", 86_400, minimum=60),
            batch_wait_ms=env_int(env, "QUIZMESH_LEADERBOARD_BATCH_WAIT_MS", 20, minimum=0),
            persistence_address=env_str(env, "QUIZMESH_PERSISTENCE_ADDR", "127.0.0.1:50053"),
        )
