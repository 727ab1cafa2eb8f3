"""Reaching the real infrastructure started by scripts/infra.sh, for integration tests.

With QUIZMESH_REQUIRE_INFRA=1 (set by scripts/test.sh, so in CI) an unreachable service fails the
test; otherwise it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlparse, urlsplit

import asyncpg
import pytest

from apps.migrate import MIGRATION_DSN, SCHEMAS, migrate
from quizmesh.redis_client import RedisClient, connect
from quizmesh.settings import Engines

REAL = Engines.from_env()
# The migration role's DSN (it owns the tables; REAL.postgres_dsn is the services' role, which may only
# read and write rows), as `quizmesh migrate` reads it.
REAL_MIGRATION_DSN = MIGRATION_DSN.read(os.environ) or REAL.postgres_dsn


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(name: str, address: str) -> None:
    """`address` is a URL or host:port, or a comma-separated list of them (a cluster's seeds: one is enough)."""
    targets = []
    for item in address.split(","):
        url = urlparse(item.strip() if "://" in item else f"tcp://{item.strip()}")
        targets.append((url.hostname or "127.0.0.1", url.port or 0))
    if any(_reachable(host, port) for host, port in targets):
        return
    where = ", ".join(f"{host}:{port}" for host, port in targets)
    message = f"{name} is not reachable at {where}; run `scripts/infra.sh up` and export `scripts/infra.sh env`"
    if os.environ.get("QUIZMESH_REQUIRE_INFRA") == "1":
        pytest.fail(message)
    pytest.skip(message)


def real_redis() -> RedisClient:
    """A client for the configured Redis: one node, or the Redis Cluster of the multi-node topology."""
    require("Redis", REAL.redis_url)
    return connect(REAL.redis_url, REAL.redis_mode, credentials=REAL.redis_credentials)


async def migrate_database(dsn: str = REAL_MIGRATION_DSN) -> None:
    """Applies every service's migrations that the database lacks, as `quizmesh migrate` does before the
    services start (a few queries when it is up to date)."""
    require("PostgreSQL", dsn)
    await migrate(dsn, list(SCHEMAS.values()), statement_cache_size=REAL.postgres_statement_cache)


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    owner_dsn: str  # the migration role's
    service_dsn: str  # the services' role's: rows only


def _on_database(dsn: str, name: str) -> str:
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[ScratchDatabase]:
    """An empty database of its own, set up as scripts/infra.sh sets up the shared one (owned by the
    migration role, which grants the services' role row access to every table it creates), dropped
    afterwards: connections to it must be closed by then."""
    require("PostgreSQL", REAL_MIGRATION_DSN)
    name = f"quizmesh_scratch_{uuid.uuid4().hex[:12]}"
    service_role = urlsplit(REAL.postgres_dsn).username or ""
    admin = await asyncpg.connect(REAL_MIGRATION_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        owner = await asyncpg.connect(_on_database(REAL_MIGRATION_DSN, name))
        try:
            if service_role != urlsplit(REAL_MIGRATION_DSN).username:
                await owner.execute(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
                    f' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{service_role}"'
                )
        finally:
            await owner.close()
        yield ScratchDatabase(name, _on_database(REAL_MIGRATION_DSN, name), _on_database(REAL.postgres_dsn, name))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def require_real_stack() -> None:
    """Kafka, Redis and PostgreSQL must all be reachable."""
    require("Kafka", REAL.kafka_bootstrap)
    require("Redis", REAL.redis_url)
    require("PostgreSQL", REAL.postgres_dsn)


def require_cluster() -> None:
    """The configured infrastructure must be the multi-node topology (`scripts/infra.sh up --topology
    cluster`, with its `env` exported); skips otherwise: scripts/test.sh runs these tests on it."""
    if REAL.redis_mode != "cluster" or not REAL.postgres_replica_dsn:
        pytest.skip("needs the multi-node topology: export `scripts/infra.sh env --topology cluster`")
    require("Redis Cluster", REAL.redis_url)
    require("PostgreSQL replica", REAL.postgres_replica_dsn)
