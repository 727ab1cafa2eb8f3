"""The live copies of players' names, renamed over gRPC: quiz_svc's game state and leaderboard_svc's
rankings (their `ErasePlayers`, which only persistence_svc may call, deploy/istio/mesh).

Channels connect lazily, so persistence_svc starts and serves without either service; a deletion
meanwhile fails with LiveCopyUnavailable and is repeated by its caller. Every call has a deadline.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from persistence_svc.domain import UserSession
from persistence_svc.ports import LiveCopyUnavailable
from quizmesh.grpc_retry import CHANNEL_OPTIONS
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as leaderboard_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc

TIMEOUT_S = 10.0


class _GrpcCopies:
    """One service's ErasePlayers behind the LiveCopies port; subclasses build its request."""

    service = ""

    def __init__(self, address: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._timeout_s = timeout_s

    async def erase(self, players: Sequence[UserSession], nickname: str) -> None:
        try:
            await self._erase(players, nickname, self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise LiveCopyUnavailable(
                f"{self.service} could not rename the players ({exc.code().name}: {exc.details()})"
            ) from exc

    async def _erase(self, players: Sequence[UserSession], nickname: str, timeout_s: float) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self._channel.close()


class QuizServiceCopies(_GrpcCopies):
    """quiz_svc's game state: each session's players, under their nicknames."""

    service = "quiz_svc"

    async def _erase(self, players: Sequence[UserSession], nickname: str, timeout_s: float) -> None:
        await quiz_grpc.QuizServiceStub(self._channel).ErasePlayers(
            quiz_pb.ErasePlayersRequest(
                players=[quiz_pb.ErasedPlayer(quiz_id=p.quiz_id, player_id=p.player_id) for p in players],
                replacement_nickname=nickname,
            ),
            timeout=timeout_s,
        )


class LeaderboardServiceCopies(_GrpcCopies):
    """leaderboard_svc's rankings: each session's players, under their nicknames."""

    service = "leaderboard_svc"

    async def _erase(self, players: Sequence[UserSession], nickname: str, timeout_s: float) -> None:
        await leaderboard_grpc.LeaderboardServiceStub(self._channel).ErasePlayers(
            leaderboard_pb.ErasePlayersRequest(
                players=[leaderboard_pb.ErasedPlayer(quiz_id=p.quiz_id, player_id=p.player_id) for p in players],
                replacement_nickname=nickname,
            ),
            timeout=timeout_s,
        )
