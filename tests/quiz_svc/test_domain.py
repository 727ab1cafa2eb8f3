from __future__ import annotations

import uuid

import pytest

from quiz_svc import domain
from quiz_svc.domain import (
    AnswerRefusal,
    HostAction,
    Phase,
    PlayerStanding,
    PointsMode,
    Question,
    QuizDefinition,
    apply_host_action,
    base_points,
    initial_state,
    judge,
    streak_now,
)
from quiz_svc.kinds import ChoiceAnswer, SingleChoice

Q = Question("2+2?", SingleChoice(("3", "4", "5"), frozenset({1})), 10, PointsMode.STANDARD)
QUIZ = QuizDefinition("ABCDEFGH", "t", (Q, Q, Q), True, 0)


@pytest.mark.parametrize(
    ("response_ms", "expected"),
    [(0, 1000), (10_000, 500), (5_000, 750), (1, 1000), (2_500, 875), (99_999, 500), (-5, 1000)],
)
def test_a_correct_answer_earns_between_half_and_all_points(response_ms: int, expected: int) -> None:
    assert base_points(Q, response_ms) == expected


def test_points_round_halves_up() -> None:
    # 1000 * (1 - (3/10)/2) = 850 exactly; 1000 * (1 - (0.01/10)/2) = 999.5 -> 1000
    assert base_points(Q, 3_000) == 850
    assert base_points(Q, 10) == 1000
    assert base_points(Q, 30) == 999  # 998.5 rounds half up to 999


def test_double_points_double_the_base() -> None:
    double = Question("q", SingleChoice(("a", "b"), frozenset({0})), 10, PointsMode.DOUBLE)
    assert base_points(double, 10_000) == 1000


FREE = Question("poll", SingleChoice(("a", "b"), frozenset({0})), 10, PointsMode.NONE)


def quiz_of(*questions: Question) -> QuizDefinition:
    return QuizDefinition("ABCDEFGH", "t", questions, True, 0)


def test_streak_bonus_grows_by_100_after_the_first_and_caps_at_500() -> None:
    quiz = quiz_of(*[Q] * 8)
    standing = PlayerStanding(0, 0, -1)
    bonuses = []
    for index in range(8):
        verdict = judge(quiz, index, ChoiceAnswer(1), 0, standing)
        bonuses.append(verdict.bonus)
        standing = verdict.standing
    assert bonuses == [0, 100, 200, 300, 400, 500, 500, 500]
    assert standing.total == 8 * 1000 + sum(bonuses)


def test_a_wrong_answer_earns_nothing_and_breaks_the_streak() -> None:
    verdict = judge(quiz_of(*[Q] * 4), 3, ChoiceAnswer(0), 0, PlayerStanding(5000, 4, 2))
    assert (verdict.correct, verdict.points, verdict.standing) == (False, 0, PlayerStanding(5000, 0, -1))


def test_an_unanswered_scoring_question_ends_the_streak() -> None:
    verdict = judge(quiz_of(*[Q] * 6), 5, ChoiceAnswer(1), 0, PlayerStanding(5000, 4, 3))
    assert verdict.standing.streak == 1
    assert verdict.bonus == 0


def test_a_no_points_question_neither_scores_nor_breaks_the_streak() -> None:
    quiz = quiz_of(Q, Q, Q, FREE, Q)
    verdict = judge(quiz, 3, ChoiceAnswer(1), 0, PlayerStanding(5000, 2, 2))
    assert verdict.points == 0
    assert verdict.standing == PlayerStanding(5000, 2, 3)
    after = judge(quiz, 4, ChoiceAnswer(1), 0, verdict.standing)
    assert after.standing.streak == 3


def test_an_unanswered_no_points_question_leaves_the_streak() -> None:
    quiz = quiz_of(Q, FREE, FREE, Q)
    first = judge(quiz, 0, ChoiceAnswer(1), 0, PlayerStanding(0, 0, -1))
    after = judge(quiz, 3, ChoiceAnswer(1), 0, first.standing)  # the two polls between were not answered
    assert (after.standing.streak, after.bonus) == (2, 100)


def test_a_no_points_answer_after_a_missed_question_reports_the_ended_streak() -> None:
    # Issue 14: a player who missed the previous question and then answered a no-points question got
    # streak 1 in that answer_result, the value from before the miss.
    quiz = quiz_of(Q, Q, FREE, Q)
    first = judge(quiz, 0, ChoiceAnswer(1), 0, PlayerStanding(0, 0, -1))
    assert first.standing.streak == 1
    poll = judge(quiz, 2, ChoiceAnswer(0), 0, first.standing)  # question 1 was not answered
    assert (poll.points, poll.standing) == (0, PlayerStanding(1000, 0, -1))
    assert judge(quiz, 3, ChoiceAnswer(1), 0, poll.standing).standing.streak == 1


def test_the_streak_as_it_stands_counts_closed_questions_only() -> None:
    quiz = quiz_of(Q, Q, FREE, Q)
    standing = judge(quiz, 0, ChoiceAnswer(1), 0, PlayerStanding(0, 0, -1)).standing
    state = initial_state(quiz)
    opened = apply_host_action(state, quiz, HostAction.START, 0)
    assert streak_now(quiz, opened, standing) == 1  # question 0, answered
    closed = apply_host_action(opened, quiz, HostAction.CLOSE, 1)
    second = apply_host_action(closed, quiz, HostAction.NEXT, 2)
    assert streak_now(quiz, second, standing) == 1  # question 1 is still open
    assert streak_now(quiz, apply_host_action(second, quiz, HostAction.CLOSE, 3), standing) == 0
    assert streak_now(quiz, apply_host_action(second, quiz, HostAction.END, 3), standing) == 0
    assert streak_now(quiz, state, PlayerStanding(0, 0, -1)) == 0


@pytest.mark.parametrize(
    ("question", "message"),
    [
        (Question("", SingleChoice(("a", "b"), frozenset({0})), 10, PointsMode.STANDARD), "text must not be empty"),
        (Question("q", SingleChoice(("a",), frozenset({0})), 10, PointsMode.STANDARD), "2 to 6 choices"),
        (Question("q", SingleChoice(tuple("abcdefg"), frozenset({0})), 10, PointsMode.STANDARD), "2 to 6 choices"),
        (Question("q", SingleChoice(("a", "b"), frozenset()), 10, PointsMode.STANDARD), "at least one correct"),
        (Question("q", SingleChoice(("a", "b"), frozenset({2})), 10, PointsMode.STANDARD), "outside 0..1"),
        (Question("q", SingleChoice(("a", "b"), frozenset({0})), 4, PointsMode.STANDARD), "5 to 120 s"),
        (Question("q", SingleChoice(("a", "b"), frozenset({0})), 121, PointsMode.STANDARD), "5 to 120 s"),
    ],
)
def test_invalid_questions_are_refused_with_the_reason(question: Question, message: str) -> None:
    with pytest.raises(domain.InvalidQuiz, match=message):
        domain.validate_quiz("title", (question,))


def test_several_correct_choices_are_allowed() -> None:
    multi = Question("q", SingleChoice(("a", "b", "c"), frozenset({0, 2})), 10, PointsMode.STANDARD)
    domain.validate_quiz("t", (multi,))
    assert judge(quiz_of(multi), 0, ChoiceAnswer(2), 0, PlayerStanding(0, 0, -1)).correct


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("  Ada  ", "Ada"), ("A\u200bda", "Ada"), ("a\tb\nc", "a b c"), ("<b>x</b>", "<b>x</b>"), ("ｆｕｌｌ", "full")],
)
def test_nicknames_are_normalised(raw: str, clean: str) -> None:
    assert domain.sanitize_nickname(raw) == clean


@pytest.mark.parametrize("raw", ["", "   ", "\x00\x01", "x" * 25])
def test_unusable_nicknames_are_refused(raw: str) -> None:
    with pytest.raises(domain.InvalidNickname):
        domain.sanitize_nickname(raw)


def test_a_quiz_runs_lobby_open_closed_next_end() -> None:
    state = initial_state(QUIZ)
    state = apply_host_action(state, QUIZ, HostAction.START, 1_000)
    assert (state.phase, state.question_index, state.open_ms, state.close_ms) == (
        Phase.QUESTION_OPEN,
        0,
        1_000,
        11_000,
    )
    with pytest.raises(domain.WrongPhase, match="close the open question first"):
        apply_host_action(state, QUIZ, HostAction.NEXT, 2_000)
    closed = apply_host_action(state, QUIZ, HostAction.CLOSE, 3_000)
    assert (closed.phase, closed.close_ms) == (Phase.QUESTION_CLOSED, 3_000)
    nxt = apply_host_action(closed, QUIZ, HostAction.NEXT, 4_000)
    assert (nxt.question_index, nxt.close_ms) == (1, 14_000)
    ended = apply_host_action(nxt, QUIZ, HostAction.END, 5_000)
    assert ended.phase == Phase.ENDED
    with pytest.raises(domain.WrongPhase):
        apply_host_action(ended, QUIZ, HostAction.START, 6_000)
    assert ended.version == 4


def test_next_after_the_last_question_says_to_end() -> None:
    state = initial_state(QUIZ)
    for action in (HostAction.START, HostAction.CLOSE, HostAction.NEXT, HostAction.CLOSE, HostAction.NEXT):
        state = apply_host_action(state, QUIZ, action, 0)
    state = apply_host_action(state, QUIZ, HostAction.CLOSE, 0)
    with pytest.raises(domain.WrongPhase, match="last question"):
        apply_host_action(state, QUIZ, HostAction.NEXT, 0)


def test_the_answer_window_uses_server_time_only() -> None:
    state = apply_host_action(initial_state(QUIZ), QUIZ, HostAction.START, 1_000)
    assert domain.answer_window_refusal(state, 0, 11_000) is None
    assert domain.answer_window_refusal(state, 0, 11_001) == AnswerRefusal.QUESTION_CLOSED
    assert domain.answer_window_refusal(state, 1, 5_000) == AnswerRefusal.QUESTION_NOT_OPEN
    assert domain.answer_window_refusal(state, 7, 5_000) == AnswerRefusal.QUESTION_NOT_FOUND
    lobby = initial_state(QUIZ)
    assert domain.answer_window_refusal(lobby, 0, 0) == AnswerRefusal.QUESTION_NOT_OPEN


@pytest.mark.parametrize(
    ("quiz_id", "question_index", "player_id"),
    [("ABC123", 0, "p-1"), ("QUIZ", 41, "7f3c0d9a2b1e4f5a8c6d0e1f2a3b4c5d"), ("ÄÖÜ漢字", 299, "nick name")],
)
def test_an_answer_event_id_is_the_uuid5_of_its_answer_as_every_earlier_release_published_it(
    quiz_id: str, question_index: int, player_id: str
) -> None:
    # Sinks dedupe republished answers by this ID, also across a rolling upgrade: it must never change.
    expected = uuid.uuid5(uuid.NAMESPACE_URL, f"quizmesh:answer:{quiz_id}:{question_index}:{player_id}").hex
    assert domain.answer_event_id(quiz_id, question_index, player_id) == expected
