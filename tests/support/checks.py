"""Cross-checks of what the system stored: PostgreSQL (via PersistenceService) against Redis (via
LeaderboardService), recomputed with the documented scoring."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import grpc

from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc
from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as ps_grpc
from quizmesh.results import StoredQuiz, read_stored_quiz


async def _stored(persistence_addr: str, quiz_id: str) -> StoredQuiz:
    async with grpc.aio.insecure_channel(persistence_addr) as channel:
        stub = ps_grpc.PersistenceServiceStub(channel)
        return await read_stored_quiz(
            quiz_id,
            lambda request: stub.ListParticipants(request, timeout=10),
            lambda request: stub.ListAnswers(request, timeout=10),
        )


async def stored_answers(persistence_addr: str, quiz_id: str) -> list[ps_pb.StoredAnswer]:
    return list((await _stored(persistence_addr, quiz_id)).answers)


async def wait_for_stored_answers(
    persistence_addr: str, quiz_id: str, expected: int, timeout_s: float = 30
) -> list[ps_pb.StoredAnswer]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        answers = await stored_answers(persistence_addr, quiz_id)
        if len(answers) >= expected or asyncio.get_running_loop().time() > deadline:
            return answers
        await asyncio.sleep(0.2)


def recomputed_scores(answers: list[ps_pb.StoredAnswer]) -> dict[str, int]:
    """Each player's score from stored answers: the sum of the points of their answers."""
    scores: dict[str, int] = defaultdict(int)
    for answer in answers:
        scores[answer.player_id] += answer.points
    return dict(scores)


async def leaderboard_scores(leaderboard_addr: str, quiz_id: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(leaderboard_addr) as channel:
        reply = await lb_grpc.LeaderboardServiceStub(channel).GetLeaderboard(
            lb_pb.GetLeaderboardRequest(quiz_id=quiz_id, top_n=1000), timeout=10
        )
    return {e.player_id: e.score for e in reply.top_entries}


async def stored_participants(persistence_addr: str, quiz_id: str) -> list[ps_pb.Participant]:
    return list((await _stored(persistence_addr, quiz_id)).participants)


async def leaderboard_ranking(leaderboard_addr: str, quiz_id: str) -> list[lb_pb.LeaderboardEntry]:
    async with grpc.aio.insecure_channel(leaderboard_addr) as channel:
        reply = await lb_grpc.LeaderboardServiceStub(channel).GetLeaderboard(
            lb_pb.GetLeaderboardRequest(quiz_id=quiz_id, top_n=1000), timeout=10
        )
    return list(reply.top_entries)
