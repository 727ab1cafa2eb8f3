"""The ports quiz_svc's service layer depends on. Adapters implement them for Redis, PostgreSQL,
SQLite and memory; the service layer never sees a driver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from quiz_svc.domain import AnswerRefusal, GameState, PlayerStanding, QuizDefinition


class QuizRepository(Protocol):
    """Durable quiz definitions and the last state each quiz's host moved it to (the quiz database)."""

    async def migrate(self) -> None: ...

    async def add(self, quiz: QuizDefinition) -> bool:
        """Stores a new quiz; False when its ID is already taken."""
        ...

    async def get(self, quiz_id: str) -> QuizDefinition | None: ...

    async def list(self, limit: int, before_ms: int | None) -> list[QuizDefinition]:
        """Newest first, created strictly before before_ms when given."""
        ...

    async def save_state(self, state: GameState) -> None:
        """Keeps the state durably unless a newer version is already kept."""
        ...

    async def saved_state(self, quiz_id: str) -> GameState | None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PlayerRecord:
    player_id: str
    nickname: str
    standing: PlayerStanding
    active: bool  # False once the player left or was removed
    kicked: bool


@dataclass(frozen=True)
class AnswerClaim:
    """A request to judge one answer, received at server time received_ms."""

    quiz_id: str
    question_index: int
    player_id: str
    choice: int
    received_ms: int
    lease_until_ms: int


@dataclass(frozen=True)
class StoredAnswer:
    """A judged answer as the game store holds it until (and after) Kafka acknowledges it."""

    choice: int
    correct: bool
    points: int
    bonus: int
    response_ms: int
    received_ms: int
    standing: PlayerStanding  # the player's standing after this answer


@dataclass(frozen=True)
class Fresh:
    """The answer is the player's first to the question: judge it from this standing."""

    standing: PlayerStanding
    open_ms: int
    received_ms: int  # when first received, kept across a retry after a lost claim


@dataclass(frozen=True)
class Replay:
    """The answer was judged before but never acknowledged by Kafka: publish it again."""

    answer: StoredAnswer


ClaimOutcome = Fresh | Replay | AnswerRefusal


@dataclass(frozen=True)
class AnswerKey:
    quiz_id: str
    question_index: int
    player_id: str


class GameStore(Protocol):
    """Live game state shared by every quiz_svc process. Each method is atomic on its own."""

    async def create(self, state: GameState) -> None: ...

    async def state(self, quiz_id: str) -> GameState | None: ...

    async def replace_state(self, expected: GameState, new: GameState) -> bool:
        """Compare-and-set on the state's version; False when another process changed it first."""
        ...

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        """Adds a player under a nickname unique in the quiz (case-insensitive).

        Returns the new state, or None when the nickname is taken.
        """
        ...

    async def remove_player(self, quiz_id: str, player_id: str, *, kicked: bool) -> bool:
        """Marks a player inactive; False when they were not an active player."""
        ...

    async def player(self, quiz_id: str, player_id: str) -> PlayerRecord | None: ...

    async def claim_answers(self, claims: Sequence[AnswerClaim]) -> list[ClaimOutcome]:
        """Checks the answer window on server time and answer-once, and reserves each first answer.

        A reservation whose lease expired without being acknowledged may be claimed again, so an
        answer whose event never reached Kafka is re-published rather than lost or double counted.
        """
        ...

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]]) -> None:
        """Writes judged answers, the players' new standings and the per-choice counts."""
        ...

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> None:
        """Marks answers as held by Kafka: from now on a repeat is simply already_answered."""
        ...

    async def release(self, keys: Sequence[AnswerKey]) -> None:
        """Ends the leases of answers whose publication failed, so a retry re-publishes at once."""
        ...

    async def answer(self, key: AnswerKey) -> StoredAnswer | None: ...

    async def choice_counts(self, quiz_id: str, question_index: int, choices: int) -> list[int]: ...

    async def schedule_close(self, quiz_id: str, close_ms: int) -> None: ...

    async def due_closes(self, now_ms: int, limit: int) -> list[str]:
        """Quizzes whose open question's deadline has passed."""
        ...

    async def unschedule_close(self, quiz_id: str) -> None: ...

    async def restore(
        self, state: GameState, players: Sequence[PlayerRecord], answers: Sequence[tuple[AnswerKey, StoredAnswer]]
    ) -> bool:
        """Recreates a quiz's lost live state, answers as acknowledged; False if it exists already."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class StoredResults:
    """What the results database holds of a quiz: its players and their acknowledged answers."""

    players: Sequence[PlayerRecord]
    answers: Sequence[tuple[AnswerKey, StoredAnswer]]


class ResultsSource(Protocol):
    """Reads back what persistence_svc stored, the source of truth for a quiz's players and answers."""

    async def results(self, quiz_id: str) -> StoredResults: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class QuestionResults:
    question_index: int
    correct_choices: tuple[int, ...]
    choice_counts: tuple[int, ...]


@dataclass(frozen=True)
class QuizUpdate:
    """A change of a quiz's live state, as pushed to everyone watching it."""

    state: GameState
    results: QuestionResults | None = None
    kicked_player_id: str = ""


class UpdateFeed(Protocol):
    """Pushes state changes to every process serving a WatchQuiz stream of the quiz."""

    async def publish(self, quiz: QuizDefinition, update: QuizUpdate) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int: ...
