"""quiz_svc's use cases over in-memory engines, with a clock the test controls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from quiz_svc import domain
from quiz_svc.adapters.game_events import BusGameEvents
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.persistence_results import stored_results
from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.domain import AnswerRefusal, HostAction, Phase, PointsMode, Question, QuizDefinition
from quiz_svc.kinds import ChoiceAnswer, SingleChoice
from quiz_svc.ports import AnswerKey, StoredResults
from quiz_svc.service import AcceptedAnswer, AnswerInput, PlayerLeft, PlayerNotFound, QuizGame
from quizmesh.auth import Credentials
from quizmesh.eventbus import EventBusUnavailable, Record
from quizmesh.eventbus.memory import InMemoryBus, InMemoryPublisher
from quizmesh.events.v1 import events_pb2
from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.pubsub import InMemoryChannels
from tests.quiz_svc.conftest import FakeClock

KEY = b"k" * 32
QUESTIONS = [
    Question("2+2?", SingleChoice(("3", "4"), frozenset({1})), 10, PointsMode.STANDARD),
    Question("Capital of France?", SingleChoice(("Paris", "Rome", "Oslo"), frozenset({0})), 20, PointsMode.DOUBLE),
]


class SwitchablePublisher:
    """Publishes to an in-memory bus, or fails like an unreachable Kafka when told to."""

    def __init__(self, bus: InMemoryBus) -> None:
        self._inner = InMemoryPublisher(bus)
        self.down = False

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        if self.down:
            raise EventBusUnavailable("broker down")
        await self._inner.publish(records, timeout_s=timeout_s)

    async def close(self) -> None:
        return None


class ResultsFromBus:
    """Stands in for PersistenceService: what it would have stored from the events on the bus."""

    def __init__(self, bus: InMemoryBus) -> None:
        self._bus = bus

    def _events(self, topic: str) -> list[bytes]:
        return [r.value for p in range(8) for r in self._bus.read(topic, p, 0, 100_000)]

    async def results(self, quiz: QuizDefinition) -> StoredResults:
        quiz_id = quiz.quiz_id
        joins = [events_pb2.UserJoinedQuiz.FromString(v) for v in self._events("user_joined_quiz")]
        lefts = {
            e.player_id: e
            for e in (events_pb2.UserLeftQuiz.FromString(v) for v in self._events("user_left_quiz"))
            if e.quiz_id == quiz_id
        }
        answers = [events_pb2.AnswerSubmitted.FromString(v) for v in self._events("answer_submitted")]
        participants = [
            ps_pb.Participant(
                quiz_id=j.quiz_id,
                player_id=j.player_id,
                nickname=j.nickname,
                join_time=j.event_time,
                kicked=lefts[j.player_id].kicked if j.player_id in lefts else False,
                leave_time=lefts[j.player_id].event_time if j.player_id in lefts else None,
            )
            for j in joins
            if j.quiz_id == quiz_id
        ]
        stored = [
            ps_pb.StoredAnswer(
                quiz_id=a.quiz_id,
                question_index=a.question_index,
                player_id=a.player_id,
                choice=a.choice,
                value=a.value,
                answer_text=a.answer_text,
                credit=a.credit,
                correct=a.correct,
                points=a.points,
                response_time_ms=a.response_time_ms,
                answer_time=a.answer_time,
                event_id=a.event_id,
                total_score=a.total_score,
                streak=a.streak,
            )
            for a in answers
            if a.quiz_id == quiz_id
        ]
        return stored_results(quiz, participants, stored)

    async def close(self) -> None:
        return None


class Harness:
    def __init__(self, game: QuizGame, clock: FakeClock, bus: InMemoryBus, publisher: SwitchablePublisher):
        self.game, self.clock, self.bus, self.publisher = game, clock, bus, publisher
        self.rebuilt: Callable[[], QuizGame] = lambda: game

    def answers_on_bus(self) -> list[events_pb2.AnswerSubmitted]:
        found = []
        for partition in range(8):
            for record in self.bus.read("answer_submitted", partition, 0, 10_000):
                found.append(events_pb2.AnswerSubmitted.FromString(record.value))
        return found


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock()
    bus = InMemoryBus()
    publisher = SwitchablePublisher(bus)
    repo = await SqliteQuizRepository.open(":memory:")
    await repo.ensure_schema()
    feed = ChannelUpdateFeed(InMemoryChannels(), clock)
    results = ResultsFromBus(bus)
    instances = InMemoryInstanceRegistry()
    game = QuizGame(
        repo, InMemoryGameStore(), BusGameEvents(publisher), feed, Credentials(KEY), clock, results, instances
    )
    harness = Harness(game, clock, bus, publisher)
    harness.rebuilt = lambda: QuizGame(
        repo, InMemoryGameStore(), BusGameEvents(publisher), feed, Credentials(KEY), clock, results, instances
    )
    yield harness
    await repo.close()


async def started_quiz(h: Harness, players: int = 1) -> tuple[str, str, list[str]]:
    quiz, host = await h.game.create_quiz("Quiz", QUESTIONS, True)
    tokens = [(await h.game.join(quiz.quiz_id, f"p{i}"))[1] for i in range(players)]
    await h.game.host_action(quiz.quiz_id, host, HostAction.START)
    return quiz.quiz_id, host, tokens


async def test_an_answer_is_scored_on_server_time_and_published(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    harness.clock.advance(2_000)
    [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert isinstance(outcome, AcceptedAnswer)
    assert (outcome.answer.correct, outcome.answer.points, outcome.answer.standing.total) == (True, 900, 900)
    [event] = harness.answers_on_bus()
    assert (event.points, event.total_score, event.event_id) == (900, 900, outcome.event_id)


async def test_an_answer_after_close_is_rejected_whatever_the_client_says(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    harness.clock.advance(10_001)
    [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert outcome == AnswerRefusal.QUESTION_CLOSED
    assert harness.answers_on_bus() == []


async def test_one_hundred_concurrent_duplicates_are_accepted_once(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    outcomes = await asyncio.gather(
        *(harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))]) for _ in range(100))
    )
    flat = [o[0] for o in outcomes]
    assert sum(isinstance(o, AcceptedAnswer) for o in flat) == 1
    # While the first is in progress it may still fail: the others are told to retry; once Kafka holds
    # it (and its mark landed), they are refused as already answered.
    refusals = {o for o in flat if not isinstance(o, AcceptedAnswer)}
    assert refusals <= {AnswerRefusal.UNAVAILABLE, AnswerRefusal.ALREADY_ANSWERED}
    await harness.game.drain()
    [retry] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert retry == AnswerRefusal.ALREADY_ANSWERED
    assert len(harness.answers_on_bus()) == 1


async def test_a_forged_or_foreign_credential_is_refused(harness: Harness) -> None:
    quiz_id, _, _ = await started_quiz(harness)
    forged = Credentials(b"x" * 32).issue("player", quiz_id, "someone")
    host_as_player = Credentials(KEY).issue("host", quiz_id)
    outcomes = await harness.game.submit_answers(
        [
            AnswerInput(forged, 0, ChoiceAnswer(1)),
            AnswerInput(host_as_player, 0, ChoiceAnswer(1)),
            AnswerInput("", 0, ChoiceAnswer(1)),
        ]
    )
    assert outcomes == [AnswerRefusal.UNAUTHENTICATED] * 3
    assert harness.answers_on_bus() == []


async def test_bad_question_and_choice_are_refused(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    outcomes = await harness.game.submit_answers(
        [
            AnswerInput(token, 9, ChoiceAnswer(0)),
            AnswerInput(token, 0, ChoiceAnswer(2)),
            AnswerInput(token, 1, ChoiceAnswer(0)),
        ]
    )
    assert outcomes == [
        AnswerRefusal.QUESTION_NOT_FOUND,
        AnswerRefusal.INVALID_CHOICE,
        AnswerRefusal.QUESTION_NOT_OPEN,
    ]


async def test_when_kafka_is_down_the_answer_is_unavailable_then_the_retry_publishes_the_same_event(
    harness: Harness,
) -> None:
    _, _, [token] = await started_quiz(harness)
    harness.clock.advance(1_000)
    harness.publisher.down = True
    [first] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert first == AnswerRefusal.UNAVAILABLE
    harness.publisher.down = False
    harness.clock.advance(30_000)  # past the close: the answer was received in time, so it still counts
    [retry] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert isinstance(retry, AcceptedAnswer)
    assert (retry.answer.value, retry.answer.points) == (ChoiceAnswer(1), 950)
    [event] = harness.answers_on_bus()
    assert event.points == 950
    [again] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert again == AnswerRefusal.ALREADY_ANSWERED


async def test_only_the_host_runs_the_quiz(harness: Harness) -> None:
    quiz, host = await harness.game.create_quiz("Quiz", QUESTIONS, True)
    _, player_token, _ = await harness.game.join(quiz.quiz_id, "p")
    other_host = (await harness.game.create_quiz("Other", QUESTIONS, True))[1]
    for token in (player_token, other_host, "", "not-a-token"):
        with pytest.raises(domain.NotTheHost):
            await harness.game.host_action(quiz.quiz_id, token, HostAction.START)
    _, state = await harness.game.state(quiz.quiz_id)
    assert state.phase == Phase.LOBBY
    state, _ = await harness.game.host_action(quiz.quiz_id, host, HostAction.START)
    assert state.phase == Phase.QUESTION_OPEN


async def test_the_scheduler_closes_due_questions_and_publishes_results(harness: Harness) -> None:
    quiz_id, _, tokens = await started_quiz(harness, players=3)
    await harness.game.submit_answers(
        [AnswerInput(tokens[0], 0, ChoiceAnswer(1)), AnswerInput(tokens[1], 0, ChoiceAnswer(0))]
    )
    assert await harness.game.close_due_questions() == 0
    harness.clock.advance(10_001)
    assert await harness.game.close_due_questions() == 1
    _, state = await harness.game.state(quiz_id)
    assert state.phase == Phase.QUESTION_CLOSED
    assert await harness.game.close_due_questions() == 0


async def test_late_join_is_configurable(harness: Harness) -> None:
    strict, host = await harness.game.create_quiz("Strict", QUESTIONS, False)
    await harness.game.host_action(strict.quiz_id, host, HostAction.START)
    with pytest.raises(domain.JoinClosed):
        await harness.game.join(strict.quiz_id, "late")
    quiz_id, _, _ = await started_quiz(harness)
    player, _, _ = await harness.game.join(quiz_id, "late")
    assert player.standing.total == 0


async def test_resume_restores_score_question_and_answered_state(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    resumed = await harness.game.resume(token)
    assert resumed.player.standing.total == 1000
    assert resumed.state.phase == Phase.QUESTION_OPEN and resumed.state.question_index == 0
    assert resumed.current_answer is not None and resumed.current_answer.points == 1000


async def test_a_kick_whose_event_kafka_refused_is_published_by_the_hosts_retry(harness: Harness) -> None:
    quiz_id, host, [token] = await started_quiz(harness)
    player_id = (await harness.game.resume(token)).player.player_id
    harness.publisher.down = True
    with pytest.raises(domain.Unavailable):
        await harness.game.kick(quiz_id, host, player_id)
    harness.publisher.down = False
    state = await harness.game.kick(quiz_id, host, player_id)  # the kick took effect; its event did not
    assert state.participant_count == 0
    left = [
        events_pb2.UserLeftQuiz.FromString(r.value)
        for p in range(8)
        for r in harness.bus.read("user_left_quiz", p, 0, 100)
    ]
    assert [(e.player_id, e.kicked) for e in left] == [(player_id, True)]
    with pytest.raises(PlayerNotFound):  # a removal it never was stays an error
        await harness.game.kick(quiz_id, host, "nobody")


async def test_a_player_who_left_cannot_resume_and_is_told_they_left(harness: Harness) -> None:
    _, _, [token] = await started_quiz(harness)
    await harness.game.leave(token)
    with pytest.raises(PlayerLeft, match="you left this quiz"):
        await harness.game.resume(token)
    [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert outcome == AnswerRefusal.NOT_A_PARTICIPANT


async def test_a_quiz_that_ended_refuses_joins_as_the_wrong_phase(harness: Harness) -> None:
    quiz_id, host, _ = await started_quiz(harness)
    await harness.game.host_action(quiz_id, host, HostAction.END)
    with pytest.raises(domain.WrongPhase, match="ended"):
        await harness.game.join(quiz_id, "late")


async def test_a_kicked_player_cannot_resume_or_answer(harness: Harness) -> None:
    quiz_id, host, [token] = await started_quiz(harness)
    player_id = (await harness.game.resume(token)).player.player_id
    await harness.game.kick(quiz_id, host, player_id)
    with pytest.raises(domain.PlayerRemoved, match="the host removed you") as refused:
        await harness.game.resume(token)
    assert not isinstance(refused.value, PlayerLeft)
    [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert outcome == AnswerRefusal.NOT_A_PARTICIPANT


async def test_a_quiz_whose_live_state_was_lost_is_rebuilt_from_durable_records(harness: Harness) -> None:
    quiz_id, host, tokens = await started_quiz(harness, players=3)
    harness.clock.advance(1_000)
    await harness.game.submit_answers(
        [AnswerInput(tokens[0], 0, ChoiceAnswer(1)), AnswerInput(tokens[1], 0, ChoiceAnswer(0))]
    )
    kicked = (await harness.game.resume(tokens[2])).player.player_id
    await harness.game.kick(quiz_id, host, kicked)
    before = await harness.game.resume(tokens[0])

    after_loss = harness.rebuilt()  # same databases and bus, but an empty game store: Redis lost its data
    resumed = await after_loss.resume(tokens[0])
    assert resumed.player.standing == before.player.standing
    assert resumed.state.phase == Phase.QUESTION_OPEN and resumed.state.question_index == 0
    assert resumed.state.participant_count == 2
    assert resumed.current_answer is not None and resumed.current_answer.points == before.player.standing.total
    [again] = await after_loss.submit_answers([AnswerInput(tokens[0], 0, ChoiceAnswer(1))])
    assert again == AnswerRefusal.ALREADY_ANSWERED
    with pytest.raises(domain.PlayerRemoved):
        await after_loss.resume(tokens[2])
    _, results = await after_loss.host_action(quiz_id, host, HostAction.CLOSE)
    assert results is not None and results.choice_counts == (1, 1)


class GatedAcknowledgements(InMemoryGameStore):
    """An in-memory store whose acknowledged marks wait for the test's go-ahead, or fail when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.failing = False
        self.calls: list[list[AnswerKey]] = []

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> set[AnswerKey]:
        self.calls.append(list(keys))
        await self.gate.wait()
        if self.failing:
            raise ConnectionError("store unreachable")
        return await super().acknowledge(keys)


@contextlib.asynccontextmanager
async def harness_on(store: GatedAcknowledgements) -> AsyncIterator[Harness]:
    clock, bus = FakeClock(), InMemoryBus()
    publisher = SwitchablePublisher(bus)
    repo = await SqliteQuizRepository.open(":memory:")
    await repo.ensure_schema()
    feed = ChannelUpdateFeed(InMemoryChannels(), clock)
    game = QuizGame(
        repo,
        store,
        BusGameEvents(publisher),
        feed,
        Credentials(KEY),
        clock,
        ResultsFromBus(bus),
        InMemoryInstanceRegistry(),
    )
    yield Harness(game, clock, bus, publisher)
    store.gate.set()
    await game.drain()
    await repo.close()


@pytest.fixture
async def gated() -> AsyncIterator[tuple[Harness, GatedAcknowledgements]]:
    store = GatedAcknowledgements()
    async with harness_on(store) as harness:
        yield harness, store


async def test_the_reply_does_not_wait_for_the_acknowledged_mark_and_the_reservation_covers_the_gap(
    gated: tuple[Harness, GatedAcknowledgements],
) -> None:
    harness, store = gated
    _, _, [token] = await started_quiz(harness)
    [accepted] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert isinstance(accepted, AcceptedAnswer)  # replied although no mark can be written yet
    await asyncio.sleep(0)
    assert len(store.calls) == 1  # the mark is being written, held at the gate
    [duplicate] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert duplicate == AnswerRefusal.UNAVAILABLE  # reserved, not judged twice; its retry meets the mark
    store.gate.set()
    await harness.game.drain()
    harness.clock.advance(6_000)  # past the lease: only the mark refuses the duplicate now
    [late_duplicate] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert late_duplicate == AnswerRefusal.ALREADY_ANSWERED
    assert len(harness.answers_on_bus()) == 1


async def test_a_lost_acknowledged_mark_only_replays_the_same_event(
    gated: tuple[Harness, GatedAcknowledgements],
) -> None:
    harness, store = gated
    _, _, [token] = await started_quiz(harness)
    store.failing = True
    store.gate.set()
    [accepted] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    await harness.game.drain()
    assert isinstance(accepted, AcceptedAnswer)
    harness.clock.advance(6_000)
    [replayed] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert isinstance(replayed, AcceptedAnswer)
    assert (replayed.event_id, replayed.answer) == (accepted.event_id, accepted.answer)
    assert {e.event_id for e in harness.answers_on_bus()} == {accepted.event_id}


class ReplicatedStore(GatedAcknowledgements):
    """A store that waits for replicas (as Redis with WAIT does): its acknowledged marks are confirmed,
    written but unconfirmed (a slow replica), or lost with a failed-over primary, as the test says."""

    waits_for_replicas = True

    def __init__(self) -> None:
        super().__init__()
        self.confirming = True
        self.losing_marks = False
        self.called = asyncio.Event()

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> set[AnswerKey]:
        self.calls.append(list(keys))
        self.called.set()
        await self.gate.wait()
        if self.losing_marks:
            return set()
        marked = await InMemoryGameStore.acknowledge(self, keys)
        return marked if self.confirming else set()


@pytest.fixture
async def replicated() -> AsyncIterator[tuple[Harness, ReplicatedStore]]:
    store = ReplicatedStore()
    async with harness_on(store) as harness:
        yield harness, store


async def test_with_replicas_the_reply_waits_until_they_confirm_the_acknowledged_mark(
    replicated: tuple[Harness, ReplicatedStore],
) -> None:
    harness, store = replicated
    _, _, [token] = await started_quiz(harness)
    answering = asyncio.create_task(harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))]))
    await asyncio.wait_for(store.called.wait(), 5)
    assert not answering.done()  # Kafka holds it, but a failover could still forget the mark
    store.gate.set()
    [accepted] = await answering
    assert isinstance(accepted, AcceptedAnswer)
    harness.clock.advance(6_000)
    [repeat] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert repeat == AnswerRefusal.ALREADY_ANSWERED


async def test_with_replicas_an_unconfirmed_mark_is_never_reported_accepted_twice(
    replicated: tuple[Harness, ReplicatedStore],
) -> None:
    """The mark reached the primary but no replica in time: the player is told to retry, and the retry
    finds the answer acknowledged; no answer_result was given, so none is given twice."""
    harness, store = replicated
    _, _, [token] = await started_quiz(harness)
    store.gate.set()
    store.confirming = False
    [unconfirmed] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert unconfirmed == AnswerRefusal.UNAVAILABLE
    store.confirming = True
    [retry] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert retry == AnswerRefusal.ALREADY_ANSWERED
    assert len(harness.answers_on_bus()) == 1


async def test_with_replicas_a_mark_lost_in_a_failover_is_published_again_by_the_recovery_pass(
    replicated: tuple[Harness, ReplicatedStore],
) -> None:
    """The primary died with the mark: the answer, judged and in Kafka, is reported accepted only once,
    by whichever comes first after its lease: the player's retry, or (here) the recovery pass."""
    harness, store = replicated
    _, _, [token] = await started_quiz(harness)
    store.gate.set()
    store.losing_marks = True
    [lost] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert lost == AnswerRefusal.UNAVAILABLE
    store.losing_marks = False
    harness.clock.advance(6_000)  # past the lease
    await harness.game.settle_unfinished()
    [retry] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(0))])
    assert retry == AnswerRefusal.ALREADY_ANSWERED
    events = harness.answers_on_bus()
    assert len({e.event_id for e in events}) == 1 and {e.choice for e in events} == {1}


async def test_marks_of_batches_published_during_a_store_call_share_the_next_call(
    gated: tuple[Harness, GatedAcknowledgements],
) -> None:
    harness, store = gated
    _, _, tokens = await started_quiz(harness, players=3)
    for token in tokens:
        [outcome] = await harness.game.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
        assert isinstance(outcome, AcceptedAnswer)
    store.gate.set()
    await harness.game.drain()
    assert [len(keys) for keys in store.calls] == [1, 2]
