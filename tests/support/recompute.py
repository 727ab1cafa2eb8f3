"""Scores and ranks recomputed from what PostgreSQL holds, with the formula the README documents.

Deliberately independent of the services' code: it reads the stored answers and the quiz as authored,
and applies `round(points × (1 − (response_time / time_limit) / 2))` plus the streak bonus itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.quiz.v1 import quiz_service_pb2 as pb

POINTS = {
    pb.POINTS_MODE_UNSPECIFIED: 1000,
    pb.POINTS_MODE_STANDARD: 1000,
    pb.POINTS_MODE_DOUBLE: 2000,
    pb.POINTS_MODE_NONE: 0,
}


def documented_points(points: int, response_ms: int, limit_ms: int) -> int:
    rt = min(max(response_ms, 0), limit_ms)
    exact = points * (1 - (rt / limit_ms) / 2)
    # Round halves up, on exact integers to avoid binary floating point at .5.
    numerator, denominator = points * (2 * limit_ms - rt), 2 * limit_ms
    whole, rest = divmod(numerator, denominator)
    rounded = whole + (1 if 2 * rest >= denominator else 0)
    assert abs(rounded - exact) <= 0.5 + 1e-9
    return rounded


@dataclass(frozen=True)
class Standing:
    player_id: str
    score: int
    reached_ms: int  # ms since the quiz's creation when the score was reached


def recompute(
    quiz: pb.Quiz, participants: list[ps_pb.Participant], answers: list[ps_pb.StoredAnswer]
) -> tuple[dict[str, int], list[Standing]]:
    """Each answer's points by the documented formula, and the final ranking.

    Returns ({event_id: points}, ranking). Ranking: score descending, then who reached the score first,
    then player ID descending (the leaderboard's last tiebreak).
    """
    created_ms = quiz.create_time.ToMilliseconds()
    by_player: dict[str, dict[int, ps_pb.StoredAnswer]] = defaultdict(dict)
    for answer in answers:
        by_player[answer.player_id][answer.question_index] = answer
    points_of: dict[str, int] = {}
    standings: dict[str, Standing] = {
        p.player_id: Standing(p.player_id, 0, p.join_time.ToMilliseconds() - created_ms) for p in participants
    }
    for player_id, answered in by_player.items():
        score, streak, last_correct = 0, 0, -1
        reached = standings[player_id].reached_ms if player_id in standings else 0
        for index in sorted(answered):
            answer, question = answered[index], quiz.questions[index]
            base = POINTS[question.points_mode]
            correct = answer.choice in question.correct_choices
            assert correct == answer.correct, f"stored correctness of {answer.event_id} is wrong"
            # A scoring question missed (answered wrong or not at all) since the last correct answer
            # ended the streak; no-points questions do not count.
            if any(POINTS[quiz.questions[i].points_mode] for i in range(last_correct + 1, index)):
                streak = 0
            if base == 0:
                earned = 0
            elif not correct:
                earned, streak = 0, 0
            else:
                streak += 1
                last_correct = index
                earned = documented_points(base, answer.response_time_ms, question.time_limit_seconds * 1000)
                earned += min(100 * (streak - 1), 500)
            assert answer.streak == streak, f"stored streak of {answer.event_id} is {answer.streak}, not {streak}"
            points_of[answer.event_id] = earned
            if earned > 0:
                score += earned
                reached = answer.answer_time.ToMilliseconds() - created_ms
        standings[player_id] = Standing(player_id, score, reached)
    ranking = sorted(standings.values(), key=lambda s: s.player_id, reverse=True)
    ranking.sort(key=lambda s: (-s.score, s.reached_ms))
    return points_of, ranking
