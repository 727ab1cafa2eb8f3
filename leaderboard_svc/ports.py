"""The ports the service's logic depends on; adapters/ implements them."""

from __future__ import annotations

from collections.abc import Sequence
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
        """
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
