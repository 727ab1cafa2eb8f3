"""The rules of a quiz: what a valid quiz is, when a question is open, how an answer is scored.

Nothing here knows about gRPC, Kafka, Redis or SQL; adapters and the service layer call these.
The question kinds (what an answer is and how it is judged) are in `kinds.py`, media in `media.py`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from quiz_svc.kinds import CHOICE_KINDS, AnswerValue, Kind, Spec
from quiz_svc.media import NO_MEDIA, MediaFile, QuestionMedia

MIN_TIME_LIMIT_S, MAX_TIME_LIMIT_S = 5, 120
MAX_QUESTIONS = 500
MAX_NICKNAME = 24
MAX_TEXT = 500
MAX_TITLE = 200
STREAK_STEP, STREAK_CAP = 100, 500

# Quiz IDs are typed by people: no 0/O, 1/I/L.
_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
QUIZ_ID_LENGTH = 8


class PointsMode(enum.IntEnum):
    STANDARD = 1000
    DOUBLE = 2000
    NONE = 0


class Phase(enum.Enum):
    LOBBY = "lobby"
    QUESTION_OPEN = "question_open"
    QUESTION_CLOSED = "question_closed"
    ENDED = "ended"


# --- errors: one small hierarchy, mapped to status codes in one table by grpc_api ---


class QuizError(Exception):
    """A request the rules refuse. The message is shown to the caller."""


class InvalidQuiz(QuizError):
    """A quiz the rules refuse; `question` is the position of the question at fault, if one is."""

    def __init__(self, message: str, question: int | None = None) -> None:
        super().__init__(message)
        self.question = question


class InvalidNickname(QuizError):
    pass


class NicknameTaken(QuizError):
    pass


class QuizNotFound(QuizError):
    pass


class NotTheHost(QuizError):
    pass


class NotAPlayer(QuizError):
    """The credential is missing, forged, expired or for another quiz."""


class PlayerRemoved(QuizError):
    pass


class WrongPhase(QuizError):
    """The host action does not fit where the quiz stands."""


class JoinClosed(QuizError):
    pass


class SignInRequired(QuizError):
    """The quiz, or the deployment, admits signed-in players only."""


class NotSignedIn(QuizError):
    """An identity token was required, or the one presented was refused."""


class Unavailable(QuizError):
    """A dependency did not answer in time; retrying the same request is safe."""


class AnswerRefusal(enum.Enum):
    """Why an answer was refused; names match the AnswerError enum of the contract."""

    QUESTION_CLOSED = "question_closed"
    ALREADY_ANSWERED = "already_answered"
    QUESTION_NOT_FOUND = "question_not_found"
    QUESTION_NOT_OPEN = "question_not_open"
    INVALID_CHOICE = "invalid_choice"
    INVALID_ANSWER = "invalid_answer"
    UNAUTHENTICATED = "unauthenticated"
    QUIZ_NOT_FOUND = "quiz_not_found"
    NOT_A_PARTICIPANT = "not_a_participant"
    UNAVAILABLE = "unavailable"


REFUSAL_MESSAGES = {
    AnswerRefusal.QUESTION_CLOSED: "the question closed before your answer arrived",
    AnswerRefusal.ALREADY_ANSWERED: "you have already answered this question; only your first answer counts",
    AnswerRefusal.QUESTION_NOT_FOUND: "the quiz has no question with that index",
    AnswerRefusal.QUESTION_NOT_OPEN: "that question is not open yet",
    AnswerRefusal.INVALID_CHOICE: "the choice is not one of the question's choices",
    AnswerRefusal.INVALID_ANSWER: "the answer does not fit the question",
    AnswerRefusal.UNAUTHENTICATED: "your player credential is missing, invalid, expired or for another quiz",
    AnswerRefusal.QUIZ_NOT_FOUND: "no quiz has that ID",
    AnswerRefusal.NOT_A_PARTICIPANT: "you are not a player of this quiz (left or removed)",
    AnswerRefusal.UNAVAILABLE: "the answer could not be recorded in time; send the same answer again",
}


# --- quiz definitions ---


@dataclass(frozen=True)
class Question:
    """A question of any kind: what every kind shares, and its kind's `spec` (kinds.py)."""

    text: str
    spec: Spec
    time_limit_s: int
    points: PointsMode
    media: QuestionMedia = NO_MEDIA

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def choices(self) -> tuple[str, ...]:
        return self.spec.choices

    @property
    def scoring(self) -> bool:
        """Whether answers to it score and count for streaks: not a poll, nor a no-points question."""
        return self.spec.scoring and self.points != PointsMode.NONE

    @property
    def time_limit_ms(self) -> int:
        return self.time_limit_s * 1000

    def accept(self, value: AnswerValue) -> AnswerValue:
        """The answer as its kind takes it (a true/false given as a choice becomes true or false), or
        InvalidAnswer."""
        return self.spec.accept(value)


@dataclass(frozen=True)
class QuizDefinition:
    """An authored quiz. Immutable once created, so any process may cache it forever."""

    quiz_id: str
    title: str
    questions: tuple[Question, ...]
    allow_late_join: bool
    created_ms: int
    # Only players signed in with an identity token may join (the author's choice, per quiz).
    requires_sign_in: bool = False

    def question(self, index: int) -> Question | None:
        return self.questions[index] if 0 <= index < len(self.questions) else None


# --- quizzes and their sessions (issue 16) ---
#
# A quiz is authored once; each run of it is a session, which the live path knows as a `QuizDefinition`
# whose `quiz_id` is the session's join code (a copy of the quiz, with the session's start as its
# creation). A quiz's ID is its first session's join code, so a quiz from before sessions is a quiz
# with one session of the same join code.


@dataclass(frozen=True)
class Ownership:
    """Who owns an authored quiz: a user, or, when owner_user_id is None, whoever holds the host
    credential issued with it (the anonymous mode)."""

    quiz_id: str
    owner_user_id: str | None


@dataclass(frozen=True)
class Session:
    """One run of an authored quiz."""

    session_id: str  # its join code, the `quiz_id` of every live call
    quiz_id: str  # the authored quiz it runs
    title: str
    created_ms: int
    phase: Phase  # as last kept durably
    host_user_id: str | None  # None when hosted with a host credential only


def owns(ownership: Ownership, user_id: str | None, holds_host_credential: bool) -> bool:
    """A user-owned quiz is its owner's alone (a host credential does not stand in for the user); an
    anonymous one is whoever's holds its host credential."""
    if ownership.owner_user_id is not None:
        return user_id == ownership.owner_user_id
    return holds_host_credential


def new_session(quiz: QuizDefinition, session_id: str, now_ms: int) -> QuizDefinition:
    """The copy of a quiz a new session runs: its own join code, created now (scores' ties and the
    events' elapsed times count from a session's start)."""
    return dataclasses.replace(quiz, quiz_id=session_id, created_ms=now_ms)


def may_join_as(quiz: QuizDefinition, user_id: str | None, anonymous_allowed: bool) -> None:
    if user_id is None and quiz.requires_sign_in:
        raise SignInRequired("this quiz admits signed-in players only; join with an identity token")
    if user_id is None and not anonymous_allowed:
        raise SignInRequired("this platform admits signed-in players only; join with an identity token")


def user_player_id(secret: bytes, session_id: str, user_id: str) -> str:
    """A signed-in user's one player in a session: the same ID from every device, so joining again
    resumes that player rather than taking a second seat. Keyed, so that the player IDs other players
    see do not reveal which user played."""
    digest = hmac.new(secret, f"quizmesh:player:{session_id}:{user_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:20]


def new_quiz_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(QUIZ_ID_LENGTH))


def new_player_id() -> str:
    return uuid.uuid4().hex[:20]


_EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL.bytes


def answer_event_id(quiz_id: str, question_index: int, player_id: str) -> str:
    """One answer, one event ID: every re-publication of it carries the same ID, so sinks dedupe.

    The hex of uuid.uuid5(NAMESPACE_URL, "quizmesh:answer:<quiz>:<question>:<player>"), computed from the
    SHA-1 directly: building the UUID object cost more than the hash, once per answer."""
    name = f"quizmesh:answer:{quiz_id}:{question_index}:{player_id}".encode()
    digest = bytearray(hashlib.sha1(_EVENT_ID_NAMESPACE + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return digest.hex()


def normalize_quiz_id(raw: str) -> str:
    return raw.strip().upper()


def question_problem(q: Question, media: Mapping[str, MediaFile], stored: Collection[str]) -> str | None:
    """What is wrong with a question, if anything. `media` are the quiz's uploads by media ID, `stored`
    the media IDs already stored that it names."""
    if not q.text.strip():
        return "text must not be empty"
    if len(q.text) > MAX_TEXT:
        return f"text is longer than {MAX_TEXT} characters"
    if found := q.spec.problem(MAX_TEXT):
        return found
    if not MIN_TIME_LIMIT_S <= q.time_limit_s <= MAX_TIME_LIMIT_S:
        return f"time limit must be {MIN_TIME_LIMIT_S} to {MAX_TIME_LIMIT_S} s, is {q.time_limit_s}"
    return _media_problem(q, media, stored)


def _media_problem(q: Question, media: Mapping[str, MediaFile], stored: Collection[str]) -> str | None:
    for ref in q.media.references():
        if ref not in media and ref not in stored:
            return f"media {ref[:80]!r} is neither among the quiz's uploads nor stored"
    pictures = [q.media.image, *q.media.choice_images]
    if any(ref in media and not media[ref].is_image for ref in pictures):
        return "a question's or a choice's picture must be an image"
    if q.media.audio in media and media[q.media.audio].is_image:
        return "a question's audio must be an audio clip"
    if q.media.choice_images:
        if q.kind not in CHOICE_KINDS:
            return f"a {q.kind.value} question has no choices to show pictures on"
        if len(q.media.choice_images) != len(q.choices):
            return f"choice pictures must be one per choice ({len(q.choices)}), are {len(q.media.choice_images)}"
    return None


def validate_quiz(
    title: str,
    questions: tuple[Question, ...],
    media: Mapping[str, MediaFile] | None = None,
    stored: Collection[str] = (),
) -> None:
    if not title.strip():
        raise InvalidQuiz("title must not be empty")
    if len(title) > MAX_TITLE:
        raise InvalidQuiz(f"title is longer than {MAX_TITLE} characters")
    if not questions:
        raise InvalidQuiz("a quiz needs at least one question")
    if len(questions) > MAX_QUESTIONS:
        raise InvalidQuiz(f"a quiz has at most {MAX_QUESTIONS} questions")
    for position, question in enumerate(questions):
        found = question_problem(question, media or {}, stored)
        if found is not None:
            raise InvalidQuiz(f"question {position + 1}: {found}", position)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sanitize_nickname(raw: str) -> str:
    """NFKC-normalised, control characters removed, inner whitespace collapsed, 1-24 characters.

    Markup is kept as text: every client renders nicknames as text, never as HTML.
    """
    text = " ".join(unicodedata.normalize("NFKC", raw).split())
    text = _CONTROL.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Co", "Cs")).strip()
    if not text:
        raise InvalidNickname("the nickname must contain at least one visible character")
    if len(text) > MAX_NICKNAME:
        raise InvalidNickname(f"the nickname must be at most {MAX_NICKNAME} characters")
    return text


def erased_nickname(replacement: str) -> str:
    """The name a player is shown under once their user's data was deleted (persistence_svc's
    DeleteUserData names it): a nickname under the same rules as any other, but held by no one, so
    several erased players of a session share it and nobody's join is refused because of it. The player
    keeps their seat, score and answers: a finished session's ranking does not change."""
    return sanitize_nickname(replacement)


# --- scoring ---


def base_points(question: Question, response_ms: int, credit: Fraction = Fraction(1)) -> int:
    """round(points × credit × (1 − (response_time / time_limit) / 2)), rounding halves up, in exact
    integers.

    response_ms is clamped to [0, time limit], so an answer earns between half and all of its credit.
    """
    limit = question.time_limit_ms
    rt = min(max(response_ms, 0), limit)
    points = int(question.points) * credit.numerator
    # points * (2*limit - rt) / (2*limit*denominator), rounded half up.
    denominator = 2 * limit * credit.denominator
    return (2 * points * (2 * limit - rt) + denominator) // (2 * denominator)


def streak_bonus(streak: int) -> int:
    """+100 for each consecutive correct answer after the first, capped at +500."""
    return min(STREAK_STEP * max(streak - 1, 0), STREAK_CAP)


@dataclass(frozen=True)
class PlayerStanding:
    """What scoring needs to know of a player before an answer."""

    total: int
    streak: int  # as of the player's last answer; see streak_before for the streak as it stands
    last_correct_index: int  # index of the last question that continued the streak; -1 if none


@dataclass(frozen=True)
class Verdict:
    correct: bool
    points: int
    bonus: int
    response_ms: int
    standing: PlayerStanding  # after the answer
    credit: Fraction = Fraction(0)
    tally: tuple[str, ...] = ()  # the keys this answer counts under in the question's results
    accepted: str = ""  # type_answer: the accepted answer the text matched


def streak_before(quiz: QuizDefinition, index: int, standing: PlayerStanding) -> int:
    """The streak as it stands when question `index` opens.

    A scoring question since the last one that continued the streak was missed, answered wrong or
    not at all, and a missed scoring question ends the streak. No-points questions do not count,
    answered or not."""
    since = quiz.questions[standing.last_correct_index + 1 : index]
    return 0 if any(q.scoring for q in since) else standing.streak


def streak_now(quiz: QuizDefinition, state: GameState, standing: PlayerStanding) -> int:
    """The streak as it stands in `state`: the open question is not missed yet, a closed one is."""
    closed = state.question_index + 1 if state.phase != Phase.QUESTION_OPEN else state.question_index
    return streak_before(quiz, max(closed, 0), standing)


def judge(quiz: QuizDefinition, index: int, value: AnswerValue, response_ms: int, before: PlayerStanding) -> Verdict:
    """Scores an answer (as `Question.accept` returned it) to question `index`: the speed formula on the
    question's points × the kind's credit, plus the streak bonus when correct. A correct answer to a
    scoring question continues the streak as it stands, any other ends it (partial credit included);
    a poll or no-points question neither scores nor touches it, and its verdict carries the streak as
    it stands."""
    question = quiz.questions[index]
    rt = min(max(response_ms, 0), question.time_limit_ms)
    judged = question.spec.judge(value)
    streak = streak_before(quiz, index, before)
    if not question.scoring:
        standing = PlayerStanding(before.total, streak, index if streak else -1)
        return Verdict(judged.correct, 0, 0, rt, standing, judged.credit, judged.tally, judged.accepted)
    if not judged.correct:
        points = base_points(question, rt, judged.credit)
        standing = PlayerStanding(before.total + points, 0, -1)
        return Verdict(False, points, 0, rt, standing, judged.credit, judged.tally, judged.accepted)
    bonus = streak_bonus(streak + 1)
    points = base_points(question, rt, judged.credit) + bonus
    standing = PlayerStanding(before.total + points, streak + 1, index)
    return Verdict(True, points, bonus, rt, standing, judged.credit, judged.tally, judged.accepted)


def correct_choices(question: Question) -> tuple[int, ...]:
    """The correct choices' indices of a question with choices (none for a poll or choiceless kinds)."""
    return tuple(sorted(getattr(question.spec, "correct", ())))


def choice_counts(question: Question, tallies: Mapping[str, int]) -> tuple[int, ...]:
    """How many answers picked each choice: a choice kind tallies each picked choice's index."""
    return tuple(tallies.get(str(i), 0) for i in range(len(question.choices)))


def tally(question: Question, value: AnswerValue) -> tuple[str, ...]:
    """The keys an answer counts under in its question's results (the same as judge's)."""
    return question.spec.judge(value).tally


# --- the live game ---


@dataclass(frozen=True)
class GameState:
    """A quiz's live state. `version` increases with every change, for compare-and-set stores."""

    quiz_id: str
    phase: Phase
    question_index: int  # -1 in the lobby
    question_count: int
    open_ms: int  # when the current question opened; 0 when none
    close_ms: int  # when it closes (or closed); 0 when none
    leaderboard_visible: bool
    participant_count: int
    version: int


class HostAction(enum.Enum):
    START = "start"
    NEXT = "next"
    CLOSE = "close"
    SHOW_LEADERBOARD = "show_leaderboard"
    HIDE_LEADERBOARD = "hide_leaderboard"
    END = "end"


def _open(state: GameState, quiz: QuizDefinition, index: int, now_ms: int) -> GameState:
    question = quiz.questions[index]
    return _replace(
        state,
        phase=Phase.QUESTION_OPEN,
        question_index=index,
        open_ms=now_ms,
        close_ms=now_ms + question.time_limit_ms,
    )


def _replace(state: GameState, **changes: Any) -> GameState:
    return dataclasses.replace(state, version=state.version + 1, **changes)


def host_action_done(state: GameState, action: HostAction, question_index: int | None = None) -> bool:
    """Whether a host action has already taken effect, so that repeating it succeeds and changes nothing.

    A host retries an action whose reply it never got (the process serving it died, say); the first
    attempt may have taken effect. Start counts as done while the quiz is at its first question and end
    once the quiz has ended. Next and close count as done only when the host names the question
    (`question_index`): without it a repeat cannot be told from a second click meant to move on.
    """
    if action == HostAction.END:
        return state.phase == Phase.ENDED
    if state.phase == Phase.ENDED:
        return False
    if action == HostAction.START:
        return state.question_index == 0
    if question_index is None or state.phase == Phase.LOBBY:
        return False
    if action == HostAction.NEXT:
        return question_index <= state.question_index
    if action == HostAction.CLOSE:
        current = state.question_index
        return question_index < current or (question_index == current and state.phase != Phase.QUESTION_OPEN)
    return False


def apply_host_action(
    state: GameState, quiz: QuizDefinition, action: HostAction, now_ms: int, question_index: int | None = None
) -> GameState:
    """The state after a host action, or WrongPhase with what the host should do instead.

    `question_index`, when the host names the question to open or close, must be the one the action
    would open or close (see host_action_done for a repeat of one that already took effect)."""
    if state.phase == Phase.ENDED:
        raise WrongPhase("the quiz has ended")
    if action == HostAction.START:
        if state.phase != Phase.LOBBY:
            raise WrongPhase("the quiz has already started")
        return _open(state, quiz, 0, now_ms)
    if action == HostAction.NEXT:
        if state.phase == Phase.LOBBY:
            raise WrongPhase("start the quiz first")
        if question_index is not None and question_index != state.question_index + 1:
            raise WrongPhase(
                f"question index {question_index} cannot open next: the quiz is at question index "
                f"{state.question_index}"
            )
        if state.phase == Phase.QUESTION_OPEN and not is_past_close(state, now_ms):
            raise WrongPhase("close the open question first")
        if state.question_index + 1 >= state.question_count:
            raise WrongPhase("that was the last question; end the quiz")
        return _open(state, quiz, state.question_index + 1, now_ms)
    if action == HostAction.CLOSE:
        if state.phase != Phase.QUESTION_OPEN:
            raise WrongPhase("no question is open")
        if question_index is not None and question_index != state.question_index:
            raise WrongPhase(f"question index {question_index} is not the open one ({state.question_index})")
        return close_question(state, now_ms)
    if action in (HostAction.SHOW_LEADERBOARD, HostAction.HIDE_LEADERBOARD):
        return _replace(state, leaderboard_visible=action == HostAction.SHOW_LEADERBOARD)
    return _replace(state, phase=Phase.ENDED, close_ms=min(state.close_ms, now_ms) if state.close_ms else 0)


def close_question(state: GameState, now_ms: int) -> GameState:
    return _replace(state, phase=Phase.QUESTION_CLOSED, close_ms=min(state.close_ms, now_ms))


def closed_question(old: GameState, new: GameState) -> int:
    """The question a change of state closed, whose results are then published; -1 if none."""
    if old.phase == Phase.QUESTION_OPEN and new.phase != Phase.QUESTION_OPEN:
        return old.question_index
    return -1


def rebuilt_version(saved: GameState, now_ms: int) -> int:
    """The version of a live state rebuilt from its durable copy.

    The copy may lag the lost live state by a transition or more, whose versions watchers have already
    seen; the wall clock in ms is beyond every version a quiz reaches by counting its transitions, so
    watchers take the rebuilt state and its successors as new."""
    return max(saved.version + 1, now_ms)


def is_past_close(state: GameState, now_ms: int) -> bool:
    return now_ms > state.close_ms


def answer_window_refusal(state: GameState, index: int, received_ms: int) -> AnswerRefusal | None:
    """Whether an answer to question `index` that the platform received at received_ms may be judged.

    The client's clock plays no part. An answer received before its question closed counts even if it
    reaches the judging process after the close (it waited out an outage), as long as no later question
    has opened. The Redis engine restates this rule inside its claim script, where it must be atomic
    with answer-once; tests/quiz_svc/test_window_rule.py runs one table of cases through both.
    """
    if not 0 <= index < state.question_count:
        return AnswerRefusal.QUESTION_NOT_FOUND
    if state.phase == Phase.LOBBY or index > state.question_index:
        return AnswerRefusal.QUESTION_NOT_OPEN
    if index < state.question_index or received_ms > state.close_ms:
        return AnswerRefusal.QUESTION_CLOSED
    return None


def plausible_receipt(stamped_ms: int | None, now_ms: int, grace_ms: int) -> int:
    """When the platform first received an answer, as far as the judging process can tell before reading
    the game state: the edge's stamp when it is neither in the future nor older than `grace_ms`, else now.

    The stamp never comes from a client (see docs/reliability.md); these bounds catch a wrong clock or a
    bug, and keep an answer from being held back indefinitely and still counted."""
    if stamped_ms is None or not now_ms - grace_ms <= stamped_ms <= now_ms:
        return now_ms
    return stamped_ms


def receipt_after_open(received_ms: int, opened_ms: int, now_ms: int) -> int:
    """A receipt time before the question opened is no receipt of an answer to it (an answer sent ahead
    and held back): the judging process's own time stands instead. The Redis claim script restates this
    next to the window check."""
    return now_ms if received_ms < opened_ms else received_ms


def may_join(state: GameState, quiz: QuizDefinition) -> None:
    if state.phase == Phase.ENDED:
        raise WrongPhase("the quiz has ended")
    if state.phase != Phase.LOBBY and not quiz.allow_late_join:
        raise JoinClosed("the quiz has started and does not allow late joining")


def initial_state(quiz: QuizDefinition) -> GameState:
    return GameState(
        quiz_id=quiz.quiz_id,
        phase=Phase.LOBBY,
        question_index=-1,
        question_count=len(quiz.questions),
        open_ms=0,
        close_ms=0,
        leaderboard_visible=True,
        participant_count=0,
        version=0,
    )
