"""persistence_svc's configuration, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from quizmesh.settings import SettingsError, env_int, env_str


@dataclass(frozen=True)
class Settings:
    """Where to listen, which consumer group to join, and how to batch. Engines are chosen elsewhere."""

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
    # Fault tests only (QUIZMESH_PERSISTENCE_TEST_PAUSE_AFTER_SAVE_MS, ..._MARKER); see SinkTuning.
    test_pause_after_save_ms: int = 0
    test_pause_marker: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        settings = cls(
            address=env_str(env, "QUIZMESH_PERSISTENCE_ADDR", "127.0.0.1:50053"),
            group=env_str(env, "QUIZMESH_PERSISTENCE_GROUP", "persistence_svc"),
            batch_max_records=env_int(env, "QUIZMESH_PERSISTENCE_BATCH_MAX_RECORDS", 2000, minimum=1),
            poll_timeout_ms=env_int(env, "QUIZMESH_PERSISTENCE_POLL_TIMEOUT_MS", 20, minimum=1),
            batch_wait_ms=env_int(env, "QUIZMESH_PERSISTENCE_BATCH_WAIT_MS", 50, minimum=0),
            db_pool_size=env_int(env, "QUIZMESH_PERSISTENCE_DB_POOL_SIZE", 10, minimum=1),
            db_command_timeout_s=env_int(env, "QUIZMESH_PERSISTENCE_DB_COMMAND_TIMEOUT_S", 10, minimum=1),
            shutdown_grace_s=env_int(env, "QUIZMESH_PERSISTENCE_SHUTDOWN_GRACE_S", 5, minimum=0),
            replica_max_lag_ms=env_int(env, "QUIZMESH_REPLICA_MAX_LAG_MS", 1000, minimum=1),
            test_pause_after_save_ms=env_int(env, "QUIZMESH_PERSISTENCE_TEST_PAUSE_AFTER_SAVE_MS", 0),
            test_pause_marker=env_str(env, "QUIZMESH_PERSISTENCE_TEST_PAUSE_MARKER", ""),
        )
        if not settings.address:
            raise SettingsError("QUIZMESH_PERSISTENCE_ADDR is empty: set host:port, e.g. 127.0.0.1:50053")
        if not settings.group:
            raise SettingsError("QUIZMESH_PERSISTENCE_GROUP is empty: set the Kafka consumer group ID")
        return settings
