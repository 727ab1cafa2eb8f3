"""Two quiz_svc processes sharing one game store, one of them dying at a precise step: nothing it
accepted or changed is left half done, and the other (or the player's or host's retry) finishes it.

A process "dies" at a step by stalling there forever (the store, publisher or feed it was given holds
that one call) and having its call cancelled; it then stops renewing its heartbeat, as a killed process
does. In-memory engines and a clock the test controls; tests/faults does the same with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from quiz_svc import domain
from quiz_svc.adapters.game_events import BusGameEvents
from quiz_svc.adapters.memory_game import InMemoryGameStore
from quiz_svc.adapters.memory_instances import InMemoryInstanceRegistry
from quiz_svc.adapters.sqlite_repo import SqliteQuizRepository
from quiz_svc.adapters.update_feed import ChannelUpdateFeed
from quiz_svc.domain import AnswerRefusal, HostAction, Phase, base_points
from quiz_svc.kinds import ChoiceAnswer
from quiz_svc.ports import AnswerKey, GameStore, UpdateFeed
from quiz_svc.service import AcceptedAnswer, AnswerInput, QuizGame, Timeouts
from quizmesh.auth import Credentials
from quizmesh.eventbus import EventPublisher
from quizmesh.eventbus.memory import InMemoryBus
from quizmesh.events.v1 import events_pb2
from quizmesh.pubsub import InMemoryChannels
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from tests.quiz_svc.conftest import FakeClock
from tests.quiz_svc.test_service import KEY, QUESTIONS, ResultsFromBus, SwitchablePublisher

TIMEOUTS = Timeouts()
PAST_TTL_MS = TIMEOUTS.liveness_ttl_ms + 1  # another process is no longer alive
PAST_RECOVERY_DELAY_MS = PAST_TTL_MS + TIMEOUTS.recovery_delay_ms  # and its recovery begins


class Stalling:
    """Forwards every call to `inner` except `method`, which never returns: its caller is stuck at that
    step until the test cancels it, as if its process had been killed there."""

    def __init__(self, inner: object, method: str) -> None:
        self._inner = inner
        self._method = method
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        if name == self._method:
            return self._stall
        return getattr(self._inner, name)

    async def _stall(self, *args: object, **kwargs: object) -> None:
        self.reached.set()
        await asyncio.Event().wait()


@dataclass
class Replicas:
    clock: FakeClock
    bus: InMemoryBus
    store: InMemoryGameStore
    channels: InMemoryChannels
    build: Callable[..., QuizGame]
    pushes: list[pb.WatchQuizResponse] = field(default_factory=list)

    def answers_on_bus(self) -> list[events_pb2.AnswerSubmitted]:
        return [
            events_pb2.AnswerSubmitted.FromString(r.value)
            for partition in range(8)
            for r in self.bus.read("answer_submitted", partition, 0, 10_000)
        ]

    @contextlib.asynccontextmanager
    async def watching(self, quiz_id: str) -> AsyncIterator[list[pb.WatchQuizResponse]]:
        """Every state pushed for the quiz while inside, as a watcher receives them."""
        feed = ChannelUpdateFeed(self.channels, self.clock)
        pushed: list[pb.WatchQuizResponse] = []

        async def collect() -> None:
            async with feed.watch(quiz_id) as updates:
                subscribed.set()
                async for payload in updates:
                    pushed.append(pb.WatchQuizResponse.FromString(payload))

        subscribed = asyncio.Event()
        task = asyncio.create_task(collect())
        await subscribed.wait()
        try:
            yield pushed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    clock, bus, store, channels = FakeClock(), InMemoryBus(), InMemoryGameStore(), InMemoryChannels()
    repo = await SqliteQuizRepository.open(":memory:")
    await repo.ensure_schema()
    registry = InMemoryInstanceRegistry()

    def build(
        name: str,
        *,
        store_view: object = store,
        publisher: object | None = None,
        feed: object | None = None,
    ) -> QuizGame:
        return QuizGame(
            repo,
            cast(GameStore, store_view),
            BusGameEvents(cast(EventPublisher, publisher or SwitchablePublisher(bus))),
            cast(UpdateFeed, feed or ChannelUpdateFeed(channels, clock)),
            Credentials(KEY),
            clock,
            ResultsFromBus(bus),
            registry,
            TIMEOUTS,
            instance_id=name,
        )

    yield Replicas(clock, bus, store, channels, build)
    await repo.close()


async def alive(replicas: Replicas, **a_parts: object) -> tuple[QuizGame, QuizGame]:
    """Processes A (built from a_parts: its store, publisher or feed) and B, both with a heartbeat."""
    a, b = replicas.build("a", **a_parts), replicas.build("b")
    await a.heartbeat()
    await b.heartbeat()
    return a, b


async def dies_at(stalling: Stalling, call: Awaitable[object]) -> None:
    """Runs `call` until it reaches the stalled step, then kills it there."""
    task = asyncio.ensure_future(call)
    stalled = asyncio.create_task(stalling.reached.wait())
    await asyncio.wait([task, stalled], return_when=asyncio.FIRST_COMPLETED)
    assert stalling.reached.is_set(), f"the call finished without reaching the stalled step: {task.result()}"
    task.cancel()
    stalled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def quiz_with_players(game: QuizGame, players: int) -> tuple[str, str, list[str]]:
    quiz, host = await game.create_quiz("Quiz", QUESTIONS, True)
    tokens = [(await game.join(quiz.quiz_id, f"p{i}"))[1] for i in range(players)]
    await game.host_action(quiz.quiz_id, host, HostAction.START)
    return quiz.quiz_id, host, tokens


async def test_an_answer_its_process_died_holding_unjudged_is_judged_on_the_retry_from_its_first_receipt(
    replicas: Replicas,
) -> None:
    stuck = Stalling(replicas.store, "record_verdicts")
    a, b = await alive(replicas, store_view=stuck)
    _, _, [token] = await quiz_with_players(b, 1)
    opened = replicas.clock.now
    replicas.clock.advance(1_000)
    stamped = opened + 900  # the edge received it 100 ms before it reached A
    await dies_at(stuck, a.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1), received_ms=stamped)]))

    # Until A's heartbeat expires, B cannot tell it from a slow A: the retry is told to retry.
    [early] = await b.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1), received_ms=stamped)])
    assert early == AnswerRefusal.UNAVAILABLE
    replicas.clock.advance(PAST_TTL_MS)
    # A is dead: its answers are free to the players' retries at once, its recovery comes later.
    assert await b.heartbeat() == ()
    [retry] = await b.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1), received_ms=stamped)])
    assert isinstance(retry, AcceptedAnswer)
    # Scored from the first receipt, 900 ms after the opening: the outage cost nothing.
    assert (retry.answer.response_ms, retry.answer.points) == (900, base_points(QUESTIONS[0], 900))
    [event] = replicas.answers_on_bus()
    assert (event.points, event.total_score) == (retry.answer.points, retry.answer.points)


async def test_a_judged_answer_its_process_died_before_publishing_is_published_by_the_recovery(
    replicas: Replicas,
) -> None:
    stuck = Stalling(SwitchablePublisher(replicas.bus), "publish")
    a, b = await alive(replicas, publisher=stuck)
    quiz_id, host, tokens = await quiz_with_players(b, 2)
    replicas.clock.advance(2_000)
    await dies_at(stuck, a.submit_answers([AnswerInput(tokens[0], 0, ChoiceAnswer(1))]))
    [other] = await b.submit_answers([AnswerInput(tokens[1], 0, ChoiceAnswer(1))])
    assert isinstance(other, AcceptedAnswer)
    await b.drain()  # its acknowledged mark, written in the background
    assert len(replicas.answers_on_bus()) == 1  # A's judged answer is in the standing, not in Kafka

    replicas.clock.advance(PAST_RECOVERY_DELAY_MS)
    await b.recover_dead(await b.heartbeat())
    events = replicas.answers_on_bus()
    # Both players answered 2 s after the opening: 900 points each, A's as A judged it.
    assert sorted(e.points for e in events) == [900, 900] and len({e.player_id for e in events}) == 2
    # The player's retry now finds the answer durable.
    [retry] = await b.submit_answers([AnswerInput(tokens[0], 0, ChoiceAnswer(1))])
    assert retry == AnswerRefusal.ALREADY_ANSWERED
    # Their next answer's total counts exactly what Kafka holds.
    await b.host_action(quiz_id, host, HostAction.CLOSE, 0)
    await b.host_action(quiz_id, host, HostAction.NEXT, 1)
    [second] = await b.submit_answers([AnswerInput(tokens[0], 1, ChoiceAnswer(0))])
    assert isinstance(second, AcceptedAnswer)
    player_id = (await b.resume(tokens[0])).player.player_id
    events = [e for e in replicas.answers_on_bus() if e.player_id == player_id]
    assert second.answer.standing.total == sum(e.points for e in events) == max(e.total_score for e in events)


async def test_a_next_question_its_process_died_in_is_finished_by_the_hosts_retry(replicas: Replicas) -> None:
    stuck = Stalling(replicas.store, "schedule_close")
    a, b = await alive(replicas, store_view=stuck)
    quiz_id, host, _ = await quiz_with_players(b, 1)
    await b.host_action(quiz_id, host, HostAction.CLOSE, 0)
    async with replicas.watching(quiz_id) as pushed:
        await dies_at(stuck, a.host_action(quiz_id, host, HostAction.NEXT, 1))
        live = await replicas.store.live(quiz_id)
        assert live is not None and (live.state.question_index, live.owes_effects) == (1, True)
        assert pushed == []  # switched, but nobody was told and no deadline is set

        # Without the question it means, a repeat cannot be told from a second click: refused.
        with pytest.raises(domain.WrongPhase):
            await b.host_action(quiz_id, host, HostAction.NEXT)
        state, _ = await b.host_action(quiz_id, host, HostAction.NEXT, 1)
        assert (state.phase, state.question_index) == (Phase.QUESTION_OPEN, 1)
        await asyncio.sleep(0)
        assert [(p.state.phase, p.state.question_index) for p in pushed] == [(pb.QUIZ_PHASE_QUESTION_OPEN, 1)]
    assert quiz_id in await replicas.store.due_closes(state.close_ms, 10)
    live = await replicas.store.live(quiz_id)
    assert live is not None and not live.owes_effects
    replicas.clock.advance(QUESTIONS[1].time_limit_ms + 1)
    assert await b.close_due_questions() == 1


async def test_a_close_its_process_died_in_reaches_every_watcher_through_the_recovery(replicas: Replicas) -> None:
    stuck = Stalling(ChannelUpdateFeed(replicas.channels, replicas.clock), "publish")
    a, b = await alive(replicas, feed=stuck)
    quiz_id, host, tokens = await quiz_with_players(b, 2)
    await b.submit_answers([AnswerInput(tokens[0], 0, ChoiceAnswer(1)), AnswerInput(tokens[1], 0, ChoiceAnswer(0))])
    async with replicas.watching(quiz_id) as pushed:
        await dies_at(stuck, a.host_action(quiz_id, host, HostAction.CLOSE, 0))
        assert pushed == []
        replicas.clock.advance(PAST_RECOVERY_DELAY_MS)
        await b.recover_dead(await b.heartbeat())
        await asyncio.sleep(0)
        [closed] = pushed
    assert closed.state.phase == pb.QUIZ_PHASE_QUESTION_CLOSED
    assert (list(closed.results.correct_choices), list(closed.results.choice_counts)) == ([1], [1, 1])
    # The host's retry of the close answers with the results, changing nothing.
    state, results = await b.host_action(quiz_id, host, HostAction.CLOSE, 0)
    assert state.phase == Phase.QUESTION_CLOSED and results is not None and results.choice_counts == (1, 1)


async def test_a_deadline_its_process_died_at_is_finished_by_another_processes_scheduler(
    replicas: Replicas,
) -> None:
    stuck = Stalling(ChannelUpdateFeed(replicas.channels, replicas.clock), "publish")
    a, b = await alive(replicas, feed=stuck)
    quiz_id, _, _ = await quiz_with_players(b, 1)
    replicas.clock.advance(QUESTIONS[0].time_limit_ms + 1)
    async with replicas.watching(quiz_id) as pushed:
        await dies_at(stuck, a.close_due_questions())
        # B's scheduler meets the owed close at the deadline's entry, without waiting for A's heartbeat.
        assert await b.close_due_questions() == 0
        await asyncio.sleep(0)
        assert [(p.state.phase, p.HasField("results")) for p in pushed] == [(pb.QUIZ_PHASE_QUESTION_CLOSED, True)]
    assert await replicas.store.due_closes(replicas.clock.now, 10) == []


async def test_a_retiring_process_leaves_its_unpublished_answers_to_the_others_at_once(
    replicas: Replicas,
) -> None:
    down = SwitchablePublisher(replicas.bus)
    a, b = await alive(replicas, publisher=down)
    _, _, [token] = await quiz_with_players(b, 1)
    down.down = True
    [refused] = await a.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    assert refused == AnswerRefusal.UNAVAILABLE
    await a.retire()  # shutting down with a judged answer Kafka never took
    dead = await b.heartbeat()
    assert dead == ("a",)
    await b.recover_dead(dead)
    [event] = replicas.answers_on_bus()
    assert event.points == 1000
    assert await replicas.store.answer(AnswerKey(event.quiz_id, 0, event.player_id)) is not None


async def test_repeated_host_actions_that_took_effect_succeed_without_changing_anything(
    replicas: Replicas,
) -> None:
    b = replicas.build("b")
    await b.heartbeat()
    quiz_id, host, [token] = await quiz_with_players(b, 1)
    again, _ = await b.host_action(quiz_id, host, HostAction.START)
    assert (again.phase, again.question_index) == (Phase.QUESTION_OPEN, 0)
    await b.submit_answers([AnswerInput(token, 0, ChoiceAnswer(1))])
    closed, first = await b.host_action(quiz_id, host, HostAction.CLOSE, 0)
    repeat, second = await b.host_action(quiz_id, host, HostAction.CLOSE, 0)
    assert repeat == closed and first == second and first is not None and first.choice_counts == (0, 1)
    opened, _ = await b.host_action(quiz_id, host, HostAction.NEXT, 1)
    assert (await b.host_action(quiz_id, host, HostAction.NEXT, 1))[0] == opened
    with pytest.raises(domain.WrongPhase, match="cannot open next"):
        await b.host_action(quiz_id, host, HostAction.NEXT, 3)
    ended, _ = await b.host_action(quiz_id, host, HostAction.END)
    assert (await b.host_action(quiz_id, host, HostAction.END))[0] == ended
