"""Reaching the real infrastructure started by scripts/infra.sh, for integration tests.

With QUIZMESH_REQUIRE_INFRA=1 (set by scripts/test.sh, so in CI) an unreachable service fails the
test; otherwise it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

from quizmesh.settings import Engines

REAL = Engines.from_env()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(name: str, address: str) -> None:
    url = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = url.hostname or "127.0.0.1", url.port or 0
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}; run `scripts/infra.sh up` and export `scripts/infra.sh env`"
    if os.environ.get("QUIZMESH_REQUIRE_INFRA") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_real_stack() -> None:
    """Kafka, Redis and PostgreSQL must all be reachable."""
    require("Kafka", REAL.kafka_bootstrap)
    require("Redis", REAL.redis_url)
    require("PostgreSQL", REAL.postgres_dsn)
