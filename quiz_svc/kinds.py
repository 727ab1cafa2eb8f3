"""The question kinds: for each, what its question holds, what an answer to it is, and how that answer
is judged. Part of quiz_svc's domain: pure, exact (fractions, decimals), no I/O.

A judgement is a `credit` in [0, 1], the share of the question's points the answer earns before the
speed factor, and whether the answer is `correct` (which alone continues a streak). Each kind also
names the answer's **tally keys**, whose counts over all answers make the question's results: the
game store counts them without knowing what they mean. docs/protocol.md ("Question kinds") states
every rule below for clients that recompute scores.
"""

from __future__ import annotations

import enum
import secrets
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import ClassVar

MIN_CHOICES, MAX_CHOICES = 2, 6
MIN_ITEMS, MAX_ITEMS = 2, 8
MAX_ACCEPTED = 20
MAX_ANSWER_TEXT = 200
MAX_ITEM_TEXT = 200
TYPO_MIN_LETTERS = 5
ESTIMATE_BUCKETS = 10
MAX_DECIMALS = 6
MAX_MAGNITUDE = Decimal(10) ** 12
TRUE_FALSE_CHOICES = ("True", "False")
OTHER = "other"
EXACT = "exact"
FULL, NONE = Fraction(1), Fraction(0)


class Kind(enum.Enum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_SELECT = "multiple_select"
    TRUE_FALSE = "true_false"
    TYPE_ANSWER = "type_answer"
    ORDERING = "ordering"
    ESTIMATE = "estimate"
    POLL = "poll"


# --- answer values: one shape per kind (single choice and poll share the pick of one choice) ---


@dataclass(frozen=True, slots=True)
class ChoiceAnswer:
    """One choice's index: single_choice and poll; true_false takes 0 for true and 1 for false."""

    choice: int


@dataclass(frozen=True, slots=True)
class ChoicesAnswer:
    """multiple_select: the chosen choices."""

    choices: frozenset[int]


@dataclass(frozen=True, slots=True)
class TruthAnswer:
    """true_false."""

    truth: bool


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """type_answer: the text as the player typed it (kept so; judging normalises a copy)."""

    text: str


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    """ordering: the items' shown positions, in the order the player put them."""

    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NumberAnswer:
    """estimate: an exact decimal number."""

    number: Decimal


AnswerValue = ChoiceAnswer | ChoicesAnswer | TruthAnswer | TextAnswer | OrderAnswer | NumberAnswer


class InvalidAnswer(ValueError):
    """The answer does not fit the question: `choice` says whether it names a choice that is not one."""

    def __init__(self, message: str, *, choice: bool = False) -> None:
        super().__init__(message)
        self.choice = choice


@dataclass(frozen=True, slots=True)
class Judgement:
    credit: Fraction
    correct: bool
    tally: tuple[str, ...]
    accepted: str = ""  # type_answer: the accepted answer the text matched


def credit_text(credit: Fraction) -> str:
    """ "1", "0", "3/4": how contracts and events carry a credit."""
    return str(credit)


def parse_credit(text: str) -> Fraction:
    return Fraction(text) if text else NONE


# --- numbers ---


def parse_number(text: str) -> Decimal:
    """A decimal number as authored or answered: plain notation, at most 6 decimals, below 10^12."""
    stripped = text.strip()
    if not stripped or any(c not in "0123456789.-" for c in stripped):
        raise InvalidAnswer(f"{text[:40]!r} is not a decimal number such as 12 or -3.25")
    try:
        number = Decimal(stripped)
    except InvalidOperation:
        raise InvalidAnswer(f"{text[:40]!r} is not a decimal number such as 12 or -3.25") from None
    exponent = number.as_tuple().exponent
    if not number.is_finite() or (isinstance(exponent, int) and -exponent > MAX_DECIMALS):
        raise InvalidAnswer(f"{text[:40]!r} has more than {MAX_DECIMALS} decimals")
    if abs(number) >= MAX_MAGNITUDE:
        raise InvalidAnswer(f"{text[:40]!r} is not below 10^12 in size")
    return number


def number_text(number: Decimal) -> str:
    """The canonical text of a number: plain notation, no trailing zeros ("1969", "-3.25")."""
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


# --- type_answer's normalisation ---


def normalise_text(text: str, *, accent_insensitive: bool) -> str:
    """NFKC, case folded, accents dropped when asked (NFD without combining marks), punctuation (Unicode
    category P*) removed, whitespace trimmed and collapsed to single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if accent_insensitive:
        decomposed = unicodedata.normalize("NFD", folded)
        folded = unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))
    kept = "".join(c for c in folded if not unicodedata.category(c).startswith("P"))
    return " ".join(kept.split())


def within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance at most 1 (one letter replaced, added or removed), in one pass."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


# --- the kinds' questions ---


def _choices_problem(choices: tuple[str, ...], max_text: int) -> str | None:
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        return f"needs {MIN_CHOICES} to {MAX_CHOICES} choices, has {len(choices)}"
    if any(not c.strip() or len(c) > max_text for c in choices):
        return f"every choice needs 1 to {max_text} characters"
    return None


def _marked_choices_problem(choices: tuple[str, ...], correct: frozenset[int], max_text: int) -> str | None:
    """What is wrong with choices of which some are marked correct (single choice, multiple select)."""
    if found := _choices_problem(choices, max_text):
        return found
    if not correct:
        return "mark at least one correct choice"
    bad = sorted(i for i in correct if not 0 <= i < len(choices))
    return f"correct choice index {bad[0]} is outside 0..{len(choices) - 1}" if bad else None


def _pick(value: AnswerValue, count: int) -> int:
    if not isinstance(value, ChoiceAnswer):
        raise InvalidAnswer("this question takes one choice ('choice')")
    if not 0 <= value.choice < count:
        raise InvalidAnswer("the choice is not one of the question's choices", choice=True)
    return value.choice


@dataclass(frozen=True)
class _MarkedChoices:
    """Choices of which some are marked correct: what single choice and multiple select share."""

    scoring: ClassVar[bool] = True
    choices: tuple[str, ...]
    correct: frozenset[int]

    def problem(self, max_text: int) -> str | None:
        return _marked_choices_problem(self.choices, self.correct, max_text)


@dataclass(frozen=True)
class SingleChoice(_MarkedChoices):
    """One pick; right when it is any of the correct choices (credit 1), else wrong (0)."""

    kind: ClassVar[Kind] = Kind.SINGLE_CHOICE

    def accept(self, value: AnswerValue) -> AnswerValue:
        _pick(value, len(self.choices))
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, ChoiceAnswer)
        right = value.choice in self.correct
        return Judgement(FULL if right else NONE, right, (str(value.choice),))

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, ChoiceAnswer)
        return self.choices[value.choice]


@dataclass(frozen=True)
class MultipleSelect(_MarkedChoices):
    """A set of picks; right when it is exactly the correct set. Partial credit:
    max(0, right picks − wrong picks) / number of correct choices."""

    kind: ClassVar[Kind] = Kind.MULTIPLE_SELECT

    def accept(self, value: AnswerValue) -> AnswerValue:
        if isinstance(value, ChoiceAnswer):  # a client of single choices picks one
            value = ChoicesAnswer(frozenset({_pick(value, len(self.choices))}))
        if not isinstance(value, ChoicesAnswer):
            raise InvalidAnswer("this question takes a set of choices ('choices')")
        if not value.choices:
            raise InvalidAnswer("choose at least one choice")
        if any(not 0 <= c < len(self.choices) for c in value.choices):
            raise InvalidAnswer("a choice is not one of the question's choices", choice=True)
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, ChoicesAnswer)
        right = len(value.choices & self.correct)
        wrong = len(value.choices - self.correct)
        credit = Fraction(max(0, right - wrong), len(self.correct))
        return Judgement(credit, value.choices == self.correct, tuple(str(c) for c in sorted(value.choices)))

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, ChoicesAnswer)
        return "; ".join(self.choices[c] for c in sorted(value.choices))


@dataclass(frozen=True)
class TrueFalse:
    """True or false; its choices are "True" (0) and "False" (1), so choice clients can answer too."""

    kind: ClassVar[Kind] = Kind.TRUE_FALSE
    scoring: ClassVar[bool] = True
    answer: bool

    @property
    def choices(self) -> tuple[str, ...]:
        return TRUE_FALSE_CHOICES

    @property
    def correct(self) -> frozenset[int]:
        return frozenset({0 if self.answer else 1})

    def problem(self, max_text: int) -> str | None:
        return None

    def accept(self, value: AnswerValue) -> AnswerValue:
        if isinstance(value, ChoiceAnswer):
            return TruthAnswer(_pick(value, 2) == 0)
        if not isinstance(value, TruthAnswer):
            raise InvalidAnswer("this question takes true or false ('truth')")
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, TruthAnswer)
        right = value.truth == self.answer
        return Judgement(FULL if right else NONE, right, ("0" if value.truth else "1",))

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, TruthAnswer)
        return "true" if value.truth else "false"


@dataclass(frozen=True)
class TypeAnswer:
    """Typed text, right (credit 1) when its normal form (normalise_text) equals an accepted answer's,
    or, with typo_tolerant, has as many words and each word equals the accepted one's or, where that
    word has 5 letters or more, is within one edit of it. The first accepted answer that matches, in
    authored order, is the one shown as accepted and tallied (`a<index>`); no match tallies `other`."""

    kind: ClassVar[Kind] = Kind.TYPE_ANSWER
    scoring: ClassVar[bool] = True
    accepted: tuple[str, ...]
    accent_insensitive: bool = False
    typo_tolerant: bool = False
    # The accepted answers' normal forms, computed once per question rather than per answer.
    _normal: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _words: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        normal = tuple(normalise_text(a, accent_insensitive=self.accent_insensitive) for a in self.accepted)
        object.__setattr__(self, "_normal", normal)
        object.__setattr__(self, "_words", tuple(tuple(n.split(" ")) for n in normal))

    @property
    def choices(self) -> tuple[str, ...]:
        return ()

    def problem(self, max_text: int) -> str | None:
        if not 1 <= len(self.accepted) <= MAX_ACCEPTED:
            return f"needs 1 to {MAX_ACCEPTED} accepted answers, has {len(self.accepted)}"
        if any(len(a) > MAX_ANSWER_TEXT for a in self.accepted):
            return f"an accepted answer is longer than {MAX_ANSWER_TEXT} characters"
        if not all(self._normal):
            return "an accepted answer is empty once case, punctuation and spaces are set aside"
        return None

    def accept(self, value: AnswerValue) -> AnswerValue:
        if not isinstance(value, TextAnswer):
            raise InvalidAnswer("this question takes typed text ('text')")
        if len(value.text) > MAX_ANSWER_TEXT:
            raise InvalidAnswer(f"the answer is longer than {MAX_ANSWER_TEXT} characters")
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, TextAnswer)
        typed = normalise_text(value.text, accent_insensitive=self.accent_insensitive)
        for index, normal in enumerate(self._normal):
            if typed == normal:
                return self._matched(index)
        if self.typo_tolerant and typed:
            words = typed.split(" ")
            for index, accepted in enumerate(self._words):
                if len(words) == len(accepted) and all(
                    w == a or (len(a) >= TYPO_MIN_LETTERS and within_one_edit(w, a))
                    for w, a in zip(words, accepted, strict=True)
                ):
                    return self._matched(index)
        return Judgement(NONE, False, (OTHER,))

    def _matched(self, index: int) -> Judgement:
        return Judgement(FULL, True, (f"a{index}",), self.accepted[index])

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, TextAnswer)
        return value.text


def new_shown_order(count: int) -> tuple[int, ...]:
    """A random order to show an ordering question's items in, never the right one."""
    order = list(range(count))
    while order == sorted(order):
        secrets.SystemRandom().shuffle(order)
    return tuple(order)


@dataclass(frozen=True)
class Ordering:
    """Items to put in order. `items` are in the right order; players see them in `shown` order
    (shown[p] is the item at shown position p) and answer with shown positions. Credit: the share of
    the n(n−1)/2 pairs of items the player put in the right relative order; right only when the whole
    order is. Tallies: `exact` for the right order, and `i<k>` for each item k put in its right place."""

    kind: ClassVar[Kind] = Kind.ORDERING
    scoring: ClassVar[bool] = True
    items: tuple[str, ...]
    shown: tuple[int, ...]

    @property
    def choices(self) -> tuple[str, ...]:
        return ()

    @property
    def shown_items(self) -> tuple[str, ...]:
        return tuple(self.items[i] for i in self.shown)

    def problem(self, max_text: int) -> str | None:
        if not MIN_ITEMS <= len(self.items) <= MAX_ITEMS:
            return f"needs {MIN_ITEMS} to {MAX_ITEMS} items, has {len(self.items)}"
        if any(not i.strip() or len(i) > MAX_ITEM_TEXT for i in self.items):
            return f"every item needs 1 to {MAX_ITEM_TEXT} characters"
        if len({i.strip() for i in self.items}) != len(self.items):
            # Players tell items apart by their text alone.
            return "every item must differ from the others"
        if sorted(self.shown) != list(range(len(self.items))):
            return "the shown order is not an order of the items"
        return None

    def accept(self, value: AnswerValue) -> AnswerValue:
        if not isinstance(value, OrderAnswer):
            raise InvalidAnswer("this question takes an order of its items ('order')")
        if sorted(value.positions) != list(range(len(self.items))):
            raise InvalidAnswer(f"the order must name each of the {len(self.items)} items' positions once")
        return value

    def authored(self, value: OrderAnswer) -> tuple[int, ...]:
        return tuple(self.shown[p] for p in value.positions)

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, OrderAnswer)
        placed = self.authored(value)
        n = len(placed)
        in_order = sum(1 for i in range(n) for j in range(i + 1, n) if placed[i] < placed[j])
        credit = Fraction(in_order, n * (n - 1) // 2)
        right = credit == FULL
        tally = ((EXACT,) if right else ()) + tuple(f"i{k}" for k in range(n) if placed[k] == k)
        return Judgement(credit, right, tally)

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, OrderAnswer)
        return " / ".join(self.items[i] for i in self.authored(value))


@dataclass(frozen=True)
class Estimate:
    """A number in [low, high]. With d = |number − answer| and t = tolerance: right when d ≤ t, with
    credit 1 − d / (2t) (between half and all; 1 when t = 0 and d = 0), else wrong with credit 0.
    Tallies: one of 10 equal buckets over the range, `b<floor(10 (number − low) / (high − low))>`,
    the top value in b9."""

    kind: ClassVar[Kind] = Kind.ESTIMATE
    scoring: ClassVar[bool] = True
    low: Decimal
    high: Decimal
    answer: Decimal
    tolerance: Decimal

    @property
    def choices(self) -> tuple[str, ...]:
        return ()

    def problem(self, max_text: int) -> str | None:
        if not self.low < self.high:
            return "the estimate's min must be below its max"
        if not self.low <= self.answer <= self.high:
            return "the estimate's answer must lie between its min and max"
        if not 0 <= self.tolerance <= self.high - self.low:
            return "the estimate's tolerance must be from 0 to max − min"
        return None

    def accept(self, value: AnswerValue) -> AnswerValue:
        if not isinstance(value, NumberAnswer):
            raise InvalidAnswer("this question takes a number ('number')")
        if not self.low <= value.number <= self.high:
            raise InvalidAnswer(f"the number must be from {number_text(self.low)} to {number_text(self.high)}")
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, NumberAnswer)
        distance = Fraction(abs(value.number - self.answer))
        tolerance = Fraction(self.tolerance)
        if distance > tolerance:
            credit, right = NONE, False
        else:
            credit, right = (FULL if distance == 0 else FULL - distance / (2 * tolerance)), True
        share = Fraction(value.number - self.low) / Fraction(self.high - self.low)
        bucket = min(int(share * ESTIMATE_BUCKETS), ESTIMATE_BUCKETS - 1)
        return Judgement(credit, right, (f"b{bucket}",))

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, NumberAnswer)
        return number_text(value.number)


@dataclass(frozen=True)
class Poll:
    """A vote among choices: no right answer, credit 0, never scores, never touches a streak."""

    kind: ClassVar[Kind] = Kind.POLL
    scoring: ClassVar[bool] = False
    choices: tuple[str, ...]

    @property
    def correct(self) -> frozenset[int]:
        return frozenset()

    def problem(self, max_text: int) -> str | None:
        return _choices_problem(self.choices, max_text)

    def accept(self, value: AnswerValue) -> AnswerValue:
        _pick(value, len(self.choices))
        return value

    def judge(self, value: AnswerValue) -> Judgement:
        assert isinstance(value, ChoiceAnswer)
        return Judgement(NONE, False, (str(value.choice),))

    def readable(self, value: AnswerValue) -> str:
        assert isinstance(value, ChoiceAnswer)
        return self.choices[value.choice]


def accepted_answer(spec: Spec, tally: tuple[str, ...]) -> str:
    """type_answer: the accepted answer an answer's tally names; empty for other kinds or no match."""
    if isinstance(spec, TypeAnswer) and tally and tally[0] != OTHER:
        return spec.accepted[int(tally[0][1:])]
    return ""


Spec = SingleChoice | MultipleSelect | TrueFalse | TypeAnswer | Ordering | Estimate | Poll
CHOICE_KINDS = frozenset({Kind.SINGLE_CHOICE, Kind.MULTIPLE_SELECT, Kind.TRUE_FALSE, Kind.POLL})
