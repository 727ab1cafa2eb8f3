"""quiz_svc's service layer: each use case checks the rules in `domain`, changes the game store and
publishes events, in the order that keeps the guarantees:

- an answer or a join is reported as accepted only once Kafka has acknowledged its event;
- an answer is reserved by this process (its instance ID) until Kafka holds it; a repeat meanwhile
  is refused as retryable, and should this process die, whichever process sees it first (the
  player's retry or the recovery of the dead process's quizzes) takes the reservation over;
- once judged, an answer's points are in the player's standing, so it is owed to Kafka: published by
  this process, or on its failure by the player's retry (same event ID) or a recovery, never dropped;
- a published answer is marked acknowledged in the game store after its player was answered, not
  before: until the mark lands the reservation refuses a duplicate, and should the mark be lost, a
  retry or a recovery replays the same event, which every sink ignores;
- a transition of a quiz's state is stored together with the mark of the effects it owes (deadline,
  push, durable copy); whoever meets the mark first finishes them (this process, the host's retry,
  the next transition, the deadline scheduler, or the recovery of a dead process), then clears it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quiz_svc import events, media
from quiz_svc.domain import (
    AnswerRefusal,
    GameState,
    HostAction,
    InvalidQuiz,
    JoinClosed,
    NicknameTaken,
    NotAPlayer,
    NotSignedIn,
    NotTheHost,
    Phase,
    PlayerRemoved,
    Question,
    QuizDefinition,
    QuizError,
    QuizNotFound,
    Session,
    Unavailable,
    WrongPhase,
    answer_event_id,
    apply_host_action,
    choice_counts,
    close_question,
    closed_question,
    correct_choices,
    erased_nickname,
    host_action_done,
    initial_state,
    is_past_close,
    judge,
    may_join,
    may_join_as,
    new_player_id,
    new_quiz_id,
    new_session,
    normalize_quiz_id,
    owns,
    plausible_receipt,
    rebuilt_version,
    sanitize_nickname,
    streak_now,
    user_player_id,
    validate_quiz,
)
from quiz_svc.kinds import AnswerValue, InvalidAnswer
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    Claimant,
    Clock,
    EventHeaders,
    Fresh,
    GameEvents,
    GameStore,
    InstanceRegistry,
    LiveState,
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
from quizmesh.eventbus import EventBusUnavailable
from quizmesh.identity import ANONYMOUS, Identities, InvalidIdentity, User

log = logging.getLogger(__name__)


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class PlayerNotFound(QuizError):
    pass


class MediaNotFound(QuizError):
    pass


class PlayerLeft(PlayerRemoved):
    """The credential's player left the quiz themselves (PlayerRemoved alone: the host removed them)."""


@dataclass(frozen=True)
class AnswerInput:
    player_token: str
    question_index: int
    # The answer as sent; None when it could not be read as any answer (a number that is not one).
    value: AnswerValue | None
    # Kafka headers for the answer's event: its trace context, opaque to the rules.
    event_headers: EventHeaders = ()
    # When the edge first received the answer (its own clock), if it said; see domain.plausible_receipt.
    received_ms: int | None = None


@dataclass(frozen=True)
class AcceptedAnswer:
    answer: StoredAnswer
    event_id: str
    question: Question


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
    # taken over by a duplicate while it may still succeed. Only a backstop: a dead owner's
    # reservations are taken over as soon as its heartbeat has expired.
    lease_ms: int = 5_000
    # A process is taken for dead once it has not renewed its heartbeat for this long.
    liveness_ttl_ms: int = 3_000
    # How long one process has the recovery of a dead one to itself, before another may take it on.
    adoption_ms: int = 10_000
    # How long after a process was found dead its recovery begins. Its answers are free for the players'
    # retries at once; the recovery, which publishes the judged ones should nobody retry, comes after
    # them, so a player who retries in time gets their verdict rather than "already answered".
    recovery_delay_ms: int = 2_000
    # How old an edge's receipt time may be and still count (domain.plausible_receipt).
    receipt_grace_ms: int = 30_000


class AcknowledgementMarks:
    """Writes the game store's acknowledged marks in the background, one store call at a time.

    The marks of batches published while a call is in flight go together in the next call, so under
    load there is one call per store round trip rather than one per batch. Each `add` returns what
    resolves to the keys whose marks the store confirmed (none if its call failed): where the store
    waits for replicas, a reply waits for it (see QuizGame._publish_answers); otherwise none does.
    """

    def __init__(self, store: GameStore) -> None:
        self._store = store
        self._pending: list[tuple[list[AnswerKey], asyncio.Future[set[AnswerKey]]]] = []
        self._writing: asyncio.Task[None] | None = None

    def add(self, keys: Sequence[AnswerKey]) -> asyncio.Future[set[AnswerKey]]:
        confirmed: asyncio.Future[set[AnswerKey]] = asyncio.get_running_loop().create_future()
        self._pending.append((list(keys), confirmed))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_pending(), name="acknowledgement-marks")
        return confirmed

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                batches, self._pending = self._pending, []
                keys = [key for batch, _ in batches for key in batch]
                try:
                    marked = await self._store.acknowledge(keys)
                except Exception as exc:
                    # Harmless if lost (see the module's docstring), so not retried.
                    log.warning("could not mark %d published answers acknowledged: %r", len(keys), exc)
                    marked = set()
                for batch, confirmed in batches:
                    if not confirmed.done():
                        confirmed.set_result(marked.intersection(batch))
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
        game_events: GameEvents,
        feed: UpdateFeed,
        credentials: Credentials,
        clock: Clock,
        results: ResultsSource,
        instances: InstanceRegistry,
        timeouts: Timeouts = Timeouts(),
        instance_id: str = "",
        identities: Identities = ANONYMOUS,
    ) -> None:
        self._durable_results = results
        self._identities = identities
        self._player_secret = credentials.subkey("signed-in players")
        self._restoring: dict[str, asyncio.Lock] = {}
        self._repository = repository
        self._store = store
        self._events = game_events
        self._feed = feed
        self._credentials = credentials
        self._clock = clock
        self._timeouts = timeouts
        self._acknowledgements = AcknowledgementMarks(store)
        # This process among the quiz_svc processes sharing the store: new at every start, so a restarted
        # process never mistakes its predecessor's reservations for its own.
        self.instance_id = instance_id or secrets.token_hex(8)
        self._instances = instances
        self._living = frozenset({self.instance_id})
        self._registered: set[str] = set()
        self._beaten = False
        # Quizzes where this process left work unfinished: answers it released unpublished, effects it
        # could not finish. The recovery pass comes back to them.
        self._unsettled: set[str] = set()

    async def drain(self) -> None:
        """Finishes the background work of answers already replied to: call before closing the store."""
        await self._acknowledgements.drain()

    # --- the processes sharing the store ---

    def _claimant(self) -> Claimant:
        return Claimant(self.instance_id, self._living | {self.instance_id})

    async def _register(self, quiz_ids: Iterable[str]) -> None:
        """Lists quizzes among this process's before it first holds work there (once per quiz)."""
        new = sorted(set(quiz_ids) - self._registered)
        if new:
            await self._instances.register(self.instance_id, new)
            self._registered.update(new)

    async def heartbeat(self) -> tuple[str, ...]:
        """Declares this process alive for the liveness TTL; returns the processes dead for longer than
        the recovery delay."""
        beat = await self._instances.beat(
            self.instance_id, self._clock.now_ms(), self._timeouts.liveness_ttl_ms, self._timeouts.recovery_delay_ms
        )
        if beat.was_given_up and self._beaten:
            log.warning(
                "quiz_svc %s had missed its heartbeats long enough to be taken for dead; the others may have "
                "taken over some of its answers",
                self.instance_id,
            )
        self._beaten = True
        self._living = beat.live | {self.instance_id}
        return tuple(i for i in beat.dead if i != self.instance_id)

    async def recover_dead(self, dead: Sequence[str]) -> None:
        """Finishes the work of dead processes, each adopted by one process at a time."""
        for instance in dead:
            if not await self._instances.adopt(instance, self.instance_id, self._timeouts.adoption_ms):
                continue
            quizzes = await self._instances.quizzes(instance)
            log.warning("recovering the work of quiz_svc %s (no heartbeat) in %d quizzes", instance, len(quizzes))
            await self._recover_quizzes(quizzes)
            await self._instances.forget(instance)

    async def settle_unfinished(self) -> None:
        """Comes back to this process's own unfinished work (answers released unpublished, effects it
        could not finish)."""
        if not self._unsettled:
            return
        quizzes, self._unsettled = sorted(self._unsettled), set()
        try:
            await self._recover_quizzes(quizzes)
        except BaseException:
            self._unsettled.update(quizzes)
            raise

    async def _recover_quizzes(self, quiz_ids: Sequence[str]) -> None:
        await self._register(quiz_ids)
        now = self._clock.now_ms()
        taken = await self._store.recover_answers(quiz_ids, self._claimant(), now, now + self._timeouts.lease_ms)
        definitions = {quiz_id: await self._repository.get(quiz_id) for quiz_id in quiz_ids}
        owed = [(key, answer, quiz, ()) for key, answer in taken if (quiz := definitions[key.quiz_id]) is not None]
        if owed:
            published = await self._publish_answers(owed, now)
            log.warning(
                "published %d of %d judged answers that failed or dead attempts left unpublished",
                len(published),
                len(owed),
            )
        for quiz in definitions.values():
            if quiz is None:
                continue
            live = await self._store.live(quiz.quiz_id)
            if live is not None and live.owes_effects:
                await self._finish_effects(quiz, live)

    async def retire(self) -> None:
        """Declares this process dead at once (call once its calls are drained), so the others take over
        whatever it leaves, without waiting for its heartbeat to expire."""
        try:
            await self._instances.retire(self.instance_id)
        except Exception as exc:
            log.warning(
                "could not retire quiz_svc %s; the others will wait for its heartbeat to expire: %r",
                self.instance_id,
                exc,
            )

    # --- authoring ---

    async def create_quiz(
        self,
        title: str,
        questions: Sequence[Question],
        allow_late_join: bool,
        uploads: Mapping[str, bytes] | None = None,
        *,
        identity_token: str = "",
        requires_sign_in: bool = False,
    ) -> tuple[QuizDefinition, str]:
        """Creates a quiz with the media uploaded for it by name, which its questions name by upload name
        or, for media stored before, by media ID. With an identity token, its user owns the quiz; either
        way the quiz is its own first session, whose host credential is returned."""
        owner = await self._user(identity_token)
        resolved, files = await self._checked(title, questions, uploads or {})
        for _ in range(5):
            quiz = QuizDefinition(
                quiz_id=new_quiz_id(),
                title=title.strip(),
                questions=resolved,
                allow_late_join=allow_late_join,
                created_ms=self._clock.now_ms(),
                requires_sign_in=requires_sign_in,
            )
            if await self._repository.add(quiz, files, owner.user_id if owner else None):
                await self._store.create(initial_state(quiz))
                return quiz, self._credentials.issue("host", quiz.quiz_id)
        raise Unavailable("could not allocate a free quiz ID; try again")

    async def _user(self, identity_token: str) -> User | None:
        """The signed-in user of a request, None when it carries no identity token; NotSignedIn when the
        token is refused (checked before anything is written)."""
        try:
            return await self._identities.user(identity_token)
        except InvalidIdentity as exc:
            raise NotSignedIn(str(exc)) from None

    async def _owned(self, quiz_id: str, host_token: str, identity_token: str) -> tuple[QuizDefinition, User | None]:
        """An authored quiz its owner acts on, and the owner when signed in."""
        user = await self._user(identity_token)
        quiz_id = normalize_quiz_id(quiz_id)
        ownership = await self._repository.ownership(quiz_id)
        if ownership is None:
            raise QuizNotFound(f"no quiz has the ID {quiz_id!r} (a later session's join code is not its quiz's ID)")
        if not owns(ownership, user.user_id if user else None, self.is_host(quiz_id, host_token)):
            raise NotTheHost(
                "only the quiz's owner may do this: sign in as its author, or, for a quiz created without "
                "signing in, present the host credential issued at its creation"
            )
        return await self.quiz(quiz_id), user

    async def start_session(
        self, quiz_id: str, host_token: str, identity_token: str
    ) -> tuple[Session, QuizDefinition, str]:
        """Starts a new run of an authored quiz, in its lobby: its own join code, players and results.
        Returns the session, its copy of the quiz and its host credential."""
        quiz, user = await self._owned(quiz_id, host_token, identity_token)
        host = user.user_id if user else None
        for _ in range(5):
            copy = new_session(quiz, new_quiz_id(), self._clock.now_ms())
            if await self._repository.add_session(copy, quiz.quiz_id, host):
                await self._store.create(initial_state(copy))
                session = Session(copy.quiz_id, quiz.quiz_id, copy.title, copy.created_ms, Phase.LOBBY, host)
                return session, copy, self._credentials.issue("host", copy.quiz_id)
        raise Unavailable("could not allocate a free join code; try again")

    async def list_sessions(
        self, quiz_id: str, host_token: str, identity_token: str, limit: int, before_ms: int | None
    ) -> list[Session]:
        quiz, _ = await self._owned(quiz_id, host_token, identity_token)
        return await self._repository.sessions(quiz.quiz_id, limit, before_ms)

    async def check_quiz(self, title: str, questions: Sequence[Question], uploads: Mapping[str, bytes]) -> None:
        """Checks a quiz against the rules as create_quiz would, storing nothing."""
        await self._checked(title, questions, uploads)

    async def _checked(
        self, title: str, questions: Sequence[Question], uploads: Mapping[str, bytes]
    ) -> tuple[tuple[Question, ...], list[media.MediaFile]]:
        """The questions with their media named by media ID, and the uploads to store; InvalidQuiz when
        the rules refuse them."""
        try:
            named = media.uploads(uploads)
        except media.InvalidMedia as exc:
            raise InvalidQuiz(str(exc)) from None
        resolved = tuple(dataclasses.replace(q, media=q.media.resolved(named)) for q in questions)
        files = {f.media_id: f for f in named.values()}
        wanted = sorted({ref for q in resolved for ref in q.media.references() if ref not in files})
        stored = await self._repository.stored_media([ref for ref in wanted if media.is_media_id(ref)])
        validate_quiz(title, resolved, files, stored)
        return resolved, list(files.values())

    async def quiz(self, quiz_id: str) -> QuizDefinition:
        quiz = await self._repository.get(normalize_quiz_id(quiz_id))
        if quiz is None:
            raise QuizNotFound(f"no quiz has the ID {quiz_id!r}")
        return quiz

    async def media(self, media_id: str) -> media.MediaFile:
        found = await self._repository.media(media_id) if media.is_media_id(media_id) else None
        if found is None:
            raise MediaNotFound(f"no media has the ID {media_id[:80]!r}")
        return found

    def is_host(self, quiz_id: str, host_token: str) -> bool:
        try:
            self._credentials.verify(host_token, "host", normalize_quiz_id(quiz_id))
        except InvalidCredential:
            return False
        return True

    async def list_quizzes(self, limit: int, before_ms: int | None, identity_token: str = "") -> list[QuizDefinition]:
        """Authored quizzes, newest first: every one, or with an identity token those its user owns."""
        owner = await self._user(identity_token)
        return await self._repository.list(limit, before_ms, owner.user_id if owner else None)

    async def state(self, quiz_id: str) -> tuple[QuizDefinition, GameState]:
        quiz = await self.quiz(quiz_id)
        return quiz, await self._current(quiz)

    # --- players ---

    async def join(self, quiz_id: str, nickname: str, identity_token: str = "") -> tuple[PlayerRecord, str, GameState]:
        """Admits a player. With an identity token the player is its user, one player per user in a
        session: a user who joined before (from another device, say) gets that player back."""
        user = await self._user(identity_token)
        quiz, state = await self.state(quiz_id)
        may_join_as(quiz, user.user_id if user else None, self._identities.anonymous_allowed)
        if user is None:
            player_id = new_player_id()
            name = sanitize_nickname(nickname)
        else:
            player_id = user_player_id(self._player_secret, quiz.quiz_id, user.user_id)
            if await self._store.player(quiz.quiz_id, player_id) is not None:
                return await self._rejoin(quiz.quiz_id, player_id)
            name = sanitize_nickname(nickname or user.name)
        may_join(state, quiz)
        joined = await self._store.add_player(quiz.quiz_id, player_id, name)
        if joined is None:
            if user is not None and await self._store.player(quiz.quiz_id, player_id) is not None:
                return await self._rejoin(quiz.quiz_id, player_id)  # the same user, joining from two devices at once
            raise NicknameTaken(f"the nickname {name!r} is taken in this quiz; choose another")
        joined_ms = self._clock.now_ms()  # the join's time ranks the player at 0: one reading for both fields
        event = events.PlayerJoined(
            quiz.quiz_id, player_id, name, joined_ms, joined_ms - quiz.created_ms, user.user_id if user else ""
        )
        try:
            await self._events.publish([event], timeout_s=self._timeouts.publish_s)
        except EventBusUnavailable:
            await self._store.remove_player(quiz.quiz_id, player_id, kicked=False)
            raise Unavailable("the join could not be recorded in time; try again") from None
        record = await self._store.player(quiz.quiz_id, player_id)
        assert record is not None
        return record, self._credentials.issue("player", quiz.quiz_id, player_id), joined

    async def erase_players(self, players: Sequence[tuple[str, str]], replacement: str) -> int:
        """Renames the (session, player) pairs of a user whose data was deleted (persistence_svc's
        DeleteUserData, which has already anonymised the durable records): a session whose live state is
        gone has nothing left to rename, and its rebuild reads the anonymised records. Safe to repeat;
        returns how many players were renamed."""
        name = erased_nickname(replacement)
        erased = 0
        for quiz_id, player_id in players:
            erased += await self._store.erase_player(quiz_id, player_id, name)
        return erased

    async def _rejoin(self, quiz_id: str, player_id: str) -> tuple[PlayerRecord, str, GameState]:
        """A signed-in user's player, as resuming it gives it (a removed or departed one is refused)."""
        try:
            resumed = await self.resume(self._credentials.issue("player", quiz_id, player_id))
        except PlayerLeft:
            raise PlayerLeft("you left this session; a signed-in player has one seat per session") from None
        except PlayerRemoved:
            raise PlayerRemoved("the host removed you from this session") from None
        return resumed.player, resumed.player_token, resumed.state

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
            record = await self._store.player(quiz_id, player_id)
            if record is None or record.active or record.kicked != kicked:
                raise PlayerNotFound(f"no active player {player_id!r} in quiz {quiz_id}")
            # A repeat of a removal that took effect, whose reply or event was lost: its event is
            # published again (every sink applies a removal once).
        event = events.PlayerLeft(quiz_id, player_id, self._clock.now_ms(), kicked)
        try:
            await self._events.publish([event], timeout_s=self._timeouts.publish_s)
        except EventBusUnavailable:
            # The player is out of the live game either way; the leaderboard learns on the retry.
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
            try:
                if item.value is None:
                    raise InvalidAnswer("the answer is not one")
                value = question.accept(item.value)
            except InvalidAnswer as refused:
                outcomes[position] = AnswerRefusal.INVALID_CHOICE if refused.choice else AnswerRefusal.INVALID_ANSWER
                continue
            received = plausible_receipt(item.received_ms, now, self._timeouts.receipt_grace_ms)
            claim = AnswerClaim(
                quiz_id, item.question_index, player_id, value, received, now, now + self._timeouts.lease_ms
            )
            claims.append((position, claim, quiz, question))
        if not claims:
            return [o if o is not None else AnswerRefusal.UNAVAILABLE for o in outcomes]

        await self._register(c.quiz_id for _, c, _, _ in claims)
        claimed = await self._store.claim_answers([c for _, c, _, _ in claims], self._claimant())
        lost = [n for n, o in enumerate(claimed) if o == AnswerRefusal.QUIZ_NOT_FOUND]
        if lost:
            # Redis lost these quizzes' live state: rebuild it, then claim their answers again (only
            # theirs: the others are reserved already). Until a quiz can be rebuilt (persistence_svc
            # has yet to store what Kafka holds of it), its answers are refused as retryable.
            rebuilt = set()
            for quiz in {claims[n][2].quiz_id: claims[n][2] for n in lost}.values():
                try:
                    await self._current(quiz)
                except Unavailable as exc:
                    log.warning("answers to quiz %s wait for its rebuild: %s", quiz.quiz_id, exc)
                    continue
                rebuilt.add(quiz.quiz_id)
            for n in lost:
                claimed[n] = AnswerRefusal.UNAVAILABLE
            lost = [n for n in lost if claims[n][2].quiz_id in rebuilt]
            if lost:
                again = await self._store.claim_answers([claims[n][1] for n in lost], self._claimant())
                for n, outcome in zip(lost, again, strict=True):
                    claimed[n] = outcome
        fresh: list[tuple[int, AnswerKey, StoredAnswer, QuizDefinition]] = []
        to_publish: list[tuple[AnswerKey, StoredAnswer, QuizDefinition, EventHeaders]] = []
        positions: list[int] = []
        for (position, claim, quiz, _), outcome in zip(claims, claimed, strict=True):
            key = AnswerKey(claim.quiz_id, claim.question_index, claim.player_id)
            if isinstance(outcome, AnswerRefusal):
                outcomes[position] = outcome
            elif isinstance(outcome, Replay):
                to_publish.append((key, outcome.answer, quiz, inputs[position].event_headers))
                positions.append(position)
            else:
                fresh.append((position, key, self._judge(quiz, claim, outcome), quiz))
        if fresh:
            written = await self._store.record_verdicts([(k, a) for _, k, a, _ in fresh], self.instance_id)
            for (position, key, answer, quiz), done in zip(fresh, written, strict=True):
                if done:
                    to_publish.append((key, answer, quiz, inputs[position].event_headers))
                    positions.append(position)
                else:
                    # Another process took the reservation over meanwhile (this one was taken for dead):
                    # the retry gets that process's verdict. Or the store's replicas did not confirm the
                    # verdict, which it released: the recovery pass publishes it should no retry come.
                    outcomes[position] = AnswerRefusal.UNAVAILABLE
                    self._unsettled.add(key.quiz_id)
        if to_publish:
            accepted = await self._publish_answers(to_publish, now)
            for position, (key, answer, quiz, _) in zip(positions, to_publish, strict=True):
                if key in accepted:
                    event_id = answer_event_id(key.quiz_id, key.question_index, key.player_id)
                    outcomes[position] = AcceptedAnswer(answer, event_id, quiz.questions[key.question_index])
        return [o if o is not None else AnswerRefusal.UNAVAILABLE for o in outcomes]

    async def _publish_answers(
        self,
        answers: Sequence[tuple[AnswerKey, StoredAnswer, QuizDefinition, EventHeaders]],
        now: int,
    ) -> set[AnswerKey]:
        """Publishes judged answers reserved by this process; returns those that may be reported
        accepted: all once Kafka holds them, unless the store waits for replicas, and then those whose
        acknowledgement they confirmed (a promoted replica then knows they were answered).

        On failure the reservations are released (a retry takes them over at once) and their quizzes
        noted, for the recovery pass to publish them should no retry come; an acknowledgement not
        confirmed is noted too, for the pass to come back should a failover have lost it."""
        judged = [self._answer_event(key, answer, quiz, now) for key, answer, quiz, _ in answers]
        keys = [key for key, _, _, _ in answers]
        try:
            await self._events.publish(
                judged, timeout_s=self._timeouts.publish_s, headers=[headers for _, _, _, headers in answers]
            )
        except EventBusUnavailable as exc:
            log.warning("answers not acknowledged by the event bus: %s", exc)
            await self._store.release(keys, self.instance_id)
            self._unsettled.update(key.quiz_id for key in keys)
            return set()
        marked = self._acknowledgements.add(keys)
        if not self._store.waits_for_replicas:
            return set(keys)
        confirmed = await marked
        self._unsettled.update(key.quiz_id for key in keys if key not in confirmed)
        return confirmed

    @staticmethod
    def _judge(quiz: QuizDefinition, claim: AnswerClaim, fresh: Fresh) -> StoredAnswer:
        verdict = judge(quiz, claim.question_index, claim.value, fresh.received_ms - fresh.open_ms, fresh.standing)
        return StoredAnswer(
            value=claim.value,
            correct=verdict.correct,
            points=verdict.points,
            bonus=verdict.bonus,
            response_ms=verdict.response_ms,
            received_ms=fresh.received_ms,
            standing=verdict.standing,
            credit=verdict.credit,
            tally=verdict.tally,
        )

    @staticmethod
    def _answer_event(key: AnswerKey, answer: StoredAnswer, quiz: QuizDefinition, now_ms: int) -> events.AnswerJudged:
        question = quiz.questions[key.question_index]
        return events.AnswerJudged(
            event_id=answer_event_id(key.quiz_id, key.question_index, key.player_id),
            quiz_id=key.quiz_id,
            player_id=key.player_id,
            question_index=key.question_index,
            value=answer.value,
            answer_text=question.spec.readable(answer.value),
            credit=answer.credit,
            correct=answer.correct,
            points=answer.points,
            total_score=answer.standing.total,
            streak=answer.standing.streak,
            response_ms=answer.response_ms,
            received_ms=answer.received_ms,
            quiz_elapsed_ms=answer.received_ms - quiz.created_ms,
            time_ms=now_ms,
        )

    # --- hosts ---

    async def _hosted(self, quiz_id: str, host_token: str, identity_token: str = "") -> QuizDefinition:
        quiz = await self.quiz(quiz_id)
        if not await self.hosts(quiz.quiz_id, host_token, identity_token):
            raise NotTheHost(
                "only the quiz's host may do this; present the host credential issued at creation, or sign in "
                "as the user who started this session"
            )
        return quiz

    async def hosts(self, quiz_id: str, host_token: str, identity_token: str = "") -> bool:
        """Whether the request hosts this session: its host credential, or the identity token of the user
        who started it signed in (NotSignedIn when that token is refused)."""
        if host_token and self.is_host(quiz_id, host_token):
            return True
        user = await self._user(identity_token)
        if user is None:
            return False
        return await self._repository.session_host(normalize_quiz_id(quiz_id)) == user.user_id

    async def host_action(
        self,
        quiz_id: str,
        host_token: str,
        action: HostAction,
        question_index: int | None = None,
        identity_token: str = "",
    ) -> tuple[GameState, QuestionResults | None]:
        """Applies a host action, or, if it already took effect (a retry, see domain.host_action_done),
        answers with the current state, the effects of the transition that led there finished first."""
        quiz = await self._hosted(quiz_id, host_token, identity_token)
        await self._register([quiz.quiz_id])  # before the transition: it owes effects from its first step
        for _ in range(10):
            live = await self._live(quiz)
            if live.owes_effects:
                # The transition before this one comes first: its pushes, then this one's.
                await self._finish_effects(quiz, live)
            state = live.state
            if host_action_done(state, action, question_index):
                results = None
                if action == HostAction.CLOSE and question_index is not None:
                    results = await self._results(quiz, question_index)
                return state, results
            now = self._clock.now_ms()
            if action == HostAction.NEXT and state.phase == Phase.QUESTION_OPEN and is_past_close(state, now):
                # The deadline passed but the scheduler has not closed it yet: close it here first,
                # so its results are published before the next question opens.
                await self._close_if_due(quiz, now)
                continue
            new = apply_host_action(state, quiz, action, now, question_index)
            closed = closed_question(state, new)
            if await self._store.replace_state(state, new, closed):
                results = await self._finish_effects(quiz, LiveState(new, True, closed))
                return new, results
        raise Unavailable("the quiz changed concurrently too many times; try again")

    async def kick(self, quiz_id: str, host_token: str, player_id: str, identity_token: str = "") -> GameState:
        quiz = await self._hosted(quiz_id, host_token, identity_token)
        await self._remove(quiz.quiz_id, player_id, kicked=True)
        state = await self._current(quiz)
        await self._feed.publish(quiz, QuizUpdate(state, kicked_player_id=player_id))
        return state

    async def _current(self, quiz: QuizDefinition) -> GameState:
        return (await self._live(quiz)).state

    async def _live(self, quiz: QuizDefinition) -> LiveState:
        live = await self._store.live(quiz.quiz_id)
        if live is None:
            await self._restore(quiz)
            live = await self._store.live(quiz.quiz_id)
            if live is None:
                raise Unavailable(f"quiz {quiz.quiz_id}'s live state could not be rebuilt; try again")
        return live

    async def snapshot(self, quiz_id: str) -> tuple[QuizDefinition, GameState, QuestionResults | None]:
        """The quiz's state and, once its current question has closed, that question's results: what a
        watcher that may have missed the close needs."""
        quiz, state = await self.state(quiz_id)
        results = None
        if state.phase in (Phase.QUESTION_CLOSED, Phase.ENDED) and state.question_index >= 0:
            results = await self._results(quiz, state.question_index)
        return quiz, state, results

    async def _restore(self, quiz: QuizDefinition) -> GameState:
        """Rebuilds a quiz's live state after Redis lost it, from the durable records.

        The quiz database holds the last state the host moved the quiz to; PersistenceService holds its
        players and acknowledged answers (PostgreSQL is the source of truth, Redis a projection). The
        results are read once persistence_svc has stored every event Kafka holds of the quiz, however far
        its sink lagged at the loss: every accepted answer is then in the rebuilt standings (players'
        later totals hold its points) and marked acknowledged (a repeat of it is `already_answered`).
        """
        lock = self._restoring.setdefault(quiz.quiz_id, asyncio.Lock())
        async with lock:
            state = await self._store.state(quiz.quiz_id)
            if state is not None:
                return state
            saved = await self._repository.saved_state(quiz.quiz_id) or initial_state(quiz)
            try:
                stored = await self._durable_results.results(quiz)
            except Exception as exc:
                raise Unavailable(f"quiz {quiz.quiz_id}'s live state is being rebuilt; try again") from exc
            active = sum(1 for p in stored.players if p.active)
            version = rebuilt_version(saved, self._clock.now_ms())
            rebuilt = dataclasses.replace(saved, participant_count=active, version=version)
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

    async def _finish_effects(self, quiz: QuizDefinition, live: LiveState) -> QuestionResults | None:
        """Carries out what a transition owes, then clears its mark. Each effect may be repeated by
        another process finishing the same transition: deadlines and the durable copy are idempotent,
        and watchers drop a state whose version they have already seen.

        An opened question's deadline is set first, a closed one's removed only after the push: until
        then the deadline's entry leads any process's scheduler to the unfinished close."""
        await self._register([quiz.quiz_id])  # so that, should this process die here, its recovery finishes them
        state = live.state
        if state.phase == Phase.QUESTION_OPEN:
            await self._store.schedule_close(quiz.quiz_id, state.close_ms)
        results = await self._results(quiz, live.closed_question) if live.closed_question >= 0 else None
        await self._feed.publish(quiz, QuizUpdate(state, results))
        if state.phase != Phase.QUESTION_OPEN:
            await self._unschedule_close(quiz.quiz_id)
        try:
            await self._repository.save_state(state)
        except Exception:
            # The live state in Redis changed and the quiz goes on; the durable copy only serves a
            # rebuild after Redis loses its data. The mark stays, for the recovery pass to come back.
            log.warning("could not keep quiz %s's state durably; it stays live in Redis", quiz.quiz_id, exc_info=True)
            self._unsettled.add(quiz.quiz_id)
            return results
        await self._store.effects_done(quiz.quiz_id, state.version)
        return results

    async def _unschedule_close(self, quiz_id: str) -> None:
        """Removes a quiz's deadline, unless a question opened meanwhile (by another process finishing a
        newer transition, whose deadline this removal may just have taken away)."""
        await self._store.unschedule_close(quiz_id)
        state = await self._store.state(quiz_id)
        if state is not None and state.phase == Phase.QUESTION_OPEN:
            await self._store.schedule_close(quiz_id, state.close_ms)

    async def _results(self, quiz: QuizDefinition, index: int) -> QuestionResults:
        question = quiz.questions[index]
        tallies = await self._store.tallies(quiz.quiz_id, index)
        return QuestionResults(index, correct_choices(question), choice_counts(question, tallies), tallies)

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
        live = await self._store.live(quiz.quiz_id)
        if live is None:
            await self._store.unschedule_close(quiz.quiz_id)
            return False
        state = live.state
        if live.owes_effects:
            # The transition that set this deadline, or closed its question, left its effects unfinished;
            # finishing them sets or removes the deadline as the state says.
            await self._finish_effects(quiz, live)
        elif state.phase != Phase.QUESTION_OPEN:
            await self._unschedule_close(quiz.quiz_id)
        if state.phase != Phase.QUESTION_OPEN:
            return False
        if not is_past_close(state, now):
            await self._store.schedule_close(quiz.quiz_id, state.close_ms)  # an earlier deadline's entry
            return False
        new = close_question(state, now)
        await self._register([quiz.quiz_id])  # before the transition: it owes effects from its first step
        # Several processes race for the same deadline; the compare-and-set lets exactly one win.
        if not await self._store.replace_state(state, new, state.question_index):
            return False
        await self._finish_effects(quiz, LiveState(new, True, state.question_index))
        return True


__all__ = [
    "AcceptedAnswer",
    "AnswerInput",
    "AnswerOutcome",
    "JoinClosed",
    "MediaNotFound",
    "PlayerLeft",
    "PlayerNotFound",
    "QuizGame",
    "Resumption",
    "SystemClock",
    "Timeouts",
    "WrongPhase",
]
