"""The client protocol: JSON text frames in one envelope `{"type", "id"?, ...fields}`.

Everything here is pure: parsing validates a frame into a typed message or raises `ClientError` with a
stable code; encoding turns gRPC messages into the JSON clients see. Nothing here may leak a question's
correct choices to players: `PlayerQuestion` has none, and results only come with a closed question.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from edge import schema as client_schema
from quizmesh import answer_values
from quizmesh.quiz.v1 import answer_value_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz_document import DocumentError, question_from_json, question_to_json
from quizmesh.quiz_names import KIND_NAMES, PHASE_NAMES, POINTS_NAMES

RequestId = str | int | None

MAX_REQUEST_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 4096
MAX_TOKEN_LENGTH: Final = 4096
INT32_MAX: Final = 2**31 - 1


class ClientError(Exception):
    """A request the edge or a service refused; becomes an `error` frame and the socket stays open."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        request_id: RequestId = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.request_id = request_id
        self.reason = reason  # the service's finer code (e.g. "nickname_taken" under "already_exists")


def invalid_field(name: str, expected: str) -> ClientError:
    return ClientError("invalid_field", f"field {name!r} is required and must be {expected}")


# --- client → edge messages ---


@dataclass(frozen=True)
class JoinQuiz:
    quiz_id: str
    nickname: str
    # The application's identity token of a signed-in player (issue 16); None for an anonymous one.
    identity_token: str | None = None


@dataclass(frozen=True)
class Resume:
    player_token: str


@dataclass(frozen=True)
class SubmitAnswer:
    question_index: int
    value: answer_value_pb2.AnswerValue


@dataclass(frozen=True)
class LeaveQuiz:
    pass


@dataclass(frozen=True)
class CreateQuiz:
    title: str
    questions: tuple[quiz_pb2.Question, ...]
    allow_late_join: bool | None


@dataclass(frozen=True)
class HostCredential:
    """What proves a request hosts a session: the session's host credential, or the identity token of a
    signed-in user (issue 16), whom quiz_svc checks against the session's host. At least one is given."""

    host_token: str | None
    identity_token: str | None = None


@dataclass(frozen=True)
class HostQuiz:
    quiz_id: str
    credential: HostCredential


@dataclass(frozen=True)
class StartSession:
    """Run an authored quiz again (issue 16): a new session with its own join code, for the quiz's owner."""

    quiz_id: str
    credential: HostCredential


@dataclass(frozen=True)
class HostTarget:
    """The quiz a host action is for; None fields fall back to the socket's `host_quiz`."""

    quiz_id: str | None
    credential: HostCredential


@dataclass(frozen=True)
class HostAction:
    """start_quiz, next_question, close_question and end_quiz: an action on the hosted quiz.

    next_question and close_question may name their question, so that repeating one whose reply was
    lost is safe (it succeeds once the question is already opened, or closed)."""

    action: str
    target: HostTarget
    question_index: int | None = None


@dataclass(frozen=True)
class SetLeaderboardVisibility:
    visible: bool
    target: HostTarget


@dataclass(frozen=True)
class KickPlayer:
    player_id: str
    target: HostTarget


@dataclass(frozen=True)
class GetState:
    quiz_id: str | None


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = (
    JoinQuiz
    | Resume
    | SubmitAnswer
    | LeaveQuiz
    | CreateQuiz
    | HostQuiz
    | StartSession
    | HostAction
    | SetLeaderboardVisibility
    | KickPlayer
    | GetState
    | Ping
)


@dataclass(frozen=True)
class Envelope:
    type: str
    request_id: RequestId
    message: ClientMessage


# --- field readers ---

Fields = Mapping[str, Any]


def _str(fields: Fields, name: str, *, max_length: int = MAX_TEXT_LENGTH, at: str = "") -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise invalid_field(at + name, f"a non-empty string of at most {max_length} characters")
    return value


def _optional_str(fields: Fields, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    if fields.get(name) is None:
        return None
    return _str(fields, name, max_length=max_length)


def _is_int(value: object, minimum: int = 0, maximum: int = INT32_MAX) -> bool:
    # bool is an int subclass; `true` is not a question index.
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def _int(fields: Fields, name: str, *, minimum: int = 0, maximum: int = INT32_MAX, at: str = "") -> int:
    value = fields.get(name)
    if not _is_int(value, minimum, maximum):
        raise invalid_field(at + name, f"an integer from {minimum} to {maximum}")
    assert isinstance(value, int)
    return value


def _optional_int(fields: Fields, name: str) -> int | None:
    if fields.get(name) is None:
        return None
    return _int(fields, name)


def _bool(fields: Fields, name: str) -> bool:
    value = fields.get(name)
    if not isinstance(value, bool):
        raise invalid_field(name, "true or false")
    return value


def _host_credential(fields: Fields) -> HostCredential:
    return HostCredential(
        host_token=_optional_str(fields, "host_token", max_length=MAX_TOKEN_LENGTH),
        identity_token=_optional_str(fields, "identity_token", max_length=MAX_TOKEN_LENGTH),
    )


_HOST_CREDENTIALS: Final = ("host_token", "identity_token")


def _required_credential(fields: Fields) -> HostCredential:
    """Either credential, or both; each one given must be a token (null is not "not given" here)."""
    given = {name: _str(fields, name, max_length=MAX_TOKEN_LENGTH) for name in _HOST_CREDENTIALS if name in fields}
    if not given:
        raise invalid_field("host_token", f"a non-empty string of at most {MAX_TOKEN_LENGTH} characters")
    return HostCredential(given.get("host_token"), given.get("identity_token"))


def _host_quiz(fields: Fields) -> HostQuiz:
    quiz_id = _str(fields, "quiz_id")
    return HostQuiz(quiz_id, _required_credential(fields))


def _start_session(fields: Fields) -> StartSession:
    quiz_id = _str(fields, "quiz_id")
    return StartSession(quiz_id, _required_credential(fields))


def _host_target(fields: Fields) -> HostTarget:
    return HostTarget(quiz_id=_optional_str(fields, "quiz_id"), credential=_host_credential(fields))


def _question(raw: object, at: str) -> quiz_pb2.Question:
    try:
        return question_from_json(raw, at + ".")
    except DocumentError as exc:
        raise invalid_field(exc.where, exc.problem) from None


# An answer's members, in the order the first one present is taken (docs/protocol.md, submit_answer):
# each kind's own before `choice`, which clients of single choices send.
_ANSWER_MEMBERS: Final = ("choices", "truth", "text", "order", "number", "choice")
MAX_ANSWER_TEXT: Final = 1000
_EXPECTED_ANSWER: Final[Mapping[str, str]] = {
    "choice": "an integer from 0 to 2147483647",
    "choices": "a list of choice indices",
    "truth": "true or false",
    "text": f"a string of at most {MAX_ANSWER_TEXT} characters",
    "order": "a list of item positions",
    "number": "a number, or a decimal number as a string of at most 64 characters",
}


def _answer_fits(member: str, value: object) -> bool:
    if member == "choice":
        return _is_int(value)
    if member in ("choices", "order"):
        return isinstance(value, list) and all(_is_int(v) for v in value)
    if member == "truth":
        return isinstance(value, bool)
    if member == "text":
        return isinstance(value, str) and len(value) <= MAX_ANSWER_TEXT
    return (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and len(value) <= 64
    )


def _submit_answer(fields: Fields) -> SubmitAnswer:
    index = _int(fields, "question_index")
    given = [m for m in _ANSWER_MEMBERS if m in fields]
    if not given:
        raise invalid_field("choice", _EXPECTED_ANSWER["choice"])
    for member in given:
        if not _answer_fits(member, fields[member]):
            raise invalid_field(member, _EXPECTED_ANSWER[member])
    member = given[0]
    value = fields[member]
    if member == "number":
        value = answer_values.decimal_text(value)
    return SubmitAnswer(index, answer_values.from_json({member: value}))


def _create_quiz(fields: Fields) -> CreateQuiz:
    questions = fields.get("questions")
    if not isinstance(questions, list) or not questions:
        raise invalid_field("questions", "a non-empty list of questions")
    late = fields.get("allow_late_join")
    if late is not None and not isinstance(late, bool):
        raise invalid_field("allow_late_join", "true or false")
    return CreateQuiz(
        title=_str(fields, "title"),
        questions=tuple(_question(q, f"questions[{i}]") for i, q in enumerate(questions)),
        allow_late_join=late,
    )


def _host_action(action: str) -> Callable[[Fields], HostAction]:
    return lambda fields: HostAction(action, _host_target(fields))


def _question_action(action: str) -> Callable[[Fields], HostAction]:
    return lambda fields: HostAction(action, _host_target(fields), _optional_int(fields, "question_index"))


# The dispatch table: every client message type and how its fields are read.
PARSERS: Final[Mapping[str, Callable[[Fields], ClientMessage]]] = {
    "join_quiz": lambda f: JoinQuiz(
        _str(f, "quiz_id"),
        _str(f, "nickname", max_length=256),
        _optional_str(f, "identity_token", max_length=MAX_TOKEN_LENGTH),
    ),
    "resume": lambda f: Resume(_str(f, "player_token", max_length=MAX_TOKEN_LENGTH)),
    "submit_answer": _submit_answer,
    "leave_quiz": lambda f: LeaveQuiz(),
    "create_quiz": _create_quiz,
    "host_quiz": _host_quiz,
    "start_session": _start_session,
    "start_quiz": _host_action("start_quiz"),
    "next_question": _question_action("next_question"),
    "close_question": _question_action("close_question"),
    "end_quiz": _host_action("end_quiz"),
    "set_leaderboard_visibility": lambda f: SetLeaderboardVisibility(_bool(f, "visible"), _host_target(f)),
    "kick_player": lambda f: KickPlayer(_str(f, "player_id"), _host_target(f)),
    "get_state": lambda f: GetState(_optional_str(f, "quiz_id")),
    "ping": lambda f: Ping(),
}


def parse_message(raw: str | bytes) -> Envelope:
    """Validates one text frame. Raises ClientError, carrying the request id when one was readable."""
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError("malformed_json", "the message is not valid JSON") from None
    violation = client_schema.violation(fields)
    if violation is not None:
        raise ClientError(violation.code, violation.message, request_id=violation.request_id)
    return parse_fields(fields)


def parse_fields(fields: object) -> Envelope:
    """Reads a decoded frame into a typed message; parse_message has checked it against the schema first."""
    if not isinstance(fields, dict):
        raise ClientError("invalid_message", "the message must be a JSON object with a 'type' field")
    request_id = fields.get("id")
    if request_id is not None and (
        isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or (isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID_LENGTH)
    ):
        raise invalid_field("id", f"a string of at most {MAX_REQUEST_ID_LENGTH} characters or an integer")
    message_type = fields.get("type")
    if not isinstance(message_type, str):
        raise ClientError("invalid_message", "the message must have a string 'type' field", request_id=request_id)
    parser = PARSERS.get(message_type)
    if parser is None:
        raise ClientError("unknown_type", f"unknown message type {message_type[:64]!r}", request_id=request_id)
    try:
        return Envelope(message_type, request_id, parser(fields))
    except ClientError as exc:
        exc.request_id = request_id
        raise


# --- edge → client encoding ---


def encode(message_type: str, request_id: RequestId, fields: Mapping[str, Any]) -> bytes:
    if request_id is None:
        return orjson.dumps({"type": message_type, **fields})
    return orjson.dumps({"type": message_type, "id": request_id, **fields})


def encode_error(error: ClientError) -> bytes:
    fields: dict[str, Any] = {"code": error.code, "message": error.message, "retryable": error.retryable}
    if error.reason and error.reason != error.code:
        fields["reason"] = error.reason
    return encode("error", error.request_id, fields)


def timestamp_ms(ts: Any) -> int:
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def state_json(state: quiz_pb2.QuizState) -> dict[str, Any]:
    question = None
    if state.HasField("question"):
        q = state.question
        question = {
            "index": q.index,
            "kind": KIND_NAMES.get(q.kind, "single_choice"),
            "text": q.text,
            "choices": list(q.choices),
            "time_limit_seconds": q.time_limit_seconds,
            "points": POINTS_NAMES.get(q.points_mode, "standard"),
            "open_time_ms": timestamp_ms(q.open_time) if q.HasField("open_time") else None,
            "close_time_ms": timestamp_ms(q.close_time) if q.HasField("close_time") else None,
        }
        if q.items:
            question["items"] = list(q.items)
        if q.HasField("estimate"):
            question["estimate"] = {"min": q.estimate.min, "max": q.estimate.max}
        if q.image:
            question["image"] = q.image
        if q.audio:
            question["audio"] = q.audio
        if q.choice_images:
            question["choice_images"] = list(q.choice_images)
    return {
        "quiz_id": state.quiz_id,
        "title": state.title,
        "phase": PHASE_NAMES.get(state.phase, "lobby"),
        "question_index": state.question_index,
        "question_count": state.question_count,
        "question": question,
        "leaderboard_visible": state.leaderboard_visible,
        "participant_count": state.participant_count,
        "server_time_ms": timestamp_ms(state.server_time),
    }


def player_json(player: quiz_pb2.Player) -> dict[str, Any]:
    return {
        "player_id": player.player_id,
        "nickname": player.nickname,
        "score": player.score,
        "streak": player.streak,
    }


def answer_result_json(result: quiz_pb2.AnswerResult) -> dict[str, Any]:
    fields = {
        "correct": result.correct,
        "points": result.points,
        "total_score": result.total_score,
        "streak": result.streak,
        "streak_bonus": result.streak_bonus,
        "response_time_ms": result.response_time_ms,
        "credit": result.credit or ("1" if result.correct else "0"),
        "answer": answer_values.to_json(result.value) if result.HasField("value") else None,
    }
    if result.accepted_answer:
        fields["accepted_answer"] = result.accepted_answer
    return fields


def results_json(results: quiz_pb2.QuestionResults) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "question_index": results.question_index,
        "kind": KIND_NAMES.get(results.kind, "single_choice"),
        "correct_choices": list(results.correct_choices),
        "choice_counts": list(results.choice_counts),
        "tallies": dict(results.tallies),
    }
    if results.HasField("question"):
        fields["question"] = question_to_json(results.question)
    return fields


def quiz_json(quiz: quiz_pb2.Quiz) -> dict[str, Any]:
    """A quiz as its host sees it, correct choices included; never sent to a player socket."""
    return {
        "quiz_id": quiz.quiz_id,
        "title": quiz.title,
        "allow_late_join": quiz.allow_late_join,
        "create_time_ms": timestamp_ms(quiz.create_time),
        "questions": [question_to_json(q) for q in quiz.questions],
    }


def session_json(session: quiz_pb2.Session) -> dict[str, Any]:
    """A session of an authored quiz: its join code (`session_id`), the quiz it runs and where it stands."""
    return {
        "session_id": session.session_id,
        "quiz_id": session.quiz_id,
        "title": session.title,
        "create_time_ms": timestamp_ms(session.create_time),
        "phase": PHASE_NAMES.get(session.phase, "lobby"),
    }


def answer_error_code(error: quiz_pb2.AnswerError.ValueType) -> str:
    """ANSWER_ERROR_QUESTION_CLOSED → "question_closed"."""
    return str(quiz_pb2.AnswerError.Name(error)).removeprefix("ANSWER_ERROR_").lower()
