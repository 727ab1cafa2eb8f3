"""quiz_svc's service layer: each use case checks the rules in `domain`, changes the game store and
publishes events, in the order that keeps the guarantees:

- an answer or a join is reported as accepted only once Kafka has acknowledged its event;
- an answer whose event could not be published is released, and the player's retry publishes the
  same judged answer (same event ID) instead of judging it again;
- a published answer is marked acknowledged in the game store after its player was answered, not
  before: until the mark lands its lease refuses a duplicate, and should the mark be lost, a retry
  after the lease replays the same event, which every sink ignores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from quiz_svc.domain import (
    AnswerRefusal,
    GameState,
    HostAction,
    JoinClosed,
    NicknameTaken,
    NotAPlayer,
    NotTheHost,
    Phase,
    PlayerRemoved,
    Question,
    QuizDefinition,
    QuizError,
    QuizNotFound,
    Unavailable,
    WrongPhase,
    answer_event_id,
    apply_host_action,
    close_question,
    initial_state,
    is_past_close,
    judge,
    may_join,
    new_player_id,
    new_quiz_id,
    normalize_quiz_id,
    sanitize_nickname,
    streak_now,
    validate_quiz,
)
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    Clock,
    Fresh,
    GameStore,
    PlayerRecord,
    QuestionResults,
    QuizRepository,
    QuizUpdate,
    Replay,
    ResultsSource,
    StoredAnswer,
    UpdateFeed,
)
from quizmesh.auth import Credentials, InvalidCredential
from quizmesh.eventbus import EventBusUnavailable, EventPublisher
from quizmesh.eventcodec import new_event_id, timestamp_ms, to_record
from quizmesh.events.v1 import events_pb2

log = logging.getLogger(__name__)


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class PlayerNotFound(QuizError):
    pass


class PlayerLeft(PlayerRemoved):
    """The credential's player left the quiz themselves (PlayerRemoved alone: the host removed them)."""


@dataclass(frozen=True)
class AnswerInput:
    player_token: str
    question_index: int
    choice: int
    # Kafka headers for the answer's event: its trace context, opaque to the rules.
    event_headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class AcceptedAnswer:
    answer: StoredAnswer
    event_id: str


AnswerOutcome = AcceptedAnswer | AnswerRefusal


@dataclass(frozen=True)
class Resumption:
    player: PlayerRecord
    state: GameState
    current_answer: StoredAnswer | None
    player_token: str


@dataclass(frozen=True)
class Timeouts:
    publish_s: float = 3.0
    # An unacknowledged answer reservation outlives the publish deadline, so a slow publish is never
    # taken over by a duplicate while it may still succeed.
    lease_ms: int = 5_000


class AcknowledgementMarks:
    """Writes the game store's acknowledged marks in the background, one store call at a time.

    The marks of batches published while a call is in flight go together in the next call, so under
    load there is one call per store round trip rather than one per batch, and no reply waits for one.
    """

    def __init__(self, store: GameStore) -> None:
        self._store = store
        self._pending: list[AnswerKey] = []
        self._writing: asyncio.Task[None] | None = None

    def add(self, keys: Sequence[AnswerKey]) -> None:
        self._pending.extend(keys)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_pending(), name="acknowledgement-marks")

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                keys, self._pending = self._pending, []
                try:
                    await self._store.acknowledge(keys)
                except Exception as exc:
                    # Harmless if lost (see the module's docstring), so not retried.
                    log.warning("could not mark %d published answers acknowledged: %r", len(keys), exc)
        finally:
            self._writing = None

    async def drain(self) -> None:
        """Waits until every mark added so far is written (or failed)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)


class QuizGame:
    def __init__(
        self,
        repository: QuizRepository,
        store: GameStore,
        publisher: EventPublisher,
        feed: UpdateFeed,
        credentials: Credentials,
        clock: Clock,
        results: ResultsSource,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self._durable_results = results
        self._restoring: dict[str, asyncio.Lock] = {}
        self._repository = repository
        self._store = store
        self._publisher = publisher
        self._feed = feed
        self._credentials = credentials
        self._clock = clock
        self._timeouts = timeouts
        self._acknowledgements = AcknowledgementMarks(store)

    async def drain(self) -> None:
        """Finishes the background work of answers already replied to: call before closing the store."""
        await self._acknowledgements.drain()

    # --- authoring ---

    async def create_quiz(
        self, title: str, questions: Sequence[Question], allow_late_join: bool
    ) -> tuple[QuizDefinition, str]:
        validate_quiz(title, tuple(questions))
        for _ in range(5):
            quiz = QuizDefinition(
                quiz_id=new_quiz_id(),
                title=title.strip(),
                questions=tuple(questions),
                allow_late_join=allow_late_join,
                created_ms=self._clock.now_ms(),
            )
            if await self._repository.add(quiz):
                await self._store.create(initial_state(quiz))
                return quiz, self._credentials.issue("host", quiz.quiz_id)
        raise Unavailable("could not allocate a free quiz ID; try again")

    async def quiz(self, quiz_id: str) -> QuizDefinition:
        quiz = await self._repository.get(normalize_quiz_id(quiz_id))
        if quiz is None:
            raise QuizNotFound(f"no quiz has the ID {quiz_id!r}")
        return quiz

    def is_host(self, quiz_id: str, host_token: str) -> bool:
        try:
            self._credentials.verify(host_token, "host", normalize_quiz_id(quiz_id))
        except InvalidCredential:
            return False
        return True

    async def list_quizzes(self, limit: int, before_ms: int | None) -> list[QuizDefinition]:
        return await self._repository.list(limit, before_ms)

    async def state(self, quiz_id: str) -> tuple[QuizDefinition, GameState]:
        quiz = await self.quiz(quiz_id)
        return quiz, await self._current(quiz)

    # --- players ---

    async def join(self, quiz_id: str, nickname: str) -> tuple[PlayerRecord, str, GameState]:
        quiz, state = await self.state(quiz_id)
        name = sanitize_nickname(nickname)
        may_join(state, quiz)
        player_id = new_player_id()
        joined = await self._store.add_player(quiz.quiz_id, player_id, name)
        if joined is None:
            raise NicknameTaken(f"the nickname {name!r} is taken in this quiz; choose another")
        joined_ms = self._clock.now_ms()  # the join's time ranks the player at 0: one reading for both fields
        event = events_pb2.UserJoinedQuiz(
            event_id=new_event_id(),
            event_time=timestamp_ms(joined_ms),
            quiz_id=quiz.quiz_id,
            player_id=player_id,
            nickname=name,
            quiz_elapsed_ms=joined_ms - quiz.created_ms,
        )
        try:
            await self._publisher.publish([to_record(event)], timeout_s=self._timeouts.publish_s)
        except EventBusUnavailable:
            await self._store.remove_player(quiz.quiz_id, player_id, kicked=False)
            raise Unavailable("the join could not be recorded in time; try again") from None
        record = await self._store.player(quiz.quiz_id, player_id)
        assert record is not None
        return record, self._credentials.issue("player", quiz.quiz_id, player_id), joined

    def _player(self, token: str) -> tuple[str, str]:
        try:
            principal = self._credentials.verify(token, "player")
        except InvalidCredential as exc:
            raise NotAPlayer(str(exc)) from None
        return principal.quiz_id, principal.player_id

    async def resume(self, player_token: str) -> Resumption:
        quiz_id, player_id = self._player(player_token)
        quiz, state = await self.state(quiz_id)
        record = await self._store.player(quiz_id, player_id)
        if record is None:
            raise NotAPlayer("the credential names no player of this quiz")
        if not record.active:
            if record.kicked:
                raise PlayerRemoved("the host removed you from this quiz; join again to play as a new player")
            raise PlayerLeft("you left this quiz; join again to play as a new player")
        current = None
        if state.question_index >= 0:
            current = await self._store.answer(AnswerKey(quiz_id, state.question_index, player_id))
        token = self._credentials.issue("player", quiz_id, player_id)
        # The stored streak is the one after the player's last answer; a question missed since has ended it.
        standing = dataclasses.replace(record.standing, streak=streak_now(quiz, state, record.standing))
        return Resumption(dataclasses.replace(record, standing=standing), state, current, token)

    async def leave(self, player_token: str) -> None:
        quiz_id, player_id = self._player(player_token)
        await self._remove(quiz_id, player_id, kicked=False)

    async def _remove(self, quiz_id: str, player_id: str, *, kicked: bool) -> None:
        if not await self._store.remove_player(quiz_id, player_id, kicked=kicked):
            raise PlayerNotFound(f"no active player {player_id!r} in quiz {quiz_id}")
        event = events_pb2.UserLeftQuiz(
            event_id=new_event_id(),
            event_time=timestamp_ms(self._clock.now_ms()),
            quiz_id=quiz_id,
            player_id=player_id,
            kicked=kicked,
        )
        try:
            await self._publisher.publish([to_record(event)], timeout_s=self._timeouts.publish_s)
        except EventBusUnavailable:
            # The player is out of the live game either way; the leaderboard learns on the next try.
            raise Unavailable("the removal could not be recorded in time; try again") from None

    # --- answers ---

    async def submit_answers(self, inputs: Sequence[AnswerInput]) -> list[AnswerOutcome]:
        now = self._clock.now_ms()
        outcomes: list[AnswerOutcome | None] = [None] * len(inputs)
        claims: list[tuple[int, AnswerClaim, QuizDefinition, Question]] = []
        for position, item in enumerate(inputs):
            try:
                quiz_id, player_id = self._player(item.player_token)
            except NotAPlayer:
                outcomes[position] = AnswerRefusal.UNAUTHENTICATED
                continue
            quiz = await self._repository.get(quiz_id)
            if quiz is None:
                outcomes[position] = AnswerRefusal.QUIZ_NOT_FOUND
                continue
            question = quiz.question(item.question_index)
            if question is None:
                outcomes[position] = AnswerRefusal.QUESTION_NOT_FOUND
                continue
            if not 0 <= item.choice < len(question.choices):
                outcomes[position] = AnswerRefusal.INVALID_CHOICE
                continue
            claim = AnswerClaim(
                quiz_id, item.question_index, player_id, item.choice, now, now + self._timeouts.lease_ms
            )
            claims.append((position, claim, quiz, question))

        claimed = await self._store.claim_answers([c for _, c, _, _ in claims]) if claims else []
        lost = {
            quiz.quiz_id: quiz
            for (_, _, quiz, _), o in zip(claims, claimed, strict=True)
            if o == AnswerRefusal.QUIZ_NOT_FOUND
        }
        if lost:
            for quiz in lost.values():
                await self._current(quiz)
            claimed = await self._store.claim_answers([c for _, c, _, _ in claims])
        verdicts: list[tuple[AnswerKey, StoredAnswer]] = []
        to_publish: list[tuple[int, AnswerKey, StoredAnswer, QuizDefinition]] = []
        for (position, claim, quiz, _), outcome in zip(claims, claimed, strict=True):
            key = AnswerKey(claim.quiz_id, claim.question_index, claim.player_id)
            if isinstance(outcome, AnswerRefusal):
                outcomes[position] = outcome
                continue
            if isinstance(outcome, Replay):
                answer = outcome.answer
            else:
                answer = self._judge(quiz, claim, outcome)
                verdicts.append((key, answer))
            to_publish.append((position, key, answer, quiz))

        if verdicts:
            await self._store.record_verdicts(verdicts)
        if not to_publish:
            return [o if o is not None else AnswerRefusal.UNAVAILABLE for o in outcomes]

        records = [
            to_record(self._answer_event(key, answer, quiz, now), inputs[position].event_headers)
            for position, key, answer, quiz in to_publish
        ]
        keys = [key for _, key, _, _ in to_publish]
        try:
            await self._publisher.publish(records, timeout_s=self._timeouts.publish_s)
        except EventBusUnavailable as exc:
            log.warning("answers not acknowledged by the event bus: %s", exc)
            await self._store.release(keys)
            for position, _, _, _ in to_publish:
                outcomes[position] = AnswerRefusal.UNAVAILABLE
        else:
            self._acknowledgements.add(keys)
            for position, key, answer, _ in to_publish:
                event_id = answer_event_id(key.quiz_id, key.question_index, key.player_id)
                outcomes[position] = AcceptedAnswer(answer, event_id)
        return [o if o is not None else AnswerRefusal.UNAVAILABLE for o in outcomes]

    @staticmethod
    def _judge(quiz: QuizDefinition, claim: AnswerClaim, fresh: Fresh) -> StoredAnswer:
        verdict = judge(quiz, claim.question_index, claim.choice, fresh.received_ms - fresh.open_ms, fresh.standing)
        return StoredAnswer(
            choice=claim.choice,
            correct=verdict.correct,
            points=verdict.points,
            bonus=verdict.bonus,
            response_ms=verdict.response_ms,
            received_ms=fresh.received_ms,
            standing=verdict.standing,
        )

    @staticmethod
    def _answer_event(
        key: AnswerKey, answer: StoredAnswer, quiz: QuizDefinition, now_ms: int
    ) -> events_pb2.AnswerSubmitted:
        return events_pb2.AnswerSubmitted(
            event_id=answer_event_id(key.quiz_id, key.question_index, key.player_id),
            event_time=timestamp_ms(now_ms),
            quiz_id=key.quiz_id,
            player_id=key.player_id,
            question_index=key.question_index,
            choice=answer.choice,
            correct=answer.correct,
            points=answer.points,
            total_score=answer.standing.total,
            streak=answer.standing.streak,
            response_time_ms=answer.response_ms,
            answer_time=timestamp_ms(answer.received_ms),
            quiz_elapsed_ms=answer.received_ms - quiz.created_ms,
        )

    # --- hosts ---

    async def _hosted(self, quiz_id: str, host_token: str) -> QuizDefinition:
        quiz = await self.quiz(quiz_id)
        if not self.is_host(quiz.quiz_id, host_token):
            raise NotTheHost("only the quiz's host may do this; present the host credential issued at creation")
        return quiz

    async def host_action(
        self, quiz_id: str, host_token: str, action: HostAction
    ) -> tuple[GameState, QuestionResults | None]:
        quiz = await self._hosted(quiz_id, host_token)
        for _ in range(10):
            state = await self._current(quiz)
            now = self._clock.now_ms()
            if action == HostAction.NEXT and state.phase == Phase.QUESTION_OPEN and is_past_close(state, now):
                # The deadline passed but the scheduler has not closed it yet: close it here first,
                # so its results are published before the next question opens.
                await self._close_if_due(quiz, now)
                continue
            new = apply_host_action(state, quiz, action, now)
            if await self._store.replace_state(state, new):
                results = await self._after_transition(quiz, state, new)
                return new, results
        raise Unavailable("the quiz changed concurrently too many times; try again")

    async def kick(self, quiz_id: str, host_token: str, player_id: str) -> GameState:
        quiz = await self._hosted(quiz_id, host_token)
        await self._remove(quiz.quiz_id, player_id, kicked=True)
        state = await self._current(quiz)
        await self._feed.publish(quiz, QuizUpdate(state, kicked_player_id=player_id))
        return state

    async def _current(self, quiz: QuizDefinition) -> GameState:
        state = await self._store.state(quiz.quiz_id)
        if state is None:
            state = await self._restore(quiz)
        return state

    async def _restore(self, quiz: QuizDefinition) -> GameState:
        """Rebuilds a quiz's live state after Redis lost it, from the durable records.

        The quiz database holds the last state the host moved the quiz to; PersistenceService holds its
        players and acknowledged answers (PostgreSQL is the source of truth, Redis a projection).
        """
        lock = self._restoring.setdefault(quiz.quiz_id, asyncio.Lock())
        async with lock:
            state = await self._store.state(quiz.quiz_id)
            if state is not None:
                return state
            saved = await self._repository.saved_state(quiz.quiz_id) or initial_state(quiz)
            try:
                stored = await self._durable_results.results(quiz.quiz_id)
            except Exception as exc:
                raise Unavailable(f"quiz {quiz.quiz_id}'s live state is being rebuilt; try again") from exc
            active = sum(1 for p in stored.players if p.active)
            rebuilt = dataclasses.replace(saved, participant_count=active)
            # Another process may have restored it first; either way the store now holds a state.
            await self._store.restore(rebuilt, stored.players, stored.answers)
            if rebuilt.phase == Phase.QUESTION_OPEN:
                await self._store.schedule_close(quiz.quiz_id, rebuilt.close_ms)
            log.warning(
                "rebuilt the live state of quiz %s from durable records: %d players, %d answers",
                quiz.quiz_id,
                len(stored.players),
                len(stored.answers),
            )
            self._restoring.pop(quiz.quiz_id, None)
            state = await self._store.state(quiz.quiz_id)
            if state is None:
                raise Unavailable(f"quiz {quiz.quiz_id}'s live state could not be rebuilt; try again")
            return state

    async def _after_transition(self, quiz: QuizDefinition, old: GameState, new: GameState) -> QuestionResults | None:
        try:
            await self._repository.save_state(new)
        except Exception:
            # The live state in Redis already changed and the quiz goes on; the durable copy only serves a
            # rebuild after Redis loses its data, and the next transition writes a newer one.
            log.warning("could not keep quiz %s's state durably; it stays live in Redis", quiz.quiz_id, exc_info=True)
        results = None
        if new.phase == Phase.QUESTION_OPEN:
            await self._store.schedule_close(quiz.quiz_id, new.close_ms)
        elif old.phase == Phase.QUESTION_OPEN:
            await self._store.unschedule_close(quiz.quiz_id)
            results = await self._results(quiz, old.question_index)
        await self._feed.publish(quiz, QuizUpdate(new, results))
        return results

    async def _results(self, quiz: QuizDefinition, index: int) -> QuestionResults:
        question = quiz.questions[index]
        counts = await self._store.choice_counts(quiz.quiz_id, index, len(question.choices))
        return QuestionResults(index, tuple(sorted(question.correct_choices)), tuple(counts))

    # --- deadlines ---

    async def close_due_questions(self, limit: int = 200) -> int:
        """Closes every question whose deadline passed. Run by one scheduler loop per process."""
        now = self._clock.now_ms()
        closed = 0
        for quiz_id in await self._store.due_closes(now - 1, limit):
            quiz = await self._repository.get(quiz_id)
            if quiz is None:
                await self._store.unschedule_close(quiz_id)
                continue
            if await self._close_if_due(quiz, now):
                closed += 1
        return closed

    async def _close_if_due(self, quiz: QuizDefinition, now: int) -> bool:
        state = await self._store.state(quiz.quiz_id)
        if state is None or state.phase != Phase.QUESTION_OPEN:
            await self._store.unschedule_close(quiz.quiz_id)
            return False
        if not is_past_close(state, now):
            return False
        new = close_question(state, now)
        # Several processes race for the same deadline; the compare-and-set lets exactly one win.
        if not await self._store.replace_state(state, new):
            return False
        await self._after_transition(quiz, state, new)
        return True


__all__ = [
    "AcceptedAnswer",
    "AnswerInput",
    "AnswerOutcome",
    "JoinClosed",
    "PlayerLeft",
    "PlayerNotFound",
    "QuizGame",
    "Resumption",
    "SystemClock",
    "Timeouts",
    "WrongPhase",
]
