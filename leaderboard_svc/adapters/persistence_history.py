"""The ranking history as persistence_svc stored it, read through PersistenceService over gRPC.

persistence_svc owns the tables (and decides whether its replica may serve a read); a change to its
schema cannot break a rebuild, which sees only the contract. Every call has a deadline. The listings are
`caught_up`: persistence_svc serves them once it has stored every event Kafka holds of the quiz, so a
rebuild holds everything the ranking ever applied, however far the sink lagged at the loss.
"""

from __future__ import annotations

import functools

import grpc

from leaderboard_svc.domain import AnswerScored, PlayerJoined, PlayerLeft, RankingEvent
from leaderboard_svc.ports import HistoryUnavailable
from quizmesh.grpc_retry import CHANNEL_OPTIONS
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc
from quizmesh.results import read_stored_quiz


class PersistenceRankingHistory:
    """Connects lazily (gRPC channels do), so a leaderboard_svc whose PersistenceService is down still
    serves and projects; a rebuild meanwhile fails with HistoryUnavailable and is retried."""

    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.PersistenceServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def events(self, quiz_id: str) -> list[RankingEvent]:
        try:
            stored = await read_stored_quiz(
                quiz_id,
                functools.partial(self._stub.ListParticipants, timeout=self._timeout_s),
                functools.partial(self._stub.ListAnswers, timeout=self._timeout_s),
                caught_up=True,
            )
        except grpc.aio.AioRpcError as exc:
            raise HistoryUnavailable(f"PersistenceService: {exc.code().name}: {exc.details()}") from exc
        events: list[RankingEvent] = [
            PlayerJoined(quiz_id, p.player_id, p.nickname, p.quiz_elapsed_ms) for p in stored.participants
        ]
        events.extend(
            AnswerScored(
                quiz_id, a.player_id, a.question_index, a.total_score, a.quiz_elapsed_ms, a.answer_time.ToMilliseconds()
            )
            for a in sorted(stored.answers, key=lambda a: (a.question_index, a.player_id))
        )
        events.extend(PlayerLeft(quiz_id, p.player_id) for p in stored.participants if p.HasField("leave_time"))
        return events

    async def close(self) -> None:
        await self._channel.close()
