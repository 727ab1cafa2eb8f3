from __future__ import annotations

import random

from leaderboard_svc.domain import (
    MAX_REACHED_MS,
    REACHED_SLOTS,
    AnswerScored,
    Coalescer,
    PlayerJoined,
    Standing,
    after_answer,
    after_join,
    composite,
    rank,
    score_of,
)
from quiz_svc.domain import MAX_QUESTIONS, STREAK_CAP, PointsMode


def _ids(standings: list[Standing]) -> list[str]:
    return [s.player_id for s in standings]


def test_higher_score_ranks_first() -> None:
    ranking = rank([Standing("a", "", 10, 0), Standing("b", "", 30, 500), Standing("c", "", 20, 100)])
    assert _ids(ranking) == ["b", "c", "a"]


def test_equal_scores_rank_who_reached_first_higher() -> None:
    ranking = rank([Standing("early", "", 50, 1_000), Standing("late", "", 50, 2_000)])
    assert _ids(ranking) == ["early", "late"]


def test_a_score_reached_four_milliseconds_earlier_ranks_higher() -> None:
    # Issue 14: a player who reached 1,984 at 312 ms was ranked below one who reached it at 316 ms.
    opened = 61_000
    ranking = rank([Standing("b", "", 1_984, opened + 316), Standing("a", "", 1_984, opened + 312)])
    assert _ids(ranking) == ["a", "b"]


def test_same_millisecond_falls_back_to_player_id_descending() -> None:
    ranking = rank([Standing("a", "", 50, 1_001), Standing("b", "", 50, 1_001), Standing("c", "", 50, 1_001)])
    assert _ids(ranking) == ["c", "b", "a"]


def test_composite_orders_like_score_then_reached() -> None:
    randomness = random.Random(7)
    standings = [
        Standing(f"p{i}", "", randomness.randrange(0, 5) * 100, randomness.randrange(0, 600_000)) for i in range(500)
    ]
    by_tuple = sorted(standings, key=lambda s: (-s.score, s.reached_ms, [-ord(c) for c in s.player_id]))
    assert _ids(rank(standings)) == _ids(by_tuple)


def test_composite_keeps_the_score_and_stays_exact_as_a_double() -> None:
    # The most a quiz can score: 500 questions, double points, the full streak bonus on each.
    most = MAX_QUESTIONS * (PointsMode.DOUBLE + STREAK_CAP)
    largest = composite(most, 0)
    assert largest < 2**53
    assert int(float(largest)) == largest
    assert int(float(largest - 1)) == largest - 1
    assert score_of(largest) == most
    assert score_of(composite(7, 123_456)) == 7


def test_reached_time_beyond_the_window_is_clamped_not_wrapped() -> None:
    assert MAX_REACHED_MS >= 49 * 24 * 3_600_000  # seven weeks from the quiz's creation
    assert composite(1, MAX_REACHED_MS + 500) == 1 * REACHED_SLOTS
    assert composite(1, 10**12) < composite(2, 10**12)
    assert composite(1, -5) == composite(1, 0)


def _answer(question: int, total: int, elapsed_ms: int) -> AnswerScored:
    return AnswerScored("q", "p", question, total, elapsed_ms, 1_700_000_000_000 + elapsed_ms)


def test_answer_sets_the_absolute_total_and_when_it_was_reached() -> None:
    joined = after_join(None, PlayerJoined("q", "p", "Ann", 100), has_left=False)
    assert joined == Standing("p", "Ann", 0, 100)
    answered = after_answer(joined, _answer(0, 800, 5_000), has_left=False)
    assert answered == Standing("p", "Ann", 800, 5_000, 0)


def test_zero_point_answer_keeps_when_the_score_was_reached() -> None:
    standing = Standing("p", "Ann", 800, 5_000, 0)
    assert after_answer(standing, _answer(1, 800, 9_000), has_left=False) == Standing("p", "Ann", 800, 5_000, 1)


def test_redelivered_or_older_answer_changes_nothing() -> None:
    standing = Standing("p", "Ann", 1_500, 9_000, 1)
    assert after_answer(standing, _answer(1, 1_500, 9_000), has_left=False) is None
    assert after_answer(standing, _answer(0, 800, 5_000), has_left=False) is None


def test_answer_before_join_ranks_the_player_and_the_join_names_them() -> None:
    answered = after_answer(None, _answer(0, 800, 5_000), has_left=False)
    assert answered == Standing("p", "", 800, 5_000, 0)
    assert after_join(answered, PlayerJoined("q", "p", "Ann", 100), has_left=False) == Standing(
        "p", "Ann", 800, 5_000, 0
    )


def test_a_join_applied_after_a_zero_point_answer_dates_the_zero_to_the_join() -> None:
    answered = after_answer(None, _answer(0, 0, 5_000), has_left=False)
    assert after_join(answered, PlayerJoined("q", "p", "Ann", 100), has_left=False) == Standing("p", "Ann", 0, 100, 0)


def test_player_who_left_is_never_brought_back() -> None:
    assert after_join(None, PlayerJoined("q", "p", "Ann", 100), has_left=True) is None
    assert after_answer(None, _answer(3, 900, 1_000), has_left=True) is None


def test_repeated_join_changes_nothing() -> None:
    standing = Standing("p", "Ann", 0, 100)
    assert after_join(standing, PlayerJoined("q", "p", "Ann", 100), has_left=False) is None


class TestCoalescer:
    def test_first_change_is_due_at_once(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        assert coalescer.take_due(now_ms=1_000) == ["q1"]

    def test_nothing_is_due_without_a_change(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        coalescer.take_due(now_ms=1_000)
        assert coalescer.take_due(now_ms=5_000) == []

    def test_changes_within_an_interval_are_published_once_at_its_end(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        assert coalescer.take_due(now_ms=1_000) == ["q1"]
        for now in range(1_050, 1_500, 50):
            coalescer.mark(["q1"])
            assert coalescer.take_due(now_ms=now) == []
        assert coalescer.take_due(now_ms=1_500) == ["q1"]
        assert coalescer.take_due(now_ms=2_100) == []

    def test_a_change_during_a_publication_is_not_lost(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        assert coalescer.take_due(now_ms=1_000) == ["q1"]
        coalescer.mark(["q1"])  # applied after the ranking was read for the publication above
        assert coalescer.take_due(now_ms=1_500) == ["q1"]

    def test_failed_publication_is_retried_after_the_interval(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        coalescer.failed(coalescer.take_due(now_ms=1_000))
        assert coalescer.take_due(now_ms=1_100) == []
        assert coalescer.take_due(now_ms=1_500) == ["q1"]

    def test_quizzes_are_coalesced_independently(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        coalescer.take_due(now_ms=1_000)
        coalescer.mark(["q1", "q2"])
        assert coalescer.take_due(now_ms=1_200) == ["q2"]
        assert coalescer.take_due(now_ms=1_500) == ["q1"]

    def test_idle_quizzes_are_forgotten(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark([f"q{i}" for i in range(100)])
        coalescer.take_due(now_ms=1_000)
        coalescer.take_due(now_ms=1_500)
        assert coalescer._taken_at == {}

    def test_take_all_flushes_regardless_of_the_interval(self) -> None:
        coalescer = Coalescer(interval_ms=500)
        coalescer.mark(["q1"])
        coalescer.take_due(now_ms=1_000)
        coalescer.mark(["q1"])
        assert coalescer.take_all() == ["q1"]
        assert coalescer.take_due(now_ms=9_000) == []
