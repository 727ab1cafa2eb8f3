"""persistence_svc's configuration, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from quizmesh.identity import IDENTITY_VARIABLES, IdentitySettings
from quizmesh.settings import (
    LEADERBOARD_ADDR,
    PERSISTENCE_ADDR,
    QUIZ_ADDR,
    Integer,
    Secret,
    SettingsError,
    Text,
    Variables,
)

GROUP = Text(
    "QUIZMESH_PERSISTENCE_GROUP",
    "The Kafka consumer group; every persistence_svc process of one deployment shares it.",
    default="persistence_svc",
)
BATCH_MAX_RECORDS = Integer(
    "QUIZMESH_PERSISTENCE_BATCH_MAX_RECORDS",
    "At most this many records are stored in one transaction.",
    default=2000,
    minimum=1,
)
POLL_TIMEOUT_MS = Integer(
    "QUIZMESH_PERSISTENCE_POLL_TIMEOUT_MS", "How long one poll of Kafka waits for records.", default=20, minimum=1
)
BATCH_WAIT_MS = Integer(
    "QUIZMESH_PERSISTENCE_BATCH_WAIT_MS",
    "How long Kafka may hold a fetch for more records: larger batches, fewer transactions and commits.",
    default=50,
)
DB_POOL_SIZE = Integer(
    "QUIZMESH_PERSISTENCE_DB_POOL_SIZE", "PostgreSQL connections in the pool.", default=10, minimum=1
)
DB_COMMAND_TIMEOUT_S = Integer(
    "QUIZMESH_PERSISTENCE_DB_COMMAND_TIMEOUT_S",
    "How long one PostgreSQL command (or a connection) may take before it counts as unavailable.",
    default=10,
    minimum=1,
)
SHUTDOWN_GRACE_S = Integer(
    "QUIZMESH_PERSISTENCE_SHUTDOWN_GRACE_S",
    "persistence_svc's shutdown: how long calls in flight may finish once it stops taking new ones.",
    default=5,
)

REPLICA_MAX_LAG_MS = Integer(
    "QUIZMESH_REPLICA_MAX_LAG_MS",
    "Listings read from the PostgreSQL replica while it is less than this far behind the primary, from the "
    "primary otherwise.",
    default=1000,
    minimum=1,
)


HISTORY_SERVICE_TOKEN = Secret(
    "QUIZMESH_HISTORY_SERVICE_TOKEN",
    "The service credential the application's backend presents to read any user's results "
    "(ListUserResults with user_id); at least 32 characters.",
    unset="no service credential: users read their own results with their identity token only",
)
_MIN_SERVICE_TOKEN = 32


@dataclass(frozen=True)
class Settings:
    """Where to listen, which consumer group to join, and how to batch. Engines are chosen elsewhere."""

    VARIABLES: ClassVar[Variables] = (
        PERSISTENCE_ADDR,
        QUIZ_ADDR,
        LEADERBOARD_ADDR,
        GROUP,
        BATCH_MAX_RECORDS,
        POLL_TIMEOUT_MS,
        BATCH_WAIT_MS,
        DB_POOL_SIZE,
        DB_COMMAND_TIMEOUT_S,
        SHUTDOWN_GRACE_S,
        REPLICA_MAX_LAG_MS,
        HISTORY_SERVICE_TOKEN,
        *IDENTITY_VARIABLES,
    )

    address: str
    group: str
    batch_max_records: int
    poll_timeout_ms: int
    batch_wait_ms: int  # how long Kafka may hold a fetch for more records; larger batches, fewer commits
    db_pool_size: int
    db_command_timeout_s: int
    shutdown_grace_s: int
    # Listings read from the replica (Engines.postgres_replica_dsn) while it is less than this far behind.
    replica_max_lag_ms: int = 1000
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    history_service_token: str | None = None
    # Where DeleteUserData renames a user's players in the live copies (game state, rankings).
    quiz_address: str = "127.0.0.1:50051"
    leaderboard_address: str = "127.0.0.1:50052"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        settings = cls(
            address=PERSISTENCE_ADDR.read(env),
            group=GROUP.read(env),
            batch_max_records=BATCH_MAX_RECORDS.read(env),
            poll_timeout_ms=POLL_TIMEOUT_MS.read(env),
            batch_wait_ms=BATCH_WAIT_MS.read(env),
            db_pool_size=DB_POOL_SIZE.read(env),
            db_command_timeout_s=DB_COMMAND_TIMEOUT_S.read(env),
            shutdown_grace_s=SHUTDOWN_GRACE_S.read(env),
            replica_max_lag_ms=REPLICA_MAX_LAG_MS.read(env),
            identity=IdentitySettings.from_env(env),
            history_service_token=HISTORY_SERVICE_TOKEN.read(env),
            quiz_address=QUIZ_ADDR.read(env),
            leaderboard_address=LEADERBOARD_ADDR.read(env),
        )
        token = settings.history_service_token
        if token is not None and len(token) < _MIN_SERVICE_TOKEN:
            raise SettingsError(f"{HISTORY_SERVICE_TOKEN.name} must be at least {_MIN_SERVICE_TOKEN} characters")
        if not settings.address:
            raise SettingsError(f"{PERSISTENCE_ADDR.name} is empty: set host:port, e.g. 127.0.0.1:50053")
        if not settings.group:
            raise SettingsError(f"{GROUP.name} is empty: set the Kafka consumer group ID")
        return settings
