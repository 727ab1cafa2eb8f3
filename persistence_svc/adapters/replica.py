"""Reads from a PostgreSQL streaming replica while it is close enough behind its primary.

The lag is measured, not taken from PostgreSQL's own figures: `pg_last_xact_replay_timestamp()` is
old on an idle primary, and `pg_stat_replication.replay_lag` stops changing while a replica stops
replaying. A probe reads the primary's WAL insert position, then how far the replica has replayed.
Once the replica has replayed past the position a probe read, it holds every transaction the primary
had committed when that probe began; its lag is the time since the latest such probe. A replica that
is down, cut off from its primary or paused never catches up with a newer probe, so its lag grows
with the clock and reads move to the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

_PRIMARY_POSITION = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
# A "replica" that is in fact a primary (not in recovery) is never behind itself.
_REPLAYED_POSITION = (
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END"
    " - '0/0'::pg_lsn)::bigint"
)
_PROBES_KEPT = 64
_PROBE_TIMEOUT_S = 2.0


class ReplicaLag:
    """How far behind a replica is, from probes: (time, primary position) pairs and replayed positions."""

    def __init__(self) -> None:
        self._probes: deque[tuple[float, int]] = deque(maxlen=_PROBES_KEPT)
        self._caught_up_at: float | None = None

    def primary_at(self, at: float, position: int) -> None:
        """The primary's WAL insert position read at monotonic time `at` (seconds)."""
        self._probes.append((at, position))

    def replica_replayed(self, position: int) -> None:
        """The replica has replayed the WAL up to `position` (read after the primary's position)."""
        while self._probes and self._probes[0][1] <= position:
            at, _ = self._probes.popleft()
            self._caught_up_at = at if self._caught_up_at is None else max(self._caught_up_at, at)

    def lag_ms(self, now: float) -> float:
        """At most how stale a read on the replica is now; infinite until it was first seen caught up."""
        if self._caught_up_at is None:
            return math.inf
        return (now - self._caught_up_at) * 1000


class ReplicaRouter:
    """Chooses, per read, between the replica and the primary; probes the lag in the background."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool,
        max_lag_ms: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._max_lag_ms = max_lag_ms
        self._clock = clock
        self._lag = ReplicaLag()
        # Probing a few times per bound (at least every second) keeps the measured lag well under the
        # bound while streaming is healthy.
        self._interval_s = min(max(0.05, max_lag_ms / 4000), 1.0)
        self._probing: asyncio.Task[None] | None = None
        self._was_usable = False

    @property
    def replica(self) -> asyncpg.Pool:
        return self._replica

    def start(self) -> None:
        self._probing = asyncio.create_task(self._probe_forever(), name="replica-lag-probe")

    def lag_ms(self) -> float:
        return self._lag.lag_ms(self._clock())

    def use_replica(self) -> bool:
        """Whether the next read may go to the replica: its lag is under the bound."""
        usable = self.lag_ms() < self._max_lag_ms
        if usable != self._was_usable:
            self._was_usable = usable
            if usable:
                log.info("reads go to the PostgreSQL replica again (lag under %d ms)", self._max_lag_ms)
            else:
                log.warning(
                    "reads go to the PostgreSQL primary: the replica is %.0f ms behind (bound %d ms) or unreachable",
                    self.lag_ms(),
                    self._max_lag_ms,
                )
        return usable

    async def _probe_forever(self) -> None:
        while True:
            await self._probe()
            await asyncio.sleep(self._interval_s)

    async def _probe(self) -> None:
        at = self._clock()
        try:
            primary_position = await self._primary.fetchval(_PRIMARY_POSITION, timeout=_PROBE_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # without the primary's position there is nothing to measure against
        self._lag.primary_at(at, int(primary_position))
        try:
            replayed = await self._replica.fetchval(_REPLAYED_POSITION, timeout=_PROBE_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # unreachable: its lag keeps growing until it answers again
        self._lag.replica_replayed(int(replayed))

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
