"""The ports the service's logic depends on; adapters/ implements them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from leaderboard_svc.domain import LeaderboardPage, RankingEvent, RankingSnapshot


class StoreUnavailable(Exception):
    """The ranking store did not answer in time. Retrying is safe: every write is idempotent."""


class LeaderboardStore(Protocol):
    """Every quiz's ranking. Writes are idempotent, so at-least-once delivery may replay any batch."""

    async def ping(self) -> None:
        """Returns once the store answers; raises StoreUnavailable otherwise."""
        ...

    async def apply(self, events: Sequence[RankingEvent]) -> set[str]:
        """Applies events in order, atomically per quiz; returns the IDs of quizzes whose ranking changed.

        Replays change nothing: an answer applies only above the player's last applied question
        index, a join adds a player once (never again after they left), a leave removes them.
        Before changing anything, it durably marks every quiz of the batch as awaiting publication
        with a new mark (see dirty_marks), so a crash after the offsets are committed cannot lose
        the quiz's next leaderboard_updated.
        """
        ...

    async def dirty_marks(self, quiz_ids: Sequence[str] | None = None) -> dict[str, str]:
        """The publication marks of quiz_ids (of every marked quiz when None); unmarked quizzes are absent."""
        ...

    async def clear_dirty(self, marks: Mapping[str, str]) -> None:
        """Removes each quiz's mark if it is still the one given: a quiz marked again since stays marked."""
        ...

    async def unbuilt(self, quiz_ids: Sequence[str]) -> set[str]:
        """The quizzes whose ranking was never rebuilt from the durable history (or was lost since)."""
        ...

    async def mark_built(self, quiz_id: str, version_floor: int) -> None:
        """Records that quiz_id's ranking now holds its durable history, and raises its version to at
        least version_floor so that watchers of the ranking from before a loss accept the next update."""
        ...

    async def ranking(self, quiz_id: str) -> RankingSnapshot:
        """The whole ranking under the version most recently allocated (0 before the first)."""
        ...

    async def next_ranking(self, quiz_id: str) -> RankingSnapshot:
        """The whole ranking under a newly allocated version, both in one atomic step.

        Versions increase monotonically per quiz across every process sharing the store, and since
        the ranking is read in the same step, a higher version never carries an older ranking.
        """
        ...

    async def top(self, quiz_id: str, n: int, player_id: str) -> LeaderboardPage:
        """The first n entries, and player_id's entry when it is non-empty and ranked."""
        ...


class HistoryUnavailable(Exception):
    """The durable history could not be read now. Retrying later is safe."""


class RankingHistory(Protocol):
    """The durable record of a quiz's joins, answers and leaves (PostgreSQL, written by persistence_svc).

    The source of truth the Redis ranking is a projection of.
    """

    async def events(self, quiz_id: str) -> list[RankingEvent]:
        """Every event of the quiz that moves a ranking and that Kafka held when called (read once the
        durable store holds them all), in an order that replays correctly: joins, then answers by
        question index, then leaves."""
        ...

    async def close(self) -> None: ...
