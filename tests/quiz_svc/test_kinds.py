"""Each kind's judging, exact: credit, correctness and tally keys, and the points they make."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from quiz_svc import media
from quiz_svc.domain import (
    InvalidQuiz,
    PlayerStanding,
    PointsMode,
    Question,
    QuizDefinition,
    base_points,
    judge,
    validate_quiz,
)
from quiz_svc.kinds import (
    AnswerValue,
    ChoiceAnswer,
    ChoicesAnswer,
    Estimate,
    InvalidAnswer,
    MultipleSelect,
    NumberAnswer,
    OrderAnswer,
    Ordering,
    Poll,
    SingleChoice,
    Spec,
    TextAnswer,
    TrueFalse,
    TruthAnswer,
    TypeAnswer,
    new_shown_order,
    normalise_text,
    parse_number,
    within_one_edit,
)
from quiz_svc.media import NO_MEDIA, QuestionMedia

MULTI = MultipleSelect(("glad", "sad", "cheerful", "joyful"), frozenset({0, 2, 3}))
TYPED = TypeAnswer(("colour", "color", "New York"), accent_insensitive=False, typo_tolerant=True)
ORDER = Ordering(("I", "am", "a", "student"), (2, 0, 3, 1))  # shown: a, I, student, am
YEAR = Estimate(Decimal(1900), Decimal(2000), Decimal(1969), Decimal(5))


@pytest.mark.parametrize(
    ("spec", "value", "credit", "correct", "tally"),
    [
        (SingleChoice(("a", "b"), frozenset({1})), ChoiceAnswer(1), 1, True, ("1",)),
        (SingleChoice(("a", "b"), frozenset({1})), ChoiceAnswer(0), 0, False, ("0",)),
        (MULTI, ChoicesAnswer(frozenset({0, 2, 3})), 1, True, ("0", "2", "3")),
        (MULTI, ChoicesAnswer(frozenset({0, 2})), Fraction(2, 3), False, ("0", "2")),
        (MULTI, ChoicesAnswer(frozenset({0, 1, 2})), Fraction(1, 3), False, ("0", "1", "2")),
        (MULTI, ChoicesAnswer(frozenset({1})), 0, False, ("1",)),
        (TrueFalse(False), TruthAnswer(False), 1, True, ("1",)),
        (TrueFalse(False), TruthAnswer(True), 0, False, ("0",)),
        (TYPED, TextAnswer("  COLOUR!! "), 1, True, ("a0",)),
        (TYPED, TextAnswer("colr"), 1, True, ("a1",)),  # one edit from "color" (5 letters)
        (TYPED, TextAnswer("clr"), 0, False, ("other",)),  # two edits from "color"
        (TYPED, TextAnswer("new  york."), 1, True, ("a2",)),
        (TYPED, TextAnswer("New Yrok"), 0, False, ("other",)),  # a swap is two edits; "York" has 4 letters
        (TYPED, TextAnswer(""), 0, False, ("other",)),
        (ORDER, OrderAnswer((1, 3, 0, 2)), 1, True, ("exact", "i0", "i1", "i2", "i3")),
        (ORDER, OrderAnswer((3, 1, 0, 2)), Fraction(5, 6), False, ("i2", "i3")),
        (ORDER, OrderAnswer((2, 0, 3, 1)), 0, False, ()),
        (YEAR, NumberAnswer(Decimal(1969)), 1, True, ("b6",)),
        (YEAR, NumberAnswer(Decimal("1971.5")), Fraction(3, 4), True, ("b7",)),
        (YEAR, NumberAnswer(Decimal(1974)), Fraction(1, 2), True, ("b7",)),
        (YEAR, NumberAnswer(Decimal("1974.01")), 0, False, ("b7",)),
        (YEAR, NumberAnswer(Decimal(2000)), 0, False, ("b9",)),
        (Estimate(Decimal(0), Decimal(10), Decimal(3), Decimal(0)), NumberAnswer(Decimal(3)), 1, True, ("b3",)),
        (Poll(("a", "b")), ChoiceAnswer(1), 0, False, ("1",)),
    ],
)
def test_each_kind_judges_exactly(
    spec: Spec, value: AnswerValue, credit: Fraction | int, correct: bool, tally: tuple[str, ...]
) -> None:
    judged = spec.judge(spec.accept(value))
    assert (judged.credit, judged.correct, judged.tally) == (credit, correct, tally)
    assert isinstance(judged.credit, Fraction)


def test_accents_are_ignored_only_when_the_question_says_so() -> None:
    strict = TypeAnswer(("café",))
    lenient = TypeAnswer(("café",), accent_insensitive=True)
    assert (strict.judge(TextAnswer("cafe")).correct, lenient.judge(TextAnswer("CAFE")).correct) == (False, True)
    # NFKC: the ligature and the full-width letters are the plain letters.
    assert normalise_text("ﬁＦＴＨ, ok?", accent_insensitive=False) == "fifth ok"


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        ("color", "colour", True),
        ("colour", "colr", False),
        ("abc", "abd", True),
        ("abc", "abc", True),
        ("ab", "ba", False),
    ],
)
def test_one_edit_is_one_letter_replaced_added_or_removed(a: str, b: str, near: bool) -> None:
    assert within_one_edit(a, b) is near and within_one_edit(b, a) is near


@pytest.mark.parametrize(
    ("spec", "value", "choice_refusal"),
    [
        (SingleChoice(("a", "b"), frozenset({0})), ChoiceAnswer(2), True),
        (SingleChoice(("a", "b"), frozenset({0})), TextAnswer("a"), False),
        (MULTI, ChoicesAnswer(frozenset()), False),
        (MULTI, ChoicesAnswer(frozenset({7})), True),
        (TrueFalse(True), ChoiceAnswer(2), True),
        (TYPED, TextAnswer("x" * 201), False),
        (ORDER, OrderAnswer((0, 1, 2)), False),
        (ORDER, OrderAnswer((0, 0, 1, 2)), False),
        (YEAR, NumberAnswer(Decimal(1899)), False),
        (Poll(("a", "b")), ChoicesAnswer(frozenset({0})), False),
    ],
)
def test_an_answer_that_does_not_fit_its_question_is_refused(
    spec: Spec, value: AnswerValue, choice_refusal: bool
) -> None:
    with pytest.raises(InvalidAnswer) as refused:
        spec.accept(value)
    assert refused.value.choice is choice_refusal


def test_clients_of_single_choices_answer_true_false_and_multiple_select_with_choice() -> None:
    assert TrueFalse(True).accept(ChoiceAnswer(0)) == TruthAnswer(True)
    assert TrueFalse(True).accept(ChoiceAnswer(1)) == TruthAnswer(False)
    assert MULTI.accept(ChoiceAnswer(2)) == ChoicesAnswer(frozenset({2}))


@pytest.mark.parametrize(
    ("text", "number"), [("1969", Decimal(1969)), ("-3.25", Decimal("-3.25")), (" 0.000001 ", Decimal("0.000001"))]
)
def test_numbers_are_exact_decimals(text: str, number: Decimal) -> None:
    assert parse_number(text) == number


@pytest.mark.parametrize("text", ["", "1e5", "0x10", "1.0000001", "nan", "1" * 13, "--1", "1,5"])
def test_a_number_that_is_not_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(InvalidAnswer):
        parse_number(text)


def test_the_shown_order_is_never_the_right_one() -> None:
    for count in range(2, 9):
        for _ in range(20):
            shown = new_shown_order(count)
            assert sorted(shown) == list(range(count)) and list(shown) != sorted(shown)


def _question(spec: Spec, points: PointsMode = PointsMode.STANDARD) -> Question:
    return Question("q", spec, 10, points)


def test_points_are_the_speed_formula_on_points_times_credit_rounded_half_up() -> None:
    q = _question(MULTI)
    # 1000 × 2/3 × (1 − (2.5/10)/2) = 583.33… → 583
    assert base_points(q, 2_500, Fraction(2, 3)) == 583
    # 1000 × 1/2 × (1 − (0.01/10)/2) = 499.75 → 500; × 3/4 at 5 s: 562.5 → 563 (half up)
    assert base_points(q, 10, Fraction(1, 2)) == 500
    assert base_points(q, 5_000, Fraction(3, 4)) == 563
    assert base_points(q, 5_000, Fraction(0)) == 0


def test_partial_credit_scores_but_ends_the_streak_and_a_poll_leaves_it() -> None:
    quiz = QuizDefinition("Q", "t", (_question(MULTI), _question(Poll(("a", "b"))), _question(MULTI)), True, 0)
    right = judge(quiz, 0, ChoicesAnswer(frozenset({0, 2, 3})), 0, PlayerStanding(5_000, 3, -1))
    assert (right.correct, right.points, right.bonus, right.standing.streak) == (True, 1300, 300, 4)
    poll = judge(quiz, 1, ChoiceAnswer(1), 0, right.standing)
    assert (poll.points, poll.standing.streak, poll.standing.total) == (0, 4, right.standing.total)
    partly = judge(quiz, 2, ChoicesAnswer(frozenset({0, 2})), 0, poll.standing)
    assert (partly.correct, partly.points, partly.bonus, partly.standing.streak) == (False, 667, 0, 0)
    assert partly.standing.total == 5_000 + 1300 + 667


def test_the_rules_refuse_questions_of_each_kind_with_the_reason() -> None:
    cases: list[tuple[Spec, str]] = [
        (MultipleSelect(("a", "b"), frozenset()), "mark at least one correct choice"),
        (TypeAnswer(()), "needs 1 to 20 accepted answers"),
        (TypeAnswer(("?!",)), "empty once case, punctuation and spaces are set aside"),
        (Ordering(("only",), (0,)), "needs 2 to 8 items"),
        (Ordering(("a", "a"), (1, 0)), "every item must differ"),
        (Estimate(Decimal(5), Decimal(1), Decimal(3), Decimal(0)), "min must be below its max"),
        (Estimate(Decimal(0), Decimal(10), Decimal(11), Decimal(0)), "answer must lie between"),
        (Estimate(Decimal(0), Decimal(10), Decimal(5), Decimal(11)), "tolerance must be from 0"),
        (Poll(("a",)), "needs 2 to 6 choices"),
    ]
    for spec, reason in cases:
        with pytest.raises(InvalidQuiz, match=reason) as refused:
            validate_quiz("t", (_question(SingleChoice(("a", "b"), frozenset({0}))), _question(spec)))
        assert refused.value.question == 1 and str(refused.value).startswith("question 2: ")


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
TWO_CHOICES = SingleChoice(("a", "b"), frozenset({0}))


def test_media_are_named_by_their_bytes_and_typed_by_them_not_by_their_name() -> None:
    files = media.uploads({"photo.mp3": PNG, "clip.png": b"ID3\x03" + b"\x00" * 40})
    assert (files["photo.mp3"].content_type, files["clip.png"].content_type) == ("image/png", "audio/mpeg")
    assert files["photo.mp3"].media_id == media.media_id(PNG) and media.is_media_id(files["photo.mp3"].media_id)
    for content in (b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF8", b"%PDF-1.7"):
        with pytest.raises(media.InvalidMedia, match="is not a PNG"):
            media.uploads({"x": content})
    with pytest.raises(media.InvalidMedia, match="may have at most 1048576"):
        media.uploads({"big.png": PNG + b"\x00" * media.MAX_IMAGE_BYTES})


def test_a_question_names_media_of_the_right_type_that_exist() -> None:
    picture, clip = media.media_file("p", PNG), media.media_file("c", b"OggS" + b"\x00" * 40)
    files = {picture.media_id: picture, clip.media_id: clip}

    def refusal(question_media: QuestionMedia, spec: Spec = TWO_CHOICES) -> str:
        with pytest.raises(InvalidQuiz) as refused:
            validate_quiz("t", (Question("q", spec, 10, PointsMode.STANDARD, question_media),), files)
        return str(refused.value)

    assert "neither among the quiz's uploads nor stored" in refusal(QuestionMedia(image="f" * 64))
    assert "must be an image" in refusal(QuestionMedia(image=clip.media_id))
    assert "must be an audio clip" in refusal(QuestionMedia(audio=picture.media_id))
    assert "one per choice (2), are 1" in refusal(QuestionMedia(choice_images=(picture.media_id,)))
    assert "has no choices" in refusal(QuestionMedia(choice_images=("", "")), TypeAnswer(("x",)))
    fine = QuestionMedia(picture.media_id, clip.media_id, (picture.media_id, ""))
    validate_quiz("t", (Question("q", SingleChoice(("a", "b"), frozenset({0})), 10, PointsMode.STANDARD, fine),), files)
    validate_quiz("t", (Question("q", Poll(("a", "b")), 10, PointsMode.NONE, NO_MEDIA),), {}, stored=())
