"""The port persistence_svc stores through; adapters/postgres.py and adapters/sqlite.py implement it."""

from __future__ import annotations

from typing import Protocol, TypeVar

from persistence_svc.domain import (
    AnswerCursor,
    AnswerRow,
    HistoryCursor,
    Page,
    ParticipantCursor,
    ParticipantRow,
    StoreBatch,
    UserSession,
)

RowT = TypeVar("RowT")
CursorT = TypeVar("CursorT")


class Listing(Protocol[RowT, CursorT]):
    """One of ResultStore's listings (list_participants, list_answers): a page of rows after a cursor."""

    async def __call__(
        self, quiz_id: str, limit: int, after: CursorT | None, *, from_primary: bool = False
    ) -> Page[RowT, CursorT]: ...


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

    async def forget_user(self, user_id: str, nickname: str) -> int:
        """Anonymises a user's participations in one transaction: their user ID is removed from them, their
        name replaced by `nickname`, their user_sessions rows deleted; scores and answers stay. Returns how
        many were anonymised. A join of theirs delivered again later adds nothing back."""
        ...

    async def close(self) -> None: ...
