"""The ports quiz_svc's service layer depends on. Adapters implement them for Redis, PostgreSQL,
SQLite and memory; the service layer never sees a driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from quiz_svc.domain import AnswerRefusal, GameState, Ownership, PlayerStanding, QuizDefinition, Session
from quiz_svc.events import GameEvent
from quiz_svc.kinds import AnswerValue
from quiz_svc.media import MediaFile


class QuizRepository(Protocol):
    """Durable quiz definitions and the last state each quiz's host moved it to (the quiz database)."""

    async def ensure_schema(self) -> None:
        """Makes sure the tables are those this code needs: SQLite (the embedded mode) creates what is
        missing; PostgreSQL's migrations are applied by `quizmesh migrate` and only checked here
        (quizmesh.migrations.SchemaOutOfDate names a missing one)."""
        ...

    async def add(
        self, quiz: QuizDefinition, media: Sequence[MediaFile] = (), owner_user_id: str | None = None
    ) -> bool:
        """Stores a new quiz, owned by owner_user_id (None: by its host credential's holder), as its own
        first session, and the media uploaded with it, together or not at all; False when its ID is
        already taken. Media already stored (the same bytes) are kept as they are."""
        ...

    async def add_session(self, session: QuizDefinition, quiz_id: str, host_user_id: str | None) -> bool:
        """Stores a new session of the quiz quiz_id, whose copy of the quiz is `session` (keyed by the
        session's join code); False when that join code is already taken."""
        ...

    async def ownership(self, quiz_id: str) -> Ownership | None:
        """Who owns the authored quiz quiz_id; None when no authored quiz has that ID (a session's
        join code that is not its quiz's first is not one)."""
        ...

    async def session_host(self, session_id: str) -> str | None:
        """The user who hosts a session (started it signed in); None when hosted by credential only."""
        ...

    async def sessions(self, quiz_id: str, limit: int, before_ms: int | None) -> list[Session]:
        """An authored quiz's sessions, newest first, started strictly before before_ms when given."""
        ...

    async def stored_media(self, media_ids: Sequence[str]) -> set[str]:
        """Which of these media IDs are stored."""
        ...

    async def media(self, media_id: str) -> MediaFile | None: ...

    async def get(self, quiz_id: str) -> QuizDefinition | None: ...

    async def list(self, limit: int, before_ms: int | None, owner_user_id: str | None = None) -> list[QuizDefinition]:
        """Authored quizzes (not their later sessions), newest first, created strictly before before_ms
        when given, only those owner_user_id owns when given."""
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
    """A request to judge one answer that the platform first received at received_ms (the edge's
    stamp within domain.plausible_receipt's bounds), handled at now_ms."""

    quiz_id: str
    question_index: int
    player_id: str
    value: AnswerValue
    received_ms: int
    now_ms: int
    lease_until_ms: int


@dataclass(frozen=True)
class Claimant:
    """The quiz_svc process claiming answers, and the processes it currently believes alive.

    A reservation is owned by the process that made it. Another process takes it over once its owner
    is no longer among the living (it died: its heartbeat expired) or its lease ran out (a backstop for
    an owner stuck for longer than any publish may take)."""

    instance_id: str
    live: frozenset[str]


@dataclass(frozen=True)
class StoredAnswer:
    """A judged answer as the game store holds it until (and after) Kafka acknowledges it."""

    value: AnswerValue
    correct: bool
    points: int
    bonus: int
    response_ms: int
    received_ms: int
    standing: PlayerStanding  # the player's standing after this answer
    credit: Fraction
    # The keys the answer counts under in its question's results (domain.tally); the store counts them
    # without knowing what they mean.
    tally: tuple[str, ...]


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


@dataclass(frozen=True)
class LiveState:
    """A quiz's live state, and whether the effects of the transition that led to it are still owed.

    A transition is stored together with what it owes (its state's version, and the question it closed
    or -1), in one atomic step; whoever finishes the effects (its process, the host's retry, the
    deadline scheduler, or the recovery of a dead process) clears the mark."""

    state: GameState
    owes_effects: bool
    closed_question: int


class GameStore(Protocol):
    """Live game state shared by every quiz_svc process. Each method is atomic on its own."""

    # Whether an answer's steps (claim, verdict, acknowledgement, recovery) count only once the store's
    # replicas hold them, so that a failover cannot forget them (Redis WAIT, docs/reliability.md): a
    # player is then told an answer was accepted only once its acknowledgement is confirmed.
    waits_for_replicas: bool

    async def create(self, state: GameState) -> None: ...

    async def state(self, quiz_id: str) -> GameState | None: ...

    async def live(self, quiz_id: str) -> LiveState | None: ...

    async def replace_state(self, expected: GameState, new: GameState, closed_question: int = -1) -> bool:
        """Compare-and-set on the state's version; False when another process changed it first.

        The new state owes its transition's effects from the same atomic step (see LiveState)."""
        ...

    async def effects_done(self, quiz_id: str, version: int) -> None:
        """Clears the mark of owed effects, if it is still that of the state at `version`."""
        ...

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        """Adds a player under a nickname unique in the quiz (case-insensitive).

        Returns the new state, or None when the nickname or the player ID is taken.
        """
        ...

    async def remove_player(self, quiz_id: str, player_id: str, *, kicked: bool) -> bool:
        """Marks a player inactive; False when they were not an active player."""
        ...

    async def player(self, quiz_id: str, player_id: str) -> PlayerRecord | None: ...

    async def erase_player(self, quiz_id: str, player_id: str, nickname: str) -> bool:
        """Renames a player to `nickname` (see domain.erased_nickname) and frees their own nickname in the
        quiz; seat, score and answers stay. False when the player is not held or already bears it."""
        ...

    async def claim_answers(self, claims: Sequence[AnswerClaim], claimant: Claimant) -> list[ClaimOutcome]:
        """Checks the answer window on the receipt time and answer-once, and reserves each first answer
        for the claimant.

        A repeat of an acknowledged answer is ALREADY_ANSWERED; of one another living process is still
        handling, UNAVAILABLE (retry). A reservation nobody handles any more (released, or its owner
        dead, or its lease over) is taken over: judged, it comes back as a Replay of the same verdict;
        not yet judged, as Fresh with its first receipt time. Where the store waits for replicas, a claim
        they did not confirm in time is released again and UNAVAILABLE.
        """
        ...

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]], instance_id: str) -> list[bool]:
        """Writes judged answers, the players' new standings and the counts of their tally keys, for each answer
        still reserved by instance_id and not judged yet; says which were written.

        From this step on an answer is owed to Kafka: its points are in the player's standing, so it is
        published, by this process, a retry or a recovery, never dropped. Where the store waits for
        replicas, verdicts they did not confirm in time count as not written and are released (a retry
        takes each over; one judged is still owed)."""
        ...

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> set[AnswerKey]:
        """Marks answers as held by Kafka: from now on a repeat is simply already_answered. Returns the
        keys whose mark is confirmed: all, unless the store waits for replicas and they did not confirm
        in time (the mark may still be on the primary)."""
        ...

    async def release(self, keys: Sequence[AnswerKey], instance_id: str) -> None:
        """Gives up instance_id's reservations whose publication failed: a retry takes them over at
        once, and a recovery publishes those already judged."""
        ...

    async def recover_answers(
        self, quiz_ids: Sequence[str], claimant: Claimant, now_ms: int, lease_until_ms: int
    ) -> list[tuple[AnswerKey, StoredAnswer]]:
        """Takes over every reservation of these quizzes that nobody handles any more (as claim_answers
        would take it over): one not judged yet is released, keeping its first receipt time; a judged
        one is reserved for the claimant and returned, to be published with its verdict. Raises
        Unavailable where the store waits for replicas and they did not confirm in time."""
        ...

    async def answer(self, key: AnswerKey) -> StoredAnswer | None: ...

    async def tallies(self, quiz_id: str, question_index: int) -> dict[str, int]:
        """How many recorded answers to the question counted under each tally key."""
        ...

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

    async def results(self, quiz: QuizDefinition) -> StoredResults: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class QuestionResults:
    question_index: int
    correct_choices: tuple[int, ...]
    choice_counts: tuple[int, ...]
    tallies: Mapping[str, int]


@dataclass(frozen=True)
class QuizUpdate:
    """A change of a quiz's live state, as pushed to everyone watching it."""

    state: GameState
    results: QuestionResults | None = None
    kicked_player_id: str = ""


class UpdateFeed(Protocol):
    """Pushes state changes to every process serving a WatchQuiz stream of the quiz."""

    async def publish(self, quiz: QuizDefinition, update: QuizUpdate) -> None: ...

    def watch(self, quiz_id: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The quiz's updates from now on, as the publisher encoded them (a WatchQuizResponse each, encoded
        once for every watcher of every process), while the context lasts."""
        ...


# Kafka headers for an event (its trace context), opaque to the rules.
EventHeaders = tuple[tuple[str, bytes], ...]


class GameEvents(Protocol):
    """Where the game's events go (Kafka): `publish` returns once all are acknowledged, and raises
    quizmesh.eventbus.EventBusUnavailable when they were not within timeout_s."""

    async def publish(
        self, events: Sequence[GameEvent], *, timeout_s: float, headers: Sequence[EventHeaders] = ()
    ) -> None:
        """Publishes events together; headers, when given, go one per event."""
        ...


class Clock(Protocol):
    def now_ms(self) -> int: ...


@dataclass(frozen=True)
class Heartbeat:
    """What one heartbeat learnt: the processes alive, those whose heartbeat expired, and whether this
    process had been given up for dead (its heartbeat had expired and been removed)."""

    live: frozenset[str]
    dead: tuple[str, ...]
    was_given_up: bool


class InstanceRegistry(Protocol):
    """The quiz_svc processes sharing a game store: who is alive, and where each holds work that must
    be finished should it die (its answer reservations and its transitions' owed effects).

    Each process registers a quiz before it first reserves an answer or changes a state there, so the
    recovery of a dead process reads the list of its quizzes instead of scanning the store."""

    async def beat(self, instance_id: str, now_ms: int, ttl_ms: int, dead_for_ms: int = 0) -> Heartbeat:
        """Declares instance_id alive until now_ms + ttl_ms. Reports as dead the processes whose
        heartbeat expired at least dead_for_ms ago."""
        ...

    async def register(self, instance_id: str, quiz_ids: Sequence[str]) -> None: ...

    async def quizzes(self, instance_id: str) -> list[str]: ...

    async def adopt(self, dead_id: str, adopter_id: str, ttl_ms: int) -> bool:
        """Takes on the recovery of a dead process for ttl_ms, unless another process has; True if taken."""
        ...

    async def forget(self, instance_id: str) -> None:
        """Removes a recovered dead process from the registry."""
        ...

    async def retire(self, instance_id: str) -> None:
        """Declares a process dead at once (it is shutting down), so the others take over its work now."""
        ...

    async def close(self) -> None: ...
