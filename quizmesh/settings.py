"""Reading configuration from the environment, once, with errors that name the bad variable."""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

E = TypeVar("E", bound=str)


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default)


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: E, choices: tuple[E, ...]) -> E:
    raw = env.get(name, default)
    for choice in choices:
        if raw == choice:
            return choice
    raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (as Kubernetes mounts them)."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return pathlib.Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return None


EventBusEngine = Literal["kafka", "memory"]
StateEngine = Literal["redis", "memory"]
DatabaseEngine = Literal["postgres", "sqlite"]
RedisMode = Literal["single", "cluster"]


@dataclass(frozen=True)
class Engines:
    """Which engine backs each kind of infrastructure. Choosing them is configuration, not a code fork."""

    event_bus: EventBusEngine
    state: StateEngine
    database: DatabaseEngine
    kafka_bootstrap: str
    redis_url: str
    postgres_dsn: str
    sqlite_path: str
    # "cluster": redis_url lists seed nodes of a Redis Cluster, comma-separated.
    redis_mode: RedisMode = "single"
    # Pub/sub between processes on its own Redis, so broadcasts never compete with game state; empty
    # means redis_url's (single mode only: a cluster client does not carry the process-wide pub/sub).
    redis_pubsub_url: str = ""
    # A streaming replica that reads may go to while its lag is under a bound; empty reads the primary.
    postgres_replica_dsn: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Engines:
        engines = cls(
            event_bus=env_choice(env, "QUIZMESH_EVENT_BUS", "kafka", ("kafka", "memory")),
            state=env_choice(env, "QUIZMESH_STATE_STORE", "redis", ("redis", "memory")),
            database=env_choice(env, "QUIZMESH_DATABASE", "postgres", ("postgres", "sqlite")),
            kafka_bootstrap=env_str(env, "QUIZMESH_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            redis_url=env_str(env, "QUIZMESH_REDIS_URL", "redis://127.0.0.1:16379/0"),
            postgres_dsn=env_secret(env, "QUIZMESH_POSTGRES_DSN") or "postgresql://quizmesh@127.0.0.1:15432/quizmesh",
            sqlite_path=env_str(env, "QUIZMESH_SQLITE_PATH", "quizmesh-dev.sqlite3"),
            redis_mode=env_choice(env, "QUIZMESH_REDIS_MODE", "single", ("single", "cluster")),
            redis_pubsub_url=env_str(env, "QUIZMESH_REDIS_PUBSUB_URL", ""),
            postgres_replica_dsn=env_secret(env, "QUIZMESH_POSTGRES_REPLICA_DSN") or "",
        )
        if engines.state == "redis" and engines.redis_mode == "cluster" and not engines.redis_pubsub_url:
            raise SettingsError(
                "QUIZMESH_REDIS_PUBSUB_URL must name a (non-cluster) Redis for pub/sub when QUIZMESH_REDIS_MODE=cluster"
            )
        return engines

    def sqlite_file(self, owner: str) -> str:
        """The SQLite file of one service: each owns its own, as each owns its own tables.

        `quizmesh-dev.sqlite3` becomes `quizmesh-dev.<owner>.sqlite3`; ":memory:" stays in memory.
        """
        if self.sqlite_path == ":memory:":
            return self.sqlite_path
        stem, dot, suffix = self.sqlite_path.rpartition(".")
        return f"{stem}.{owner}.{suffix}" if dot and "/" not in suffix else f"{self.sqlite_path}.{owner}"

    @classmethod
    def embedded(cls, sqlite_path: str) -> Engines:
        return cls("memory", "memory", "sqlite", "", "", "", sqlite_path)


def signing_key(env: Mapping[str, str] = os.environ, *, allow_ephemeral: bool = False) -> bytes:
    """The HMAC key that signs credentials. Only the embedded mode may make up a throwaway one."""
    key = env_secret(env, "QUIZMESH_SIGNING_KEY")
    if key:
        if len(key) < 32:
            raise SettingsError("QUIZMESH_SIGNING_KEY must be at least 32 characters")
        return key.encode()
    if allow_ephemeral:
        return secrets.token_bytes(32)
    raise SettingsError("QUIZMESH_SIGNING_KEY (or QUIZMESH_SIGNING_KEY_FILE) must be set")
