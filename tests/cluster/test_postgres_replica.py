"""Cluster scenario 5: persistence_svc's listings read from the PostgreSQL replica only while its lag
is under the bound; with the replica lagging past it, or stopped, they read from the primary and
nothing fails.

The replica's lag is made real with `pg_wal_replay_pause()` (it keeps receiving WAL, replays none),
and its absence with `scripts/infra.sh stop pg-replica`. A read proves where it went by what it sees:
a row written to the primary after the pause is invisible on the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.domain import batch_of
from persistence_svc.event_rows import row_from_event
from tests.faults.harness import REPORT_DIR
from tests.persistence_svc.persistence_factories import answered, new_quiz_id
from tests.support.infra import REAL, migrate_database, require_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BOUND_MS = 500
_WAIT_S = 60.0


def _superuser(dsn: str) -> str:
    """The same server as `dsn`, as the superuser that may pause and resume WAL replay."""
    url = urlsplit(dsn)
    return urlunsplit(url._replace(netloc=f"postgres@{url.hostname}:{url.port}"))


async def _replica_sql(statement: str) -> None:
    conn = await asyncpg.connect(_superuser(REAL.postgres_replica_dsn))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _replay_paused() -> AsyncIterator[None]:
    await _replica_sql("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await _replica_sql("SELECT pg_wal_replay_resume()")


def _infra(*args: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "infra.sh"), *args, "--topology", "cluster"], check=True)


@contextlib.asynccontextmanager
async def _store(max_lag_ms: int) -> AsyncIterator[PostgresResultStore]:
    require_cluster()
    await migrate_database()
    store = await PostgresResultStore.connect(
        REAL.postgres_dsn, pool_size=2, replica_dsn=REAL.postgres_replica_dsn, replica_max_lag_ms=max_lag_ms
    )
    try:
        await store.ensure_schema()
        yield store
    finally:
        await store.close()


async def _lag_until(store: PostgresResultStore, *, above: bool) -> float:
    """Waits until the measured lag is above (or under) the bound; returns the seconds waited."""
    started = time.monotonic()
    async with asyncio.timeout(_WAIT_S):
        while True:
            lag = store.replica_lag_ms
            assert lag is not None
            if (lag > BOUND_MS) if above else (lag < BOUND_MS):
                return time.monotonic() - started
            await asyncio.sleep(0.05)


async def _answer_once(store: PostgresResultStore) -> str:
    quiz_id = new_quiz_id()
    await store.save(batch_of([row_from_event(answered(quiz_id, 0, "p1", 1_000))]))
    return quiz_id


async def _visible(store: PostgresResultStore, quiz_id: str) -> bool:
    page = await store.list_answers(quiz_id, 10, None)
    return [a.player_id for a in page.items] == ["p1"]


async def _until_visible(store: PostgresResultStore, quiz_id: str) -> None:
    """Replica reads may trail the primary by up to the bound: the row shows up within it."""
    async with asyncio.timeout(_WAIT_S):
        while not await _visible(store, quiz_id):  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.05)


def _report(name: str, **figures: float | int | str) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"cluster-{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


async def test_reads_go_to_the_replica_while_its_lag_is_under_the_bound() -> None:
    async with _store(60_000) as store:
        await _lag_until(store, above=False)
        async with _replay_paused():
            quiz_id = await _answer_once(store)
            # Paused, the replica is under a minute behind: it serves the read, without the new row.
            assert not await _visible(store, quiz_id)
        await _until_visible(store, quiz_id)


async def test_a_replica_lagging_past_the_bound_is_passed_over_until_it_catches_up() -> None:
    async with _store(BOUND_MS) as store:
        await _lag_until(store, above=False)
        async with _replay_paused():
            quiz_id = await _answer_once(store)
            detected_s = await _lag_until(store, above=True)
            assert await _visible(store, quiz_id)  # from the primary
            lag_at_read = store.replica_lag_ms
        caught_up_s = await _lag_until(store, above=False)
        assert await _visible(store, quiz_id)  # from the replica, which has replayed it now
    _report(
        "5-replica-lagging",
        bound_ms=BOUND_MS,
        reads_moved_to_primary_after_s=round(detected_s, 2),
        measured_lag_at_read_ms=round(lag_at_read or 0),
        back_on_replica_after_resume_s=round(caught_up_s, 2),
        failed_reads=0,
    )


async def test_a_stopped_replica_is_passed_over_and_no_read_fails() -> None:
    async with _store(BOUND_MS) as store:
        await _lag_until(store, above=False)
        _infra("stop", "pg-replica")
        try:
            # At once, before a probe noticed: the read fails on the replica and is served by the primary.
            reads = 0
            for _ in range(5):
                assert await _visible(store, await _answer_once(store))
                reads += 1
            detected_s = await _lag_until(store, above=True)
            for _ in range(5):
                assert await _visible(store, await _answer_once(store))
                reads += 1
        finally:
            started = time.monotonic()
            _infra("start", "pg-replica")
            restart_s = time.monotonic() - started
        back_s = await _lag_until(store, above=False)
        await _until_visible(store, await _answer_once(store))
    _report(
        "5-replica-stopped",
        bound_ms=BOUND_MS,
        reads_while_stopped=reads,
        failed_reads=0,
        lag_over_bound_after_stop_s=round(detected_s, 2),
        replica_restart_s=round(restart_s, 2),
        back_on_replica_after_start_s=round(back_s, 2),
    )
