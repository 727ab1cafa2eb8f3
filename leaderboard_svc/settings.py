"""leaderboard_svc's configuration, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from quizmesh.settings import LEADERBOARD_ADDR, PERSISTENCE_ADDR, Integer, Text, Variables

INTERVAL_MS = Integer(
    "QUIZMESH_LEADERBOARD_INTERVAL_MS",
    "A quiz's leaderboard is published at most once per interval (and not at all while nothing changes).",
    default=500,
    minimum=1,
)
GROUP = Text(
    "QUIZMESH_LEADERBOARD_GROUP",
    "The Kafka consumer group; every leaderboard_svc process of one deployment shares it, splitting the partitions.",
    default="leaderboard_svc",
)
TTL_S = Integer(
    "QUIZMESH_LEADERBOARD_TTL_S",
    "A quiz's ranking is dropped from Redis this long after its last change.",
    default=86_400,
    minimum=60,
)
BATCH_WAIT_MS = Integer(
    "QUIZMESH_LEADERBOARD_BATCH_WAIT_MS",
    "How long Kafka may hold a fetch of events for more; keep it small next to the interval.",
    default=20,
)


@dataclass(frozen=True)
class Settings:
    VARIABLES: ClassVar[Variables] = (LEADERBOARD_ADDR, INTERVAL_MS, GROUP, TTL_S, BATCH_WAIT_MS, PERSISTENCE_ADDR)

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
            address=LEADERBOARD_ADDR.read(env),
            interval_ms=INTERVAL_MS.read(env),
            consumer_group=GROUP.read(env),
            ranking_ttl_s=TTL_S.read(env),
            batch_wait_ms=BATCH_WAIT_MS.read(env),
            persistence_address=PERSISTENCE_ADDR.read(env),
        )
