"""Scores and ranks recomputed from what PostgreSQL holds, with the formulas the README and
docs/protocol.md document.

Deliberately independent of the services' code: it reads the stored answers and the quiz as authored,
judges each answer by its kind as the docs say (its credit, whether it is correct), and applies
`round(points × credit × (1 − (response_time / time_limit) / 2))` plus the streak bonus itself.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from quizmesh.persistence.v1 import persistence_service_pb2 as ps_pb
from quizmesh.quiz.v1 import quiz_service_pb2 as pb

POINTS = {
    pb.POINTS_MODE_UNSPECIFIED: 1000,
    pb.POINTS_MODE_STANDARD: 1000,
    pb.POINTS_MODE_DOUBLE: 2000,
    pb.POINTS_MODE_NONE: 0,
}


def documented_points(points: int, response_ms: int, limit_ms: int, credit: Fraction = Fraction(1)) -> int:
    rt = min(max(response_ms, 0), limit_ms)
    exact = points * float(credit) * (1 - (rt / limit_ms) / 2)
    # Round halves up, on exact fractions to avoid binary floating point at .5.
    value = points * credit * Fraction(2 * limit_ms - rt, 2 * limit_ms)
    whole, rest = divmod(value.numerator, value.denominator)
    rounded = whole + (1 if 2 * rest >= value.denominator else 0)
    assert abs(rounded - exact) <= 0.5 + 1e-9
    return rounded


def _normal(text: str, accents: bool) -> str:
    """docs/protocol.md, type_answer: NFKC, case folded, accents dropped if asked, punctuation removed,
    whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if accents:
        text = unicodedata.normalize(
            "NFC", "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
        )
    text = "".join(c for c in text if unicodedata.category(c)[0] != "P")
    return " ".join(text.split())


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def _typed_matches(typed: str, accepted: str, q: pb.Question) -> bool:
    t, a = _normal(typed, q.accent_insensitive), _normal(accepted, q.accent_insensitive)
    if t == a:
        return True
    tw, aw = t.split(" "), a.split(" ")
    return bool(
        q.typo_tolerant
        and t
        and len(tw) == len(aw)
        and all(x == y or (len(y) >= 5 and _levenshtein(x, y) <= 1) for x, y in zip(tw, aw, strict=True))
    )


def documented_judgement(
    q: pb.Question, value: ps_pb.StoredAnswer, shown_items: Sequence[str]
) -> tuple[Fraction, bool]:
    """(credit, correct) of an answer by its question's kind, as docs/protocol.md defines them."""
    answer = value.value
    which = answer.WhichOneof("value")
    kind = q.kind or pb.QUESTION_KIND_SINGLE_CHOICE
    if kind == pb.QUESTION_KIND_SINGLE_CHOICE:
        choice = answer.choice if which == "choice" else value.choice
        right = choice in q.correct_choices
        return Fraction(int(right)), right
    if kind == pb.QUESTION_KIND_MULTIPLE_SELECT:
        chosen, correct = set(answer.choices.choices), set(q.correct_choices)
        return Fraction(max(0, len(chosen & correct) - len(chosen - correct)), len(correct)), chosen == correct
    if kind == pb.QUESTION_KIND_TRUE_FALSE:
        right = answer.truth == (list(q.correct_choices) == [0])
        return Fraction(int(right)), right
    if kind == pb.QUESTION_KIND_TYPE_ANSWER:
        right = any(_typed_matches(answer.text, a, q) for a in q.accepted_answers)
        return Fraction(int(right)), right
    if kind == pb.QUESTION_KIND_ORDERING:
        placed = [list(q.items).index(shown_items[p]) for p in answer.order.positions]
        pairs = [(i, j) for i in range(len(placed)) for j in range(i + 1, len(placed))]
        credit = Fraction(sum(placed[i] < placed[j] for i, j in pairs), len(pairs))
        return credit, credit == 1
    if kind == pb.QUESTION_KIND_ESTIMATE:
        distance = abs(Fraction(Decimal(answer.number)) - Fraction(Decimal(q.estimate.answer)))
        tolerance = Fraction(Decimal(q.estimate.tolerance or "0"))
        if distance > tolerance:
            return Fraction(0), False
        return (Fraction(1) if distance == 0 else 1 - distance / (2 * tolerance)), True
    return Fraction(0), False  # a poll


def _scoring_points(question: pb.Question) -> int:
    """A question's points, 0 for a poll: only questions with points score and count for streaks."""
    return 0 if question.kind == pb.QUESTION_KIND_POLL else POINTS[question.points_mode]


@dataclass(frozen=True)
class Standing:
    player_id: str
    score: int
    reached_ms: int  # ms since the quiz's creation when the score was reached


def recompute(
    quiz: pb.Quiz,
    participants: list[ps_pb.Participant],
    answers: list[ps_pb.StoredAnswer],
    shown_items: Mapping[int, Sequence[str]] | None = None,
) -> tuple[dict[str, int], list[Standing]]:
    """Each answer's points by the documented formulas, and the final ranking. `shown_items` are the
    ordering questions' items as players saw them (PlayerQuestion.items), by question index.

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
            base = _scoring_points(question)
            credit, correct = documented_judgement(question, answer, (shown_items or {}).get(index, ()))
            assert correct == answer.correct, f"stored correctness of {answer.event_id} is wrong"
            assert answer.credit in ("", str(credit)), f"stored credit of {answer.event_id} is {answer.credit}"
            # A scoring question missed (answered wrong or not at all) since the last correct answer
            # ended the streak; polls and no-points questions do not count.
            if any(_scoring_points(quiz.questions[i]) for i in range(last_correct + 1, index)):
                streak = 0
            limit_ms = question.time_limit_seconds * 1000
            if base == 0:
                earned = 0
            elif not correct:
                earned, streak = documented_points(base, answer.response_time_ms, limit_ms, credit), 0
            else:
                streak += 1
                last_correct = index
                earned = documented_points(base, answer.response_time_ms, limit_ms, credit)
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
