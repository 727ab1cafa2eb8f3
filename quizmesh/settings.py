"""Configuration from the environment: every variable is declared once, as a `Variable` holding its
name, default and meaning, and read once at start-up by a settings class, with errors that name the
bad variable. `python -m apps.configuration` renders the declarations into docs/configuration.md.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, get_args, overload

T = TypeVar("T")
R = TypeVar("R")
N = TypeVar("N", int, float)
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
    default: T = field(kw_only=True)

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
    def read(self, env: Mapping[str, str]) -> str:
        return env.get(self.name, self.default)

    def _default_text(self) -> str:
        return f"`{self.default}`" if self.default else "empty"


def _parse(variable: Variable[N], env: Mapping[str, str], parse: Callable[[str], N], kind: str) -> N | None:
    """The variable's value as a number; None when it is unset or empty."""
    raw = env.get(variable.name, "")
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"{variable.name}={raw!r} is not {kind}") from None


@dataclass(frozen=True, kw_only=True)
class Integer(Variable[int]):
    minimum: int = 0
    maximum: int | None = None

    def read(self, env: Mapping[str, str]) -> int:
        value = _parse(self, env, int, "an integer")
        if value is None:
            return self.default
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
class Port(Integer):
    """A TCP port."""

    maximum: int | None = 65535


@dataclass(frozen=True, kw_only=True)
class Number(Variable[float]):
    minimum: float
    maximum: float

    def read(self, env: Mapping[str, str]) -> float:
        value = _parse(self, env, float, "a number")
        if value is None:
            return self.default
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


# --- settings classes: each field names the variables it is read from ---


@dataclass(frozen=True)
class Reads:
    """How one field of a settings class is read: the variables it declares, in the order the
    configuration reference lists them, and the function that reads them from the environment."""

    variables: Variables
    read: Callable[[Mapping[str, str]], object]


_READS = "quizmesh.settings.reads"


def reads(*variables: Variable[Any], read: Callable[[Mapping[str, str]], object]) -> dict[str, Reads]:
    """A field's metadata for a field read some other way than `setting` reads it (several variables,
    or a check of its own): `field(default=..., metadata=reads(A, B, read=read_a_and_b))`."""
    return {_READS: Reads(variables, read)}


@overload
def setting(variable: Variable[T]) -> T: ...


@overload
def setting(variable: Variable[R], convert: Callable[[R], T]) -> T: ...


def setting(variable: Variable[Any], convert: Callable[[Any], Any] = lambda value: value) -> Any:
    """A field read from `variable` (and converted, e.g. milliseconds to seconds), whose default is the
    variable's (converted) default: the value is declared once, in the variable. A secret stays out of
    the settings' repr."""
    return field(
        default=convert(variable.default),
        repr=not isinstance(variable, Secret),
        metadata=reads(variable, read=lambda env: convert(variable.read(env))),
    )


def optional_setting(variable: Variable[T]) -> T | None:
    """A field read from `variable` that is None while the variable is unset (`Variable.read_if_set`)."""
    return field(default=None, metadata=reads(variable, read=variable.read_if_set))


class _DeclaredVariables:
    """`VARIABLES` of a settings class: the variables its fields declare, in their order."""

    def __get__(self, instance: object, owner: type[FromEnvironment]) -> Variables:
        return tuple(variable for reads in _reads_of(owner).values() for variable in reads.variables)


def _reads_of(cls: type[FromEnvironment]) -> dict[str, Reads]:
    return {f.name: f.metadata[_READS] for f in fields(cls) if _READS in f.metadata}


class FromEnvironment:
    """The base of a settings dataclass whose fields say where they are read from (`setting`,
    `optional_setting`, `nested`, or `field(metadata=reads(...))`); fields without are plain tunables."""

    # Set by @dataclass on each subclass; declared here so that `dataclasses.fields` accepts the class.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    VARIABLES = _DeclaredVariables()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """Every declared field read from `env`, then checked together (`check`)."""
        values = {name: reads.read(env) for name, reads in _reads_of(cls).items()}
        settings = cls(**values)
        settings.check(env)
        return settings

    def check(self, env: Mapping[str, str]) -> None:
        """Refuses values that each variable allows but that do not go together; none by default."""


S = TypeVar("S", bound=FromEnvironment)


def nested(cls: type[S]) -> S:
    """A field holding settings of their own (credentials, the identity provider), read with theirs."""
    return field(default_factory=cls, metadata=reads(*cls.VARIABLES, read=cls.from_env))


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
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]
StateEngine = Literal["redis", "memory"]
DatabaseEngine = Literal["postgres", "sqlite"]
RedisMode = Literal["single", "cluster"]

EVENT_BUS: Choice[EventBusEngine] = Choice(
    "QUIZMESH_EVENT_BUS",
    "The event bus: Kafka, or in memory (the embedded mode).",
    default="kafka",
    choices=get_args(EventBusEngine),
)
STATE_STORE: Choice[StateEngine] = Choice(
    "QUIZMESH_STATE_STORE",
    "Game state and rankings: Redis, or in memory (the embedded mode).",
    default="redis",
    choices=get_args(StateEngine),
)
DATABASE: Choice[DatabaseEngine] = Choice(
    "QUIZMESH_DATABASE",
    "Durable data: PostgreSQL, or SQLite files (the embedded mode).",
    default="postgres",
    choices=get_args(DatabaseEngine),
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
    choices=get_args(RedisMode),
)
REDIS_PUBSUB_URL = Text(
    "QUIZMESH_REDIS_PUBSUB_URL",
    "A Redis of its own for pub/sub between processes, so broadcasts never compete with game state "
    "(required with QUIZMESH_REDIS_MODE=cluster).",
    default="",
    unset="QUIZMESH_REDIS_URL's Redis",
)
REDIS_WAIT_REPLICAS = Integer(
    "QUIZMESH_REDIS_WAIT_REPLICAS",
    "How many replicas of a Redis primary must hold an answer's writes (claim, verdicts, acknowledgement) and a "
    "ranking's before they count (Redis WAIT), so that a failover forgets none; 0 with a Redis without replicas. "
    "A primary with fewer replicas in sync refuses answers (retryable) until they are back.",
    default=0,
)
REDIS_WAIT_TIMEOUT_MS = Integer(
    "QUIZMESH_REDIS_WAIT_TIMEOUT_MS",
    "With QUIZMESH_REDIS_WAIT_REPLICAS: how long a write waits for its replicas before it counts as not done.",
    default=500,
    minimum=1,
)
KAFKA_SECURITY_PROTOCOL: Choice[KafkaProtocol] = Choice(
    "QUIZMESH_KAFKA_SECURITY_PROTOCOL",
    "How the Kafka clients reach the brokers: in plain text, over TLS, with a SASL user (SCRAM), or both "
    "(`SASL_SSL`, e.g. a Strimzi listener with `tls: true` and `authentication: scram-sha-512`).",
    default="PLAINTEXT",
    choices=get_args(KafkaProtocol),
)
KAFKA_SASL_MECHANISM: Choice[KafkaSaslMechanism] = Choice(
    "QUIZMESH_KAFKA_SASL_MECHANISM",
    "With a SASL_* protocol: the SCRAM mechanism the brokers accept.",
    default="SCRAM-SHA-512",
    choices=get_args(KafkaSaslMechanism),
)
KAFKA_USERNAME = Text(
    "QUIZMESH_KAFKA_USERNAME",
    "With a SASL_* protocol: the Kafka user (a Strimzi KafkaUser's name).",
    default="",
    unset="no user (required with SASL_PLAINTEXT and SASL_SSL)",
)
KAFKA_PASSWORD = Secret(
    "QUIZMESH_KAFKA_PASSWORD",
    "With a SASL_* protocol: the Kafka user's password (the `password` key of a Strimzi KafkaUser's Secret).",
    unset="required with SASL_PLAINTEXT and SASL_SSL",
)
KAFKA_CA_FILE = Text(
    "QUIZMESH_KAFKA_CA_FILE",
    "With SSL or SASL_SSL: a PEM file of the CA certificates the brokers' certificates are checked against "
    "(Strimzi's `<cluster>-cluster-ca-cert` Secret, key `ca.crt`).",
    default="",
    unset="the system's CA certificates",
)
POSTGRES_DSN = Secret(
    "QUIZMESH_POSTGRES_DSN",
    "PostgreSQL, as a postgresql:// DSN (it may hold a password).",
    default="postgresql://quizmesh@127.0.0.1:15432/quizmesh",
)
REDIS_USERNAME = Text(
    "QUIZMESH_REDIS_USERNAME",
    "The Redis ACL user quiz_svc and leaderboard_svc connect as (every Redis of QUIZMESH_REDIS_URL and "
    "QUIZMESH_REDIS_PUBSUB_URL); its rules are in scripts/redis/quizmesh.acl.",
    default="",
    unset="Redis's `default` user",
)
REDIS_PASSWORD = Secret(
    "QUIZMESH_REDIS_PASSWORD",
    "The password of QUIZMESH_REDIS_USERNAME (or of the `default` user, `requirepass`).",
    unset="no password",
)
REDIS_CA_FILE = Text(
    "QUIZMESH_REDIS_CA_FILE",
    "With `rediss://` URLs (TLS): a PEM file of the CA certificates Redis's certificate is checked against.",
    default="",
    unset="the system's CA certificates",
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


def _unless_unset(secret: str | None) -> str:
    return secret or ""


@dataclass(frozen=True)
class KafkaCredentials(FromEnvironment):
    """How a Kafka client proves who it is and checks the brokers: TLS, a SASL/SCRAM user, or neither."""

    security_protocol: KafkaProtocol = setting(KAFKA_SECURITY_PROTOCOL)
    sasl_mechanism: KafkaSaslMechanism = setting(KAFKA_SASL_MECHANISM)
    username: str = setting(KAFKA_USERNAME)
    password: str = setting(KAFKA_PASSWORD, _unless_unset)
    ca_file: str = setting(KAFKA_CA_FILE)

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def check(self, env: Mapping[str, str]) -> None:
        protocol = f"{KAFKA_SECURITY_PROTOCOL.name}={self.security_protocol}"
        if self.uses_sasl and not (self.username and self.password):
            raise SettingsError(
                f"{protocol} needs a user: set {KAFKA_USERNAME.name} and {KAFKA_PASSWORD.name} "
                f"(or {KAFKA_PASSWORD.name}_FILE)"
            )
        if not self.uses_sasl and (self.username or KAFKA_PASSWORD.is_set(env)):
            raise SettingsError(
                f"{KAFKA_USERNAME.name} or {KAFKA_PASSWORD.name} is set, but {protocol} sends no user: "
                "choose SASL_SSL (or SASL_PLAINTEXT)"
            )
        if self.ca_file and not self.uses_tls:
            raise SettingsError(f"{KAFKA_CA_FILE.name} is set, but {protocol} uses no TLS: choose SSL or SASL_SSL")
        _require_readable(KAFKA_CA_FILE, self.ca_file)


@dataclass(frozen=True)
class RedisCredentials(FromEnvironment):
    """The ACL user (and password) a Redis client logs in as, and the CAs it checks a TLS Redis against."""

    username: str = setting(REDIS_USERNAME)
    password: str = setting(REDIS_PASSWORD, _unless_unset)
    ca_file: str = setting(REDIS_CA_FILE)

    def check(self, env: Mapping[str, str]) -> None:
        if self.username and not self.password:
            raise SettingsError(
                f"{REDIS_USERNAME.name} is set without a password: set {REDIS_PASSWORD.name} "
                f"(or {REDIS_PASSWORD.name}_FILE)"
            )
        _require_readable(REDIS_CA_FILE, self.ca_file)


# Plain text, no user: what the clients do when nothing is configured (the local test set-up).
KAFKA_WITHOUT_CREDENTIALS = KafkaCredentials()
REDIS_WITHOUT_CREDENTIALS = RedisCredentials()


def _require_readable(variable: Variable[str], path: str) -> None:
    if not path:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SettingsError(f"{variable.name}={path!r} cannot be read: {exc.strerror}") from None


@dataclass(frozen=True)
class Engines(FromEnvironment):
    """Which engine backs each kind of infrastructure. Choosing them is configuration, not a code fork."""

    event_bus: EventBusEngine = setting(EVENT_BUS)
    state: StateEngine = setting(STATE_STORE)
    database: DatabaseEngine = setting(DATABASE)
    kafka_bootstrap: str = setting(KAFKA_BOOTSTRAP)
    redis_url: str = setting(REDIS_URL)
    postgres_dsn: str = setting(POSTGRES_DSN, _unless_unset)
    sqlite_path: str = setting(SQLITE_PATH)
    # "cluster": redis_url lists seed nodes of a Redis Cluster, comma-separated.
    redis_mode: RedisMode = setting(REDIS_MODE)
    # Pub/sub between processes on its own Redis, so broadcasts never compete with game state; empty
    # means redis_url's (single mode only: a cluster client does not carry the process-wide pub/sub).
    redis_pubsub_url: str = setting(REDIS_PUBSUB_URL)
    # A streaming replica that reads may go to while its lag is under a bound; empty reads the primary.
    postgres_replica_dsn: str = setting(POSTGRES_REPLICA_DSN, _unless_unset)
    # Replicas of a Redis primary that must hold an answer's and a ranking's writes (WAIT), and how long
    # they get; 0 waits for none (quizmesh.redis_client.ReplicaAcks).
    redis_wait_replicas: int = setting(REDIS_WAIT_REPLICAS)
    redis_wait_timeout_ms: int = setting(REDIS_WAIT_TIMEOUT_MS)
    # asyncpg's statement_cache_size: 0 behind a transaction-mode pooler.
    postgres_statement_cache: int = setting(POSTGRES_STATEMENT_CACHE)
    kafka_credentials: KafkaCredentials = nested(KafkaCredentials)
    redis_credentials: RedisCredentials = nested(RedisCredentials)

    def check(self, env: Mapping[str, str]) -> None:
        if self.redis_credentials.ca_file and not self.redis_url.startswith("rediss://"):
            raise SettingsError(
                f"{REDIS_CA_FILE.name} is set, but {REDIS_URL.name} is not a rediss:// URL: Redis would be reached "
                "without TLS"
            )
        if self.state == "redis" and self.redis_mode == "cluster" and not self.redis_pubsub_url:
            raise SettingsError(
                "QUIZMESH_REDIS_PUBSUB_URL must name a (non-cluster) Redis for pub/sub when QUIZMESH_REDIS_MODE=cluster"
            )

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
