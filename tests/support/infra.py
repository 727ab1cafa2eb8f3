"""Reaching the real infrastructure started by scripts/infra.sh, for integration tests.

With QUIZMESH_REQUIRE_INFRA=1 (set by scripts/test.sh, so in CI) an unreachable service fails the
test; otherwise it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

from quizmesh.redis_client import RedisClient, connect
from quizmesh.settings import Engines

REAL = Engines.from_env()


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
    return connect(REAL.redis_url, REAL.redis_mode)


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
