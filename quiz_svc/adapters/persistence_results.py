"""Reads a quiz's stored players and answers back through PersistenceService, the source of truth: all of
them, once persistence_svc has stored every event Kafka holds of the quiz (its `caught_up` listings)."""

from __future__ import annotations

import functools

import grpc

from quiz_svc.domain import PlayerStanding, QuizDefinition, streak_bonus, tally
from quiz_svc.kinds import InvalidAnswer, parse_credit
from quiz_svc.messages import value_from_pb
from quiz_svc.ports import AnswerKey, PlayerRecord, StoredAnswer, StoredResults
from quizmesh.grpc_retry import CHANNEL_OPTIONS as RETRY_OPTIONS
from quizmesh.persistence.v1 import persistence_service_pb2 as pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc
from quizmesh.results import read_stored_quiz

_PAGE = 10_000
_DEADLINE_S = 10.0


class PersistenceResults:
    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=RETRY_OPTIONS)
        self._stub = pb_grpc.PersistenceServiceStub(self._channel)

    async def results(self, quiz: QuizDefinition) -> StoredResults:
        stored = await read_stored_quiz(
            quiz.quiz_id,
            functools.partial(self._stub.ListParticipants, timeout=_DEADLINE_S),
            functools.partial(self._stub.ListAnswers, timeout=_DEADLINE_S),
            page_size=_PAGE,
            caught_up=True,
        )
        return stored_results(quiz, stored.participants, stored.answers)

    async def close(self) -> None:
        await self._channel.close()


def stored_results(
    quiz: QuizDefinition, participants: list[pb.Participant], stored: list[pb.StoredAnswer]
) -> StoredResults:
    answers: list[tuple[AnswerKey, StoredAnswer]] = []
    latest: dict[str, StoredAnswer] = {}
    for a in sorted(stored, key=lambda a: a.question_index):
        # Each stored answer carries the standing it produced, so the newest one is the player's standing.
        last_correct = a.question_index if a.streak > 0 else -1
        # Stored once accepted, so it fits its question; one stored before kinds holds only its choice.
        try:
            value = quiz.questions[a.question_index].accept(value_from_pb(a.value, a.choice))
        except InvalidAnswer as exc:
            raise ValueError(f"stored answer {a.event_id} does not fit its question: {exc}") from None
        answer = StoredAnswer(
            value=value,
            credit=parse_credit(a.credit or ("1" if a.correct else "0")),
            tally=tally(quiz.questions[a.question_index], value),
            correct=a.correct,
            points=a.points,
            bonus=streak_bonus(a.streak) if a.correct and a.points > 0 else 0,
            response_ms=a.response_time_ms,
            received_ms=a.answer_time.ToMilliseconds(),
            standing=PlayerStanding(a.total_score, a.streak, last_correct),
        )
        answers.append((AnswerKey(a.quiz_id, a.question_index, a.player_id), answer))
        latest[a.player_id] = answer
    players = []
    for p in participants:
        newest = latest.get(p.player_id)
        standing = newest.standing if newest is not None else PlayerStanding(0, 0, -1)
        active = not p.HasField("leave_time")
        players.append(PlayerRecord(p.player_id, p.nickname, standing, active, p.kicked))
    return StoredResults(players, answers)
