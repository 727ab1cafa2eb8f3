"""persistence_svc's configuration, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quizmesh.identity import IdentitySettings
from quizmesh.settings import (
    LEADERBOARD_ADDR,
    PERSISTENCE_ADDR,
    QUIZ_ADDR,
    FromEnvironment,
    Integer,
    Secret,
    SettingsError,
    Text,
    nested,
    setting,
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
    "QUIZMESH_PERSISTENCE_POLL_TIMEOUT_MS",
    "How long one poll of Kafka waits for records while there are none; a poll returns as soon as "
    "records are there, so this only bounds how soon a stop is noticed.",
    default=250,
    minimum=1,
)
BATCH_WAIT_MS = Integer(
    "QUIZMESH_PERSISTENCE_BATCH_WAIT_MS",
    "After a batch, how long records gather in Kafka before the next fetch: larger batches, fewer "
    "transactions and commits; the first record after a quiet spell is fetched at once.",
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
class Settings(FromEnvironment):
    """Where to listen, which consumer group to join, and how to batch. Engines are chosen elsewhere."""

    address: str = setting(PERSISTENCE_ADDR)
    # Where DeleteUserData renames a user's players in the live copies (game state, rankings).
    quiz_address: str = setting(QUIZ_ADDR)
    leaderboard_address: str = setting(LEADERBOARD_ADDR)
    group: str = setting(GROUP)
    batch_max_records: int = setting(BATCH_MAX_RECORDS)
    poll_timeout_ms: int = setting(POLL_TIMEOUT_MS)
    batch_wait_ms: int = setting(BATCH_WAIT_MS)
    db_pool_size: int = setting(DB_POOL_SIZE)
    db_command_timeout_s: int = setting(DB_COMMAND_TIMEOUT_S)
    shutdown_grace_s: int = setting(SHUTDOWN_GRACE_S)
    # Listings read from the replica (Engines.postgres_replica_dsn) while it is less than this far behind.
    replica_max_lag_ms: int = setting(REPLICA_MAX_LAG_MS)
    identity: IdentitySettings = nested(IdentitySettings)
    history_service_token: str | None = setting(HISTORY_SERVICE_TOKEN)

    def check(self, env: Mapping[str, str]) -> None:
        token = self.history_service_token
        if token is not None and len(token) < _MIN_SERVICE_TOKEN:
            raise SettingsError(f"{HISTORY_SERVICE_TOKEN.name} must be at least {_MIN_SERVICE_TOKEN} characters")
        if not self.address:
            raise SettingsError(f"{PERSISTENCE_ADDR.name} is empty: set host:port, e.g. 127.0.0.1:50053")
        if not self.group:
            raise SettingsError(f"{GROUP.name} is empty: set the Kafka consumer group ID")
