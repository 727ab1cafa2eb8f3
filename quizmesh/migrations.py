"""Versioned schema migrations for PostgreSQL: what `quizmesh migrate` applies and what a service checks
at start-up.

A service that owns tables keeps its migrations as plain SQL files in `<service>/migrations/`, named
`NNNN_<what>.sql` and applied in number order, each exactly once and in a transaction of its own
(so a file holds no BEGIN or COMMIT, and no statement that cannot run in a transaction). Each applied
file is recorded in the `schema_migrations` table, by schema (the service) and number. Every step
takes one advisory lock inside its transaction: runners started together (a Job retried while the
first attempt still runs, two operators) take turns, and the lock works behind a transaction-mode
pooler too, where a session-level lock would be released with the pooler's server connection.

The services run with roles that may read and write rows but change no table; they only check that
every migration they ship is recorded, and refuse to start otherwise (`SchemaOutOfDate`). A
migration recorded but unknown to the code (a newer release's) does not stop an older service: the
schema is at least the version it needs, as during a rolling update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from quizmesh.process import CannotStart

# One lock for every schema's migrations: "QZMIGRAT".
_LOCK_ID = 0x515A_4D49_4752_4154
_FILE_NAME = re.compile(r"(?P<version>\d{4})_[a-z0-9_]+\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    schema_name text NOT NULL,
    version integer NOT NULL,
    file_name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version)
);
"""

# The record of what ran is the migration role's alone: default privileges may have granted the
# services' roles DML on it, as on every table; they keep only SELECT, which their check needs.
_PROTECT_TABLE = """
DO $$
DECLARE
    grantee oid;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'schema_migrations'::regclass AND a.grantee <> c.relowner
          AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM %s',
                       CASE grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)) END);
    END LOOP;
END $$;
"""


@dataclass(frozen=True)
class Migration:
    version: int
    file_name: str
    sql: str


@dataclass(frozen=True)
class Schema:
    """The migrations of one service's tables, in number order."""

    name: str  # the service's command name, which `quizmesh migrate NAME` takes
    migrations: tuple[Migration, ...]

    @classmethod
    def of_package(cls, name: str, package: str) -> Schema:
        """The migrations in `package`'s directory (see of_directory)."""
        return cls.of_directory(name, resources.files(package))

    @classmethod
    def of_directory(cls, name: str, directory: Traversable) -> Schema:
        """Every `NNNN_<what>.sql` file in `directory`; a misnamed .sql file, or two files with one
        number (two branches that each took the next one), is an error."""
        migrations: dict[int, Migration] = {}
        for entry in directory.iterdir():
            if not entry.name.endswith(".sql"):
                continue
            match = _FILE_NAME.fullmatch(entry.name)
            if match is None:
                raise ValueError(f"{name}: {entry.name!r} is not named NNNN_<what>.sql (lower case, digits, _)")
            version = int(match["version"])
            if version in migrations:
                raise ValueError(f"{name}: {migrations[version].file_name} and {entry.name} share number {version}")
            migrations[version] = Migration(version, entry.name, entry.read_text())
        return cls(name, tuple(migrations[v] for v in sorted(migrations)))


class SchemaOutOfDate(CannotStart):
    """A service's tables lack migrations this version of the service needs."""

    def __init__(self, schema: Schema, missing: list[Migration]) -> None:
        self.missing = tuple(missing)
        files = ", ".join(m.file_name for m in missing)
        super().__init__(
            f"the PostgreSQL schema of {schema.name} is older than this version needs: migration(s) {files} "
            f"not applied. Run `quizmesh migrate {schema.name}` with the migration role "
            f"(QUIZMESH_POSTGRES_MIGRATION_DSN), or the quizmesh-migrate Job in Kubernetes, then start it again"
        )


class MigrationFailed(Exception):
    """A migration's transaction failed and was rolled back; the ones before it stay applied."""


async def missing(conn: asyncpg.Connection, schema: Schema) -> list[Migration]:
    """The migrations of `schema` not recorded as applied, in number order."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return list(schema.migrations)
    rows = await conn.fetch("SELECT version FROM schema_migrations WHERE schema_name = $1", schema.name)
    applied = {r["version"] for r in rows}
    return [m for m in schema.migrations if m.version not in applied]


async def require_applied(conn: asyncpg.Connection, schema: Schema) -> None:
    """Raises SchemaOutOfDate, naming what is missing, unless every migration of `schema` is applied."""
    absent = await missing(conn, schema)
    if absent:
        raise SchemaOutOfDate(schema, absent)


async def apply(conn: asyncpg.Connection, schema: Schema) -> list[Migration]:
    """Applies the migrations of `schema` that are missing, in number order, each in a transaction of
    its own; returns those this call applied (none when the schema is up to date)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(_CREATE_TABLE)
        await conn.execute(_PROTECT_TABLE)
    applied = []
    for migration in schema.migrations:
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
                # Checked under the lock: another runner may have applied it while this one waited.
                done = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE schema_name = $1 AND version = $2)",
                    schema.name,
                    migration.version,
                )
                if done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (schema_name, version, file_name) VALUES ($1, $2, $3)",
                    schema.name,
                    migration.version,
                    migration.file_name,
                )
        except asyncpg.PostgresError as exc:
            raise MigrationFailed(f"{schema.name} {migration.file_name} failed and was rolled back: {exc}") from exc
        applied.append(migration)
    return applied
