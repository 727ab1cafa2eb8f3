"""How service statuses become client error codes."""

from __future__ import annotations

import grpc
import orjson
import pytest

from edge import protocol
from edge.routes import rpc_error


@pytest.mark.parametrize(
    ("status", "details", "code", "retryable"),
    [
        (grpc.StatusCode.NOT_FOUND, "quiz q-1 does not exist", "quiz_not_found", False),
        (grpc.StatusCode.NOT_FOUND, "", "quiz_not_found", False),
        (grpc.StatusCode.PERMISSION_DENIED, "not the host", "permission_denied", False),
        (grpc.StatusCode.UNAUTHENTICATED, "expired", "unauthenticated", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "nickname too long", "invalid_argument", False),
        (grpc.StatusCode.FAILED_PRECONDITION, "already started", "failed_precondition", False),
        (grpc.StatusCode.UNAVAILABLE, "connect failed", "unavailable", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", "unavailable", True),
        (grpc.StatusCode.INTERNAL, "boom", "internal", False),
    ],
)
def test_status_codes_map_to_stable_client_codes(
    status: grpc.StatusCode, details: str, code: str, retryable: bool
) -> None:
    error = rpc_error(status, details)
    assert (error.code, error.retryable) == (code, retryable)


def test_actionable_details_reach_the_client_but_transport_details_do_not() -> None:
    assert rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "the quiz has already started").message == (
        "the quiz has already started"
    )
    assert "10.0.0.7" not in rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to 10.0.0.7").message


def test_the_services_error_code_names_what_was_not_found_and_refines_other_statuses() -> None:
    assert rpc_error(grpc.StatusCode.NOT_FOUND, "no active player 'x'", "player_not_found").code == "player_not_found"
    taken = rpc_error(grpc.StatusCode.ALREADY_EXISTS, "the nickname 'ann' is taken", "nickname_taken")
    assert (taken.code, taken.reason) == ("already_exists", "nickname_taken")
    frame = orjson.loads(protocol.encode_error(taken))
    assert (frame["code"], frame["reason"]) == ("already_exists", "nickname_taken")
    assert "reason" not in orjson.loads(protocol.encode_error(rpc_error(grpc.StatusCode.UNAUTHENTICATED, "x")))


def test_what_was_not_found_is_the_trailers_to_say_never_the_messages() -> None:
    assert rpc_error(grpc.StatusCode.NOT_FOUND, "player p-1 is not in quiz q-1").code == "quiz_not_found"
    assert rpc_error(grpc.StatusCode.NOT_FOUND, "quiz q-1 has no such", "question_not_found").code == (
        "question_not_found"
    )


@pytest.mark.parametrize("reason", ["player_left", "player_removed"])
def test_a_player_no_longer_in_the_quiz_is_not_a_participant_whatever_the_status(reason: str) -> None:
    error = rpc_error(grpc.StatusCode.PERMISSION_DENIED, "you left this quiz", reason)
    assert (error.code, error.reason, error.message) == ("not_a_participant", reason, "you left this quiz")
    assert rpc_error(grpc.StatusCode.PERMISSION_DENIED, "not the host", "permission_denied").code == "permission_denied"
