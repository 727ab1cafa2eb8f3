"""leaderboard_svc's configuration, read from the environment once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from quizmesh.settings import LEADERBOARD_ADDR, PERSISTENCE_ADDR, FromEnvironment, Integer, Text, setting

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
    "After a batch, how long events gather in Kafka before the next fetch; keep it small next to the "
    "interval. The first event after a quiet spell is fetched at once.",
    default=50,
)


@dataclass(frozen=True)
class Settings(FromEnvironment):
    address: str = setting(LEADERBOARD_ADDR)
    interval_ms: int = setting(INTERVAL_MS)
    consumer_group: str = setting(GROUP)
    ranking_ttl_s: int = setting(TTL_S)
    batch_wait_ms: int = setting(BATCH_WAIT_MS)
    # PersistenceService, which a Redis ranking is rebuilt from (host:port, or a gRPC target list).
    persistence_address: str = setting(PERSISTENCE_ADDR)
