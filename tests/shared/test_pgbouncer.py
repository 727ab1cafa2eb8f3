"""PgBouncer in transaction mode in front of PostgreSQL (scripts/infra.sh runs it), as the capacity plan
has it: asyncpg's statement cache breaks behind it, QUIZMESH_POSTGRES_STATEMENT_CACHE=0 mends that, and
quiz_svc and persistence_svc then do their real work through it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.game import play_and_store
from tests.support.infra import REAL_MIGRATION_DSN, require
from tests.support.stack import process_stack

pytestmark = pytest.mark.integration

PGBOUNCER_DSN = os.environ.get("QUIZMESH_PGBOUNCER_DSN", "")


@pytest.fixture
def pgbouncer_dsn() -> str:
    require("PgBouncer (QUIZMESH_PGBOUNCER_DSN from scripts/infra.sh env)", PGBOUNCER_DSN)
    return PGBOUNCER_DSN


async def _query_many(dsn: str, statement_cache_size: int) -> None:
    """8 callers share a pool of 4 connections, each running the same statements again and again."""
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4, statement_cache_size=statement_cache_size)
    try:

        async def caller(n: int) -> None:
            for i in range(40):
                assert await pool.fetchval(f"SELECT $1::integer + {i % 5}", n) == n + i % 5

        await asyncio.gather(*(caller(n) for n in range(8)))
    finally:
        await pool.close()


async def test_asyncpgs_statement_cache_breaks_behind_a_transaction_pooler(pgbouncer_dsn: str) -> None:
    with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="does not exist"):
        await _query_many(pgbouncer_dsn, statement_cache_size=100)


async def test_without_the_cache_every_statement_runs(pgbouncer_dsn: str) -> None:
    await _query_many(pgbouncer_dsn, statement_cache_size=0)


def _transactions_through(pgbouncer_dsn: str) -> int:
    """Transactions PgBouncer has served for the quizmesh database since it started (SHOW STATS on its
    admin console, which speaks only the simple query protocol: psql, not asyncpg)."""
    admin = urlsplit(pgbouncer_dsn)._replace(path="/pgbouncer").geturl()
    shown = subprocess.run(
        ["psql", admin, "-X", "-A", "-t", "-F", "|", "-c", "SHOW STATS"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    database = urlsplit(pgbouncer_dsn).path.lstrip("/")
    (row,) = [line.split("|") for line in shown.stdout.splitlines() if line.startswith(f"{database}|")]
    return int(row[1])  # total_xact_count


async def test_quiz_svc_and_persistence_svc_work_through_pgbouncer(pgbouncer_dsn: str, tmp_path: Path) -> None:
    before = await asyncio.to_thread(_transactions_through, pgbouncer_dsn)
    through_pgbouncer = {
        "QUIZMESH_POSTGRES_DSN": pgbouncer_dsn,
        "QUIZMESH_POSTGRES_MIGRATION_DSN": REAL_MIGRATION_DSN,
        "QUIZMESH_POSTGRES_STATEMENT_CACHE": "0",
        # Several connections per pool, so that consecutive statements land on different server connections.
        "QUIZMESH_PERSISTENCE_DB_POOL_SIZE": "4",
    }
    async with process_stack(tmp_path / "logs", extra_env=through_pgbouncer) as stack:
        await play_and_store(stack, players=6)

    # Creating the quiz, its state changes, the stored joins and answers, and the listings all went through.
    assert await asyncio.to_thread(_transactions_through, pgbouncer_dsn) - before >= 10
