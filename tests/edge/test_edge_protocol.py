"""Parsing and encoding of client messages: pure functions, no sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from edge import protocol, routes
from edge.protocol import ClientError
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1.answer_value_pb2 import AnswerValue, ChoiceSet, ItemOrder


def _error(raw: str | bytes) -> ClientError:
    with pytest.raises(ClientError) as caught:
        protocol.parse_message(raw)
    return caught.value


def test_every_message_type_has_a_handler() -> None:
    assert set(routes.ROUTES) == set(protocol.PARSERS)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        ("[1, 2]", "invalid_message"),
        ('"join_quiz"', "invalid_message"),
        ("{}", "invalid_message"),
        ('{"type": 7}', "invalid_message"),
        ('{"type": "fly_to_moon"}', "unknown_type"),
    ],
)
def test_bad_envelopes_get_stable_codes(raw: str | bytes, code: str) -> None:
    assert _error(raw).code == code


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "join_quiz", "nickname": "ann"}, "quiz_id"),
        ({"type": "join_quiz", "quiz_id": 12, "nickname": "ann"}, "quiz_id"),
        ({"type": "join_quiz", "quiz_id": "q", "nickname": ""}, "nickname"),
        ({"type": "resume"}, "player_token"),
        ({"type": "submit_answer", "question_index": 0}, "choice"),
        ({"type": "submit_answer", "question_index": "0", "choice": 1}, "question_index"),
        ({"type": "submit_answer", "question_index": 0, "choice": True}, "choice"),
        ({"type": "submit_answer", "question_index": -1, "choice": 1}, "question_index"),
        ({"type": "submit_answer", "question_index": 0, "choice": 2**40}, "choice"),
        ({"type": "set_leaderboard_visibility", "visible": "yes"}, "visible"),
        ({"type": "kick_player"}, "player_id"),
        ({"type": "start_quiz", "quiz_id": 5}, "quiz_id"),
        ({"type": "host_quiz", "quiz_id": "q"}, "host_token"),
        ({"type": "host_quiz", "quiz_id": "q", "host_token": None, "identity_token": None}, "host_token"),
        ({"type": "host_quiz", "quiz_id": "q", "identity_token": ""}, "identity_token"),
        ({"type": "start_quiz", "identity_token": 7}, "identity_token"),
        ({"type": "create_quiz", "title": "t", "questions": []}, "questions"),
        ({"type": "create_quiz", "title": "t", "questions": [{}]}, "questions[0].choices"),
        ({"type": "ping", "id": {"nested": 1}}, "id"),
        ({"type": "ping", "id": False}, "id"),
    ],
)
def test_missing_or_mistyped_fields_name_the_field(message: dict[str, Any], field: str) -> None:
    error = _error(orjson.dumps(message))
    assert error.code == "invalid_field"
    assert repr(field) in error.message


def test_question_fields_are_named_with_their_position() -> None:
    good = {"text": "2+2?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 20}
    bad = {**good, "time_limit_seconds": "soon"}
    error = _error(orjson.dumps({"type": "create_quiz", "title": "t", "questions": [good, bad]}))
    assert error.code == "invalid_field"
    assert "'questions[1].time_limit_seconds'" in error.message


def test_errors_after_the_envelope_keep_the_request_id() -> None:
    assert _error('{"type": "nope", "id": "r1"}').request_id == "r1"
    assert _error('{"type": "submit_answer", "id": 7}').request_id == 7


def test_valid_messages_become_typed_commands() -> None:
    envelope = protocol.parse_message('{"type": "submit_answer", "id": "a1", "question_index": 2, "choice": 3}')
    assert envelope == protocol.Envelope("submit_answer", "a1", protocol.SubmitAnswer(2, AnswerValue(choice=3)))

    create = protocol.parse_message(
        orjson.dumps(
            {
                "type": "create_quiz",
                "title": "Capitals",
                "questions": [
                    {
                        "text": "Capital of France?",
                        "choices": ["Paris", "Rome"],
                        "correct_choices": [0],
                        "time_limit_seconds": 20,
                        "points": "double",
                    }
                ],
                "allow_late_join": False,
            }
        )
    ).message
    assert isinstance(create, protocol.CreateQuiz)
    assert create.questions[0].points_mode == quiz_pb2.POINTS_MODE_DOUBLE
    assert create.allow_late_join is False

    host = protocol.parse_message('{"type": "close_question"}').message
    assert host == protocol.HostAction("close_question", protocol.HostTarget(None, protocol.HostCredential(None)))

    signed_in = protocol.parse_message('{"type": "host_quiz", "quiz_id": "Q1", "identity_token": "eyJ.a.b"}').message
    assert signed_in == protocol.HostQuiz("Q1", protocol.HostCredential(None, "eyJ.a.b"))


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    assert protocol.parse_message('{"type": "ping", "client": "v2"}').message == protocol.Ping()


def test_replies_echo_the_request_id_only_when_given() -> None:
    assert orjson.loads(protocol.encode("pong", None, {"server_time_ms": 1})) == {"type": "pong", "server_time_ms": 1}
    assert orjson.loads(protocol.encode("left", "x", {})) == {"type": "left", "id": "x"}
    error = orjson.loads(protocol.encode_error(ClientError("unavailable", "retry", retryable=True, request_id=3)))
    assert error == {"type": "error", "id": 3, "code": "unavailable", "message": "retry", "retryable": True}


def test_state_json_shows_the_question_without_correct_choices() -> None:
    state = quiz_pb2.QuizState(
        quiz_id="q1",
        title="T",
        phase=quiz_pb2.QUIZ_PHASE_QUESTION_OPEN,
        question_index=0,
        question_count=3,
        question=quiz_pb2.PlayerQuestion(
            index=0, text="?", choices=["a", "b"], time_limit_seconds=20, points_mode=quiz_pb2.POINTS_MODE_DOUBLE
        ),
        leaderboard_visible=True,
        participant_count=4,
    )
    state.question.open_time.FromMilliseconds(1_000)
    state.question.close_time.FromMilliseconds(21_000)
    state.server_time.FromMilliseconds(1_500)
    encoded = protocol.state_json(state)
    assert encoded == {
        "quiz_id": "q1",
        "title": "T",
        "phase": "question_open",
        "question_index": 0,
        "question_count": 3,
        "question": {
            "index": 0,
            "kind": "single_choice",
            "text": "?",
            "choices": ["a", "b"],
            "time_limit_seconds": 20,
            "points": "double",
            "open_time_ms": 1_000,
            "close_time_ms": 21_000,
        },
        "leaderboard_visible": True,
        "participant_count": 4,
        "server_time_ms": 1_500,
    }
    assert b"correct" not in orjson.dumps(encoded)


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        ({"choice": 1}, AnswerValue(choice=1)),
        ({"choices": [2, 0]}, AnswerValue(choices=ChoiceSet(choices=[2, 0]))),
        ({"truth": False}, AnswerValue(truth=False)),
        ({"text": " Éléphant "}, AnswerValue(text=" Éléphant ")),
        ({"order": [1, 0]}, AnswerValue(order=ItemOrder(positions=[1, 0]))),
        ({"number": 0.1}, AnswerValue(number="0.1")),
        ({"number": 1969}, AnswerValue(number="1969")),
        ({"number": "-3.25"}, AnswerValue(number="-3.25")),
        # A client of single choices may still send choice beside a kind's member: the member counts.
        ({"choice": 0, "text": "colour"}, AnswerValue(text="colour")),
    ],
)
def test_each_kinds_answer_is_read_into_its_value(fields: dict[str, object], value: AnswerValue) -> None:
    envelope = protocol.parse_message(orjson.dumps({"type": "submit_answer", "question_index": 0, **fields}))
    assert envelope.message == protocol.SubmitAnswer(0, value)


def test_an_answer_without_any_member_names_choice() -> None:
    error = _error(orjson.dumps({"type": "submit_answer", "question_index": 0}))
    assert (error.code, error.message) == (
        "invalid_field",
        "field 'choice' is required and must be an integer from 0 to 2147483647",
    )


def test_lobby_state_has_no_question() -> None:
    state = quiz_pb2.QuizState(quiz_id="q1", phase=quiz_pb2.QUIZ_PHASE_LOBBY, question_index=-1)
    assert protocol.state_json(state)["question"] is None
    assert protocol.state_json(state)["phase"] == "lobby"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (quiz_pb2.ANSWER_ERROR_QUESTION_CLOSED, "question_closed"),
        (quiz_pb2.ANSWER_ERROR_ALREADY_ANSWERED, "already_answered"),
        (quiz_pb2.ANSWER_ERROR_NOT_A_PARTICIPANT, "not_a_participant"),
        (quiz_pb2.ANSWER_ERROR_UNAVAILABLE, "unavailable"),
    ],
)
def test_answer_errors_become_lower_snake_codes(error: quiz_pb2.AnswerError.ValueType, code: str) -> None:
    assert protocol.answer_error_code(error) == code
