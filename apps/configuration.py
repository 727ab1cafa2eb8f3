"""The configuration reference, rendered from the settings classes' declared variables.

`python -m apps.configuration > docs/configuration.md` writes it; tests/apps/test_configuration.py fails
when that file is stale, when a settings class reads a variable it does not declare, or when any code
or script names a QUIZMESH_ variable the reference does not hold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from apps import migrate, quizctl
from edge.settings import Settings as EdgeSettings
from leaderboard_svc.settings import Settings as LeaderboardSettings
from persistence_svc.settings import Settings as PersistenceSettings
from quiz_svc.settings import Settings as QuizSettings
from quizmesh.process import ProcessSettings
from quizmesh.settings import Engines, Integer, Number, Port, Text, Variable, Variables
from quizmesh.telemetry import TelemetrySettings


@dataclass(frozen=True)
class Reader:
    """Something that reads variables: a component's settings, a tool, the scripts."""

    name: str
    description: str
    variables: Variables


# Shell scripts and the test suite have no settings class; their variables are declared here.
SCRIPT_VARIABLES: Variables = (
    Text(
        "QUIZMESH_INFRA_DIR",
        "scripts/infra.sh: where the local Kafka, Redis and PostgreSQL keep their data, logs and PID files.",
        default="",
        unset="`.infra/` in the checkout",
    ),
    Port("QUIZMESH_INFRA_KAFKA_PORT", "scripts/infra.sh: the local Kafka's port.", default=19092),
    Port(
        "QUIZMESH_INFRA_KAFKA_CONTROLLER_PORT",
        "scripts/infra.sh: the local Kafka's KRaft controller port.",
        default=19093,
    ),
    Port("QUIZMESH_INFRA_REDIS_PORT", "scripts/infra.sh: the local Redis's port.", default=16379),
    Port("QUIZMESH_INFRA_PG_PORT", "scripts/infra.sh: the local PostgreSQL's port.", default=15432),
    Port(
        "QUIZMESH_INFRA_PGBOUNCER_PORT",
        "scripts/infra.sh: the port of the local PgBouncer (pool_mode=transaction) in front of PostgreSQL.",
        default=15433,
    ),
    Text(
        "QUIZMESH_INFRA_SECURE",
        "scripts/infra.sh: `1` brings a new data directory up in the secure profile, as `--secure` does "
        "(single topology: Kafka on SASL_SSL with SCRAM users, Redis on TLS with an ACL user; the directory "
        "remembers its profile).",
        default="0",
    ),
    Text(
        "QUIZMESH_INFRA_TOPOLOGY",
        "scripts/infra.sh: the topology a command acts on when it names none (`single` or `cluster`).",
        default="single",
    ),
    Text(
        "QUIZMESH_INFRA_CLUSTER_KAFKA_PORTS",
        "scripts/infra.sh --topology cluster: the three Kafka brokers' ports, comma-separated.",
        default="19192,19193,19194",
    ),
    Text(
        "QUIZMESH_INFRA_CLUSTER_KAFKA_CONTROLLER_PORTS",
        "scripts/infra.sh --topology cluster: the three brokers' KRaft controller ports, comma-separated.",
        default="19195,19196,19197",
    ),
    Text(
        "QUIZMESH_INFRA_CLUSTER_REDIS_PORTS",
        "scripts/infra.sh --topology cluster: the Redis Cluster's six nodes' ports (each also uses port + 10000 "
        "for its cluster bus), comma-separated.",
        default="16400,16401,16402,16403,16404,16405",
    ),
    Port(
        "QUIZMESH_INFRA_CLUSTER_REDIS_PUBSUB_PORT",
        "scripts/infra.sh --topology cluster: the port of the Redis kept for pub/sub.",
        default=16410,
    ),
    Port(
        "QUIZMESH_INFRA_CLUSTER_PG_PORT",
        "scripts/infra.sh --topology cluster: the PostgreSQL primary's port.",
        default=15442,
    ),
    Port(
        "QUIZMESH_INFRA_CLUSTER_PG_REPLICA_PORT",
        "scripts/infra.sh --topology cluster: the PostgreSQL streaming replica's port.",
        default=15443,
    ),
    Text(
        "QUIZMESH_LB_BIND",
        "scripts/haproxy/quizmesh.cfg: the address HAProxy listens on for players.",
        default="",
        unset="required",
    ),
    Text(
        "QUIZMESH_LB_EDGE_1",
        "scripts/haproxy/quizmesh.cfg: the first edge's address.",
        default="",
        unset="required",
    ),
    Text(
        "QUIZMESH_LB_EDGE_2",
        "scripts/haproxy/quizmesh.cfg: the second edge's address.",
        default="",
        unset="required",
    ),
    Text(
        "QUIZMESH_TEST_CLUSTER",
        "scripts/test.sh: `0` skips the second pass of the tests on the multi-node topology.",
        default="1",
    ),
    Text(
        "QUIZMESH_PROMETHEUS_DIR",
        "scripts/prometheus.sh: where the local Prometheus keeps its configuration, data, logs and PID files.",
        default="",
        unset="`.infra/prometheus/` in the checkout",
    ),
    Port("QUIZMESH_PROMETHEUS_PORT", "scripts/prometheus.sh: the local Prometheus's port.", default=19090),
    Port(
        "QUIZMESH_KAFKA_EXPORTER_PORT",
        "scripts/prometheus.sh: the port of the local stand-in for Kafka Exporter (consumer group lag).",
        default=19308,
    ),
    Text(
        "QUIZMESH_PROMETHEUS_INTERVAL",
        "scripts/prometheus.sh: the local Prometheus's scrape and rule evaluation interval.",
        default="1s",
    ),
    Text("QUIZMESH_KEEP_INFRA", "scripts/test.sh: `1` leaves the infrastructure running afterwards.", default="0"),
    Text(
        "QUIZMESH_M2_REPO",
        "scripts/validate_manifests.sh: the Maven repository that caches the schema validator's jars.",
        default="",
        unset="Maven's own (~/.m2/repository)",
    ),
    Text(
        "QUIZMESH_REQUIRE_INFRA",
        "The test suite: `1` (set by scripts/test.sh, so in CI) fails an integration test whose Kafka, Redis "
        "or PostgreSQL is unreachable, instead of skipping it.",
        default="",
        unset="unreachable infrastructure skips the test",
    ),
    Text(
        "QUIZMESH_PGBOUNCER_DSN",
        "The test suite: the DSN of the local PgBouncer in front of PostgreSQL (`scripts/infra.sh env` prints it); "
        "tests/shared/test_pgbouncer.py runs quiz_svc and persistence_svc through it.",
        default="",
        unset="the PgBouncer tests skip (and fail under QUIZMESH_REQUIRE_INFRA=1)",
    ),
    Integer("QUIZMESH_FAULT_PLAYERS", "tests/faults: players in each gRPC fault scenario.", default=250, minimum=1),
    Integer(
        "QUIZMESH_FAULT_WS_PLAYERS",
        "tests/faults: WebSocket players in the reconnect-storm scenario.",
        default=200,
        minimum=1,
    ),
    Integer(
        "QUIZMESH_FAULT_CRASH_PLAYERS",
        "tests/faults: WebSocket players in each quiz_svc crash scenario.",
        default=60,
        minimum=1,
    ),
    Integer(
        "QUIZMESH_FAULT_EDGE_PLAYERS",
        "tests/faults: players on the edge that the cluster scenario SIGKILLs.",
        default=1000,
        minimum=1,
    ),
    Integer(
        "QUIZMESH_FAULT_EDGE_RECONNECT_AT_ONCE",
        "tests/cluster: players of the SIGKILLed edge that reconnect at the same time.",
        default=50,
        minimum=1,
    ),
    Number(
        "QUIZMESH_FAULT_KAFKA_DOWN_S",
        "tests/faults: how long Kafka stays down in the outage scenario.",
        default=60.0,
        minimum=0.0,
        maximum=3600.0,
    ),
    Integer("QUIZMESH_FUZZ_FRAMES", "tests/security: frames sent by the edge's fuzz test.", default=10_000, minimum=1),
)

READERS: tuple[Reader, ...] = (
    Reader(
        "Every process",
        "Read once at start-up by the `quizmesh` command, whichever component it runs "
        "(`quizmesh/process.py`, `quizmesh/telemetry.py`).",
        ProcessSettings.VARIABLES + TelemetrySettings.VARIABLES,
    ),
    Reader(
        "Engines",
        "Which infrastructure backs quiz_svc, leaderboard_svc and persistence_svc, and where it is "
        "(`quizmesh/settings.py`). `quizmesh dev` sets the engines to memory and SQLite itself.",
        Engines.VARIABLES,
    ),
    Reader("quiz_svc", "`quizmesh quiz-svc` (`quiz_svc/settings.py`).", QuizSettings.VARIABLES),
    Reader(
        "leaderboard_svc", "`quizmesh leaderboard-svc` (`leaderboard_svc/settings.py`).", LeaderboardSettings.VARIABLES
    ),
    Reader(
        "persistence_svc", "`quizmesh persistence-svc` (`persistence_svc/settings.py`).", PersistenceSettings.VARIABLES
    ),
    Reader("edge", "`quizmesh edge` (`edge/settings.py`).", EdgeSettings.VARIABLES),
    Reader("quizctl", "The `quizctl` tool (`apps/quizctl.py`); its options override them.", quizctl.VARIABLES),
    Reader(
        "quizmesh migrate",
        "`quizmesh migrate [quiz-svc|persistence-svc]` (`apps/migrate.py`): the PostgreSQL migrations, applied "
        "before the services start.",
        migrate.VARIABLES,
    ),
    Reader(
        "Scripts and tests",
        "Read by `scripts/` and the test suite, never by a quizmesh process (declared in `apps/configuration.py`).",
        SCRIPT_VARIABLES,
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _meaning(variable: Variable[object]) -> str:
    allowed = variable.allowed_text
    return _cell(f"{variable.meaning} {allowed}" if allowed else variable.meaning)


def render(readers: tuple[Reader, ...] = READERS) -> str:
    """The reference as Markdown: the variables several readers share first, then each reader's own."""
    read_by: dict[str, list[str]] = defaultdict(list)
    for reader in readers:
        for variable in reader.variables:
            read_by[variable.name].append(reader.name)
    shared: dict[str, Variable[object]] = {}
    for reader in readers:
        for variable in reader.variables:
            if len(read_by[variable.name]) > 1:
                shared.setdefault(variable.name, variable)
    lines = [
        "# Configuration",
        "",
        "Every environment variable quizmesh reads, with its default and meaning. Generated from the settings",
        "classes by `python -m apps.configuration > docs/configuration.md`; `tests/apps/test_configuration.py`",
        "fails when this file is stale or when code reads a variable that is not declared. A bad value stops",
        "the process at start-up with a configuration error naming the variable (exit code 2).",
        "",
        "## Read by several components",
        "",
        "| Variable | Default | Read by | Meaning |",
        "|---|---|---|---|",
    ]
    for name, variable in shared.items():
        lines.append(
            f"| `{name}` | {_cell(variable.default_text)} | {', '.join(read_by[name])} | {_meaning(variable)} |"
        )
    for reader in readers:
        own = [variable for variable in reader.variables if variable.name not in shared]
        lines += ["", f"## {reader.name}", "", reader.description]
        also = [name for name in read_by if reader.name in read_by[name] and name in shared]
        if also:
            lines += ["", "Also reads " + ", ".join(f"`{name}`" for name in also) + " (above)."]
        if own:
            lines += ["", "| Variable | Default | Meaning |", "|---|---|---|"]
            lines += [f"| `{v.name}` | {_cell(v.default_text)} | {_meaning(v)} |" for v in own]
    return "\n".join(lines) + "\n"


def documented_names(readers: tuple[Reader, ...] = READERS) -> frozenset[str]:
    """Every variable name the reference holds (a secret's NAME_FILE included)."""
    return frozenset(name for reader in readers for variable in reader.variables for name in variable.names)


if __name__ == "__main__":
    print(render(), end="")
