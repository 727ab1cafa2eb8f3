"""What gets stored from which event, and how a batch of events becomes one idempotent write.

Rows are keyed as the database keys them: a participant by (quiz_id, player_id), an answer by
(quiz_id, question_index, player_id). Within a batch the first occurrence of a key wins, which is also
what the database does with a redelivery of a row it already holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Generic, TypeVar


class InvalidEvent(ValueError):
    """An event that decodes but cannot be stored; storing it would fail the batch on every retry."""


@dataclass(frozen=True)
class ParticipantRow:
    """A player who joined a quiz. left_at is set once they left or were removed."""

    quiz_id: str
    player_id: str
    nickname: str
    joined_at: datetime
    quiz_elapsed_ms: int
    left_at: datetime | None = None
    kicked: bool = False
    # The signed-in user the player is; None for an anonymous player.
    user_id: str | None = None


@dataclass(frozen=True)
class LeaveRow:
    """A player leaving a quiz, or being removed from it by the host."""

    quiz_id: str
    player_id: str
    left_at: datetime
    kicked: bool


@dataclass(frozen=True)
class AnswerRow:
    """An accepted, judged answer: one per player per question."""

    quiz_id: str
    question_index: int
    player_id: str
    choice: int
    correct: bool
    points: int
    total_score: int
    streak: int
    response_time_ms: int
    answered_at: datetime
    quiz_elapsed_ms: int
    event_id: str
    # The answer as given, as compact JSON text (quizmesh.answer_values), its words for the CSV, and
    # the share of the points it earned before the speed factor ("3/4").
    answer: str
    answer_text: str
    credit: str


Row = ParticipantRow | AnswerRow | LeaveRow


@dataclass(frozen=True)
class StoreBatch:
    """Rows to write in one transaction, each key at most once per kind."""

    joins: tuple[ParticipantRow, ...] = ()
    answers: tuple[AnswerRow, ...] = ()
    leaves: tuple[LeaveRow, ...] = ()

    def __len__(self) -> int:
        return len(self.joins) + len(self.answers) + len(self.leaves)


@dataclass(frozen=True)
class ParticipantCursor:
    """Where a page of participants ended, in join order."""

    joined_at: datetime
    player_id: str


@dataclass(frozen=True)
class AnswerCursor:
    """Where a page of answers ended, in (question, answer time, player) order."""

    question_index: int
    answered_at: datetime
    player_id: str


ItemT = TypeVar("ItemT")
CursorT = TypeVar("CursorT")


@dataclass(frozen=True)
class Page(Generic[ItemT, CursorT]):
    """Some rows in order; next_after is where the following page starts, None after the last row."""

    items: tuple[ItemT, ...]
    next_after: CursorT | None


def participant_cursor(row: ParticipantRow) -> ParticipantCursor:
    return ParticipantCursor(row.joined_at, row.player_id)


def answer_cursor(row: AnswerRow) -> AnswerCursor:
    return AnswerCursor(row.question_index, row.answered_at, row.player_id)


def batch_of(rows: Iterable[Row]) -> StoreBatch:
    """One write for many rows. Joins and answers keep their first occurrence; a player's leaves
    merge into one, since a PostgreSQL upsert may touch each row only once per statement."""
    joins: dict[tuple[str, str], ParticipantRow] = {}
    answers: dict[tuple[str, int, str], AnswerRow] = {}
    leaves: dict[tuple[str, str], LeaveRow] = {}
    for row in rows:
        if isinstance(row, ParticipantRow):
            joins.setdefault((row.quiz_id, row.player_id), row)
        elif isinstance(row, AnswerRow):
            answers.setdefault((row.quiz_id, row.question_index, row.player_id), row)
        else:
            key = (row.quiz_id, row.player_id)
            earlier = leaves.get(key)
            leaves[key] = row if earlier is None else _merge_leaves(earlier, row)
    return StoreBatch(tuple(joins.values()), tuple(answers.values()), tuple(leaves.values()))


def _merge_leaves(a: LeaveRow, b: LeaveRow) -> LeaveRow:
    """The latest departure counts, and a removal by the host is never forgotten."""
    return LeaveRow(a.quiz_id, a.player_id, max(a.left_at, b.left_at), a.kicked or b.kicked)


def key(value: str, name: str) -> str:
    """A key column's value: never empty, never holding NUL."""
    if not value:
        raise InvalidEvent(f"{name} is empty")
    return text(value, name)


def index(value: int, name: str) -> int:
    """A position (a question's index): never negative."""
    if value < 0:
        raise InvalidEvent(f"{name} {value} is negative")
    return value


def text(value: str, name: str) -> str:
    """A text column's value: never holding NUL."""
    # PostgreSQL text cannot hold NUL; such a row would fail its batch on every redelivery.
    if "\x00" in value:
        raise InvalidEvent(f"{name} contains a NUL character")
    return value


# --- a user's history (issue 16) ---


@dataclass(frozen=True)
class UserSession:
    """One session a user played, as user_sessions keys it."""

    user_id: str
    quiz_id: str
    player_id: str
    joined_at: datetime


# What a player's name becomes once their user asked for their data to be deleted: their scores stay,
# so the rankings of finished sessions do not change.
DELETED_NICKNAME = "Deleted player"


@dataclass(frozen=True)
class HistoryCursor:
    """Where a page of a user's sessions ended, newest first."""

    joined_at: datetime
    quiz_id: str


def history_cursor(row: UserSession) -> HistoryCursor:
    return HistoryCursor(row.joined_at, row.quiz_id)


# --- keyset paging, the same for every listing and store ---


Cursor = ParticipantCursor | AnswerCursor | HistoryCursor


def listing_params(owner: str, limit: int, after: Cursor | None) -> tuple[object, ...]:
    """A listing query's parameters: whose rows, one row more than the page (so the store learns
    whether another page follows without counting), then the cursor's fields, which are the listing's
    sort columns in order."""
    if after is None:
        return (owner, limit + 1)
    return (owner, limit + 1, *astuple(after))


def page_of(rows: Sequence[ItemT], limit: int, cursor: Callable[[ItemT], CursorT]) -> Page[ItemT, CursorT]:
    """The page of a listing read with listing_params: a row past the limit means another page."""
    items = tuple(rows[:limit])
    return Page(items, cursor(items[-1]) if len(rows) > limit else None)


@dataclass(frozen=True)
class FinalStanding:
    player_id: str
    score: int
    reached_ms: int


# The leaderboard's ranking rule (leaderboard_svc/domain.py: `rank_key`, `after_join`, `after_answer`),
# restated for stored rows: a session's ranking read after the fact, for the history. The two are held
# together by tests/persistence_svc/test_user_history.py, which ranks the same events through both.
_REACHED_SLOTS = 2**32


def final_standings(participants: Iterable[ParticipantRow], answers: Iterable[AnswerRow]) -> list[FinalStanding]:
    """The ranked players of a session, best first: those who joined and did not leave, by score, then
    by who reached it first (clamped to the leaderboard's window), then by player ID descending."""
    by_player: dict[str, list[AnswerRow]] = {}
    for answer in answers:
        by_player.setdefault(answer.player_id, []).append(answer)
    standings = []
    for participant in participants:
        if participant.left_at is not None:
            continue
        answered = sorted(by_player.get(participant.player_id, ()), key=lambda a: a.question_index)
        score = answered[-1].total_score if answered else 0
        if score == 0:
            reached = participant.quiz_elapsed_ms
        else:
            # The answer that last changed the score: the first to reach the final total.
            reached = next(a.quiz_elapsed_ms for a in answered if a.total_score == score)
        standings.append(FinalStanding(participant.player_id, score, reached))

    def order(s: FinalStanding) -> tuple[int, str]:
        clamped = min(max(s.reached_ms, 0), _REACHED_SLOTS - 1)
        return s.score * _REACHED_SLOTS + (_REACHED_SLOTS - 1 - clamped), s.player_id

    return sorted(standings, key=order, reverse=True)
