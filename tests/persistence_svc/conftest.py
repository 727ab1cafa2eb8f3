"""Fixtures of persistence_svc's tests: the result store on SQLite and on the real PostgreSQL.

The infrastructure fixtures (postgres_dsn, kafka_bootstrap) come from tests/conftest.py: they skip
when the infrastructure is unreachable, or fail when QUIZMESH_REQUIRE_INFRA=1 (CI).
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.adapters.sqlite import SqliteResultStore
from persistence_svc.ports import ResultStore
from tests.support.infra import migrate_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> tuple[str, str]:
    """(engine, where): a fresh SQLite file, or the DSN of the shared real PostgreSQL."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        return "postgres", dsn
    return "sqlite", str(tmp_path / "results.sqlite3")


@pytest.fixture
async def store(database: tuple[str, str]) -> AsyncIterator[ResultStore]:
    """A store on a schema that is up to date. PostgreSQL is shared, so every test uses quiz IDs of its own."""
    engine, where = database
    opened: ResultStore
    if engine == "postgres":
        await migrate_database()
        opened = await PostgresResultStore.connect(where, pool_size=4, command_timeout_s=10.0)
    else:
        opened = await SqliteResultStore.open(where)
    await opened.ensure_schema()
    yield opened
    await opened.close()
