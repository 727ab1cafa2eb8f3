"""Configuration from the environment: every variable is declared once, as a `Variable` holding its
name, default and meaning, and read once at start-up by a settings class, with errors that name the
bad variable. `python -m apps.configuration` renders the declarations into docs/configuration.md.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=str)


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


# --- declared variables ---


@dataclass(frozen=True)
class Variable(Generic[T]):
    """One environment variable: its name, what it means, and how its value is read and checked.

    `unset` says what leaving the variable unset means, for a variable whose absence is not simply its
    default (read it with `read_if_set`)."""

    name: str
    meaning: str
    unset: str = field(default="", kw_only=True)

    def read(self, env: Mapping[str, str]) -> T:
        raise NotImplementedError

    def is_set(self, env: Mapping[str, str]) -> bool:
        return bool(env.get(self.name))

    def read_if_set(self, env: Mapping[str, str]) -> T | None:
        return self.read(env) if self.is_set(env) else None

    @property
    def names(self) -> tuple[str, ...]:
        """Every variable this one reads (a secret also reads NAME_FILE)."""
        return (self.name,)

    @property
    def default_text(self) -> str:
        """The default, as the configuration reference shows it."""
        return self.unset or self._default_text()

    @property
    def allowed_text(self) -> str:
        """What values are accepted, as a sentence of the configuration reference; empty when any text is."""
        return ""

    def _default_text(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Text(Variable[str]):
    default: str

    def read(self, env: Mapping[str, str]) -> str:
        return env.get(self.name, self.default)

    def _default_text(self) -> str:
        return f"`{self.default}`" if self.default else "empty"


@dataclass(frozen=True, kw_only=True)
class Integer(Variable[int]):
    default: int
    minimum: int = 0
    maximum: int | None = None

    def read(self, env: Mapping[str, str]) -> int:
        raw = env.get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{self.name}={raw!r} is not an integer") from None
        if value < self.minimum:
            raise SettingsError(f"{self.name}={value} must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SettingsError(f"{self.name}={value} must be at most {self.maximum}")
        return value

    def _default_text(self) -> str:
        return f"`{self.default}`"

    @property
    def allowed_text(self) -> str:
        upper = f" to {self.maximum}" if self.maximum is not None else " or more"
        return f"An integer, {self.minimum}{upper}."


@dataclass(frozen=True, kw_only=True)
class Number(Variable[float]):
    default: float
    minimum: float
    maximum: float

    def read(self, env: Mapping[str, str]) -> float:
        raw = env.get(self.name, "")
        if not raw:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{self.name}={raw!r} is not a number") from None
        if not self.minimum <= value <= self.maximum:
            raise SettingsError(f"{self.name}={value} must be between {self.minimum:g} and {self.maximum:g}")
        return value

    def _default_text(self) -> str:
        return f"`{self.default:g}`"

    @property
    def allowed_text(self) -> str:
        return f"A number, {self.minimum:g} to {self.maximum:g}."


@dataclass(frozen=True, kw_only=True)
class Choice(Variable[E]):
    default: E
    choices: tuple[E, ...]

    def read(self, env: Mapping[str, str]) -> E:
        raw = env.get(self.name, self.default)
        for choice in self.choices:
            if raw == choice:
                return choice
        raise SettingsError(f"{self.name}={raw!r} must be one of {', '.join(self.choices)}")

    def _default_text(self) -> str:
        return f"`{self.default}`"

    @property
    def allowed_text(self) -> str:
        return "One of " + ", ".join(f"`{choice}`" for choice in self.choices) + "."


@dataclass(frozen=True, kw_only=True)
class Secret(Variable[str | None]):
    """A secret, given in NAME or in the file NAME_FILE names (as Kubernetes mounts secrets)."""

    default: str | None = None

    def read(self, env: Mapping[str, str]) -> str | None:
        value = env.get(self.name)
        if value:
            return value
        path = env.get(f"{self.name}_FILE")
        if path:
            try:
                return pathlib.Path(path).read_text().strip() or self.default
            except OSError as exc:
                raise SettingsError(f"{self.name}_FILE={path!r} cannot be read: {exc.strerror}") from None
        return self.default

    def is_set(self, env: Mapping[str, str]) -> bool:
        return bool(env.get(self.name) or env.get(f"{self.name}_FILE"))

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}_FILE")

    def _default_text(self) -> str:
        return f"`{self.default}`" if self.default else "unset"

    @property
    def allowed_text(self) -> str:
        return f"Or `{self.name}_FILE` names a file holding it."


Variables = tuple[Variable[Any], ...]


# --- the services' addresses, which every caller of a service reads too ---

QUIZ_ADDR = Text(
    "QUIZMESH_QUIZ_ADDR",
    "quiz_svc's gRPC address, host:port: where quiz_svc listens (port 0 picks a free one) and where its "
    "callers reach it.",
    default="127.0.0.1:50051",
)
LEADERBOARD_ADDR = Text(
    "QUIZMESH_LEADERBOARD_ADDR",
    "leaderboard_svc's gRPC address, host:port: where it listens (port 0 picks a free one) and where its "
    "callers reach it.",
    default="127.0.0.1:50052",
)
PERSISTENCE_ADDR = Text(
    "QUIZMESH_PERSISTENCE_ADDR",
    "persistence_svc's gRPC address, host:port: where it listens (port 0 picks a free one) and where its "
    "callers reach it.",
    default="127.0.0.1:50053",
)


# --- engines ---

EventBusEngine = Literal["kafka", "memory"]
StateEngine = Literal["redis", "memory"]
DatabaseEngine = Literal["postgres", "sqlite"]
RedisMode = Literal["single", "cluster"]

EVENT_BUS: Choice[EventBusEngine] = Choice(
    "QUIZMESH_EVENT_BUS",
    "The event bus: Kafka, or in memory (the embedded mode).",
    default="kafka",
    choices=("kafka", "memory"),
)
STATE_STORE: Choice[StateEngine] = Choice(
    "QUIZMESH_STATE_STORE",
    "Game state and rankings: Redis, or in memory (the embedded mode).",
    default="redis",
    choices=("redis", "memory"),
)
DATABASE: Choice[DatabaseEngine] = Choice(
    "QUIZMESH_DATABASE",
    "Durable data: PostgreSQL, or SQLite files (the embedded mode).",
    default="postgres",
    choices=("postgres", "sqlite"),
)
KAFKA_BOOTSTRAP = Text(
    "QUIZMESH_KAFKA_BOOTSTRAP", "Kafka's bootstrap servers, host:port[,host:port...].", default="127.0.0.1:19092"
)
REDIS_URL = Text(
    "QUIZMESH_REDIS_URL",
    "Redis, as a redis:// URL; with QUIZMESH_REDIS_MODE=cluster, the seed nodes of a Redis Cluster as "
    "comma-separated URLs.",
    default="redis://127.0.0.1:16379/0",
)
REDIS_MODE: Choice[RedisMode] = Choice(
    "QUIZMESH_REDIS_MODE",
    "`single`: one Redis (or one primary); `cluster`: a Redis Cluster, reached through its seed nodes.",
    default="single",
    choices=("single", "cluster"),
)
REDIS_PUBSUB_URL = Text(
    "QUIZMESH_REDIS_PUBSUB_URL",
    "A Redis of its own for pub/sub between processes, so broadcasts never compete with game state "
    "(required with QUIZMESH_REDIS_MODE=cluster).",
    default="",
    unset="QUIZMESH_REDIS_URL's Redis",
)
POSTGRES_DSN = Secret(
    "QUIZMESH_POSTGRES_DSN",
    "PostgreSQL, as a postgresql:// DSN (it may hold a password).",
    default="postgresql://quizmesh@127.0.0.1:15432/quizmesh",
)
POSTGRES_REPLICA_DSN = Secret(
    "QUIZMESH_POSTGRES_REPLICA_DSN",
    "A streaming replica of PostgreSQL that listings read from while its lag is under QUIZMESH_REPLICA_MAX_LAG_MS.",
    unset="every read goes to the primary",
)
POSTGRES_STATEMENT_CACHE = Integer(
    "QUIZMESH_POSTGRES_STATEMENT_CACHE",
    "Prepared statements asyncpg keeps per PostgreSQL connection. 0 behind a transaction-mode pooler "
    "(PgBouncer's pool_mode=transaction), where one client connection's transactions run on different "
    "server connections, so a statement prepared in one is unknown in the next (docs/operations.md, PgBouncer).",
    default=100,
)
SQLITE_PATH = Text(
    "QUIZMESH_SQLITE_PATH",
    "With QUIZMESH_DATABASE=sqlite: the file name each service derives its own file from "
    "(`name.sqlite3` becomes `name.<owner>.sqlite3`); `:memory:` keeps the data in memory.",
    default="quizmesh-dev.sqlite3",
)


@dataclass(frozen=True)
class Engines:
    """Which engine backs each kind of infrastructure. Choosing them is configuration, not a code fork."""

    VARIABLES: ClassVar[Variables] = (
        EVENT_BUS,
        STATE_STORE,
        DATABASE,
        KAFKA_BOOTSTRAP,
        REDIS_URL,
        POSTGRES_DSN,
        SQLITE_PATH,
        REDIS_MODE,
        REDIS_PUBSUB_URL,
        POSTGRES_REPLICA_DSN,
        POSTGRES_STATEMENT_CACHE,
    )

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
    # asyncpg's statement_cache_size: 0 behind a transaction-mode pooler.
    postgres_statement_cache: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Engines:
        engines = cls(
            event_bus=EVENT_BUS.read(env),
            state=STATE_STORE.read(env),
            database=DATABASE.read(env),
            kafka_bootstrap=KAFKA_BOOTSTRAP.read(env),
            redis_url=REDIS_URL.read(env),
            postgres_dsn=POSTGRES_DSN.read(env) or "",
            sqlite_path=SQLITE_PATH.read(env),
            redis_mode=REDIS_MODE.read(env),
            redis_pubsub_url=REDIS_PUBSUB_URL.read(env),
            postgres_replica_dsn=POSTGRES_REPLICA_DSN.read(env) or "",
            postgres_statement_cache=POSTGRES_STATEMENT_CACHE.read(env),
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


# --- credentials ---

SIGNING_KEY = Secret(
    "QUIZMESH_SIGNING_KEY",
    "The HMAC key (32 characters or more) that signs player and host credentials; every quiz_svc process "
    "of a deployment needs the same one.",
    unset="required; `quizmesh dev` makes up a throwaway key",
)
_MIN_SIGNING_KEY_LENGTH = 32


def signing_key(env: Mapping[str, str] = os.environ, *, allow_ephemeral: bool = False) -> bytes:
    """The HMAC key that signs credentials. Only the embedded mode may make up a throwaway one."""
    key = SIGNING_KEY.read(env)
    if key:
        if len(key) < _MIN_SIGNING_KEY_LENGTH:
            raise SettingsError(f"{SIGNING_KEY.name} must be at least {_MIN_SIGNING_KEY_LENGTH} characters")
        return key.encode()
    if allow_ephemeral:
        return secrets.token_bytes(_MIN_SIGNING_KEY_LENGTH)
    raise SettingsError(f"{SIGNING_KEY.name} (or {SIGNING_KEY.name}_FILE) must be set")
