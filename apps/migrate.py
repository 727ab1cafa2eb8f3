"""`quizmesh migrate`: applies the services' PostgreSQL migrations that the database lacks, as the
migration role, which owns the tables; the services run with roles that may only read and write rows.
It runs before the services roll out (the quizmesh-migrate Job in deploy/, docs/operations.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import asyncpg

from persistence_svc.migrations import SCHEMA as PERSISTENCE_SCHEMA
from quiz_svc.migrations import SCHEMA as QUIZ_SCHEMA
from quizmesh.migrations import Migration, MigrationFailed, Schema, apply
from quizmesh.settings import POSTGRES_DSN, POSTGRES_STATEMENT_CACHE, Secret, Variables

MIGRATION_DSN = Secret(
    "QUIZMESH_POSTGRES_MIGRATION_DSN",
    "`quizmesh migrate`: PostgreSQL as the migration role, which owns the services' tables (the services "
    "connect as roles that may only read and write rows: QUIZMESH_POSTGRES_DSN).",
    unset="QUIZMESH_POSTGRES_DSN",
)
VARIABLES: Variables = (MIGRATION_DSN, POSTGRES_DSN, POSTGRES_STATEMENT_CACHE)

SCHEMAS: dict[str, Schema] = {schema.name: schema for schema in (QUIZ_SCHEMA, PERSISTENCE_SCHEMA)}
_CONNECT_TIMEOUT_S = 30.0


async def migrate(dsn: str, schemas: Sequence[Schema], *, statement_cache_size: int) -> dict[str, list[Migration]]:
    """Applies what each schema lacks, one schema after the other; returns what was applied, by schema.

    No statement timeout: converting the rows of a large table takes as long as it takes."""
    try:
        conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT_S, statement_cache_size=statement_cache_size)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise MigrationFailed(f"cannot connect to PostgreSQL as the migration role: {exc!r}") from exc
    try:
        return {schema.name: await apply(conn, schema) for schema in schemas}
    finally:
        await conn.close()


def report(schemas: Sequence[Schema], applied: Mapping[str, list[Migration]]) -> list[str]:
    """One line per schema: what this run applied, or that it was up to date."""
    lines = []
    for schema in schemas:
        done = applied[schema.name]
        if done:
            lines.append(f"{schema.name}: applied {', '.join(m.file_name for m in done)}")
        else:
            latest = schema.migrations[-1].file_name if schema.migrations else "none"
            lines.append(f"{schema.name}: up to date (latest {latest})")
    return lines


async def run(schema_name: str | None, env: Mapping[str, str] = os.environ) -> list[str]:
    """`quizmesh migrate [SCHEMA]`: one schema, or every one; returns the report's lines."""
    schemas = [SCHEMAS[schema_name]] if schema_name else list(SCHEMAS.values())
    dsn = MIGRATION_DSN.read(env) or POSTGRES_DSN.read(env) or ""
    applied = await migrate(dsn, schemas, statement_cache_size=POSTGRES_STATEMENT_CACHE.read(env))
    return report(schemas, applied)
