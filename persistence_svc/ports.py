"""The port persistence_svc stores through; adapters/postgres.py and adapters/sqlite.py implement it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from persistence_svc.domain import (
    AnswerCursor,
    AnswerRow,
    Cursor,
    HistoryCursor,
    Page,
    ParticipantCursor,
    ParticipantRow,
    StoreBatch,
    UserSession,
)

RowT = TypeVar("RowT")
CursorT = TypeVar("CursorT")
KeyT = TypeVar("KeyT", bound=Cursor)


class Listing(Protocol[RowT, CursorT]):
    """One of ResultStore's listings (list_participants, list_answers): a page of rows after a cursor."""

    async def __call__(
        self, quiz_id: str, limit: int, after: CursorT | None, *, from_primary: bool = False
    ) -> Page[RowT, CursorT]: ...


@dataclass(frozen=True)
class KeysetListing(Generic[RowT, KeyT]):
    """How a store reads one listing by keyset paging (see domain.listing_params): the first page's
    query, the following pages' query after a cursor, a row from a record, and the cursor just after a row."""

    first: str
    following: str
    row: Callable[[Any], RowT]
    cursor: Callable[[RowT], KeyT]


class StoreUnavailable(Exception):
    """The database could not complete the operation now (connection lost, timeout, lock, deadlock).
    Nothing was written; retrying the same operation later is safe."""


class ResultWriter(Protocol):
    """What the sink (consumer.ResultSink) needs of a store."""

    async def save(self, batch: StoreBatch) -> None:
        """Writes the whole batch in one transaction or nothing. Rows already stored are left as they
        are, so saving a batch again changes nothing."""
        ...


class ResultStore(ResultWriter, Protocol):
    async def ensure_schema(self) -> None:
        """Makes sure the tables are those this code needs. SQLite (the embedded mode) creates what is
        missing itself; PostgreSQL's migrations are applied by `quizmesh migrate`, and are only checked
        here (quizmesh.migrations.SchemaOutOfDate names a missing one). Safe to run concurrently."""
        ...

    async def list_participants(
        self, quiz_id: str, limit: int, after: ParticipantCursor | None, *, from_primary: bool = False
    ) -> Page[ParticipantRow, ParticipantCursor]:
        """Up to limit participants of a quiz who joined, in join order, starting after `after`.
        `from_primary`: never from a replica, which may not hold every committed batch yet."""
        ...

    async def list_answers(
        self, quiz_id: str, limit: int, after: AnswerCursor | None, *, from_primary: bool = False
    ) -> Page[AnswerRow, AnswerCursor]:
        """Up to limit answers of a quiz by question, answer time then player, starting after `after`.
        `from_primary`: never from a replica, which may not hold every committed batch yet."""
        ...

    async def user_sessions(
        self, user_id: str, limit: int, after: HistoryCursor | None
    ) -> Page[UserSession, HistoryCursor]:
        """Up to limit sessions a signed-in user played, newest first, starting after `after`: one
        index range of user_sessions, whatever the number of sessions stored."""
        ...

    async def anonymise_user(self, user_id: str, nickname: str) -> tuple[UserSession, ...]:
        """Anonymises, in one transaction, every participation user_sessions lists for the user: their user
        ID is removed from it and their name replaced by `nickname`; scores and answers stay. Returns those
        participations, which user_sessions keeps until forget_user, so a deletion interrupted in between
        finds them again. Running it again changes nothing more."""
        ...

    async def forget_user(self, user_id: str) -> int:
        """Deletes the user's user_sessions rows (the last trace linking them to their participations);
        returns how many. A join of theirs delivered again later adds nothing back."""
        ...

    async def close(self) -> None: ...


class LiveCopyUnavailable(Exception):
    """A service holding live copies of players' names could not rename them now; retrying is safe."""


class LiveCopies(Protocol):
    """A service keeping players' names outside PostgreSQL: quiz_svc's game state, leaderboard_svc's rankings."""

    async def erase(self, players: Sequence[UserSession], nickname: str) -> None:
        """Renames the players to `nickname` there (scores and ranks stay), or raises LiveCopyUnavailable.
        Erasing the same players again changes nothing."""
        ...

    async def close(self) -> None: ...
