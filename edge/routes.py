"""What each client message does: the type → handler table and the one place errors become frames.

Handlers translate a validated message into gRPC calls and a reply; the rules themselves live in the
services. A player's identity always travels as the socket's player_token, never as a client field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import grpc

from edge import protocol
from edge.limits import ConnectionLimits
from edge.protocol import ClientError
from edge.session import Seat, Session
from edge.telemetry import ClientMessage
from edge.upstream import Upstream
from quizmesh.grpc_errors import ERROR_CODE_METADATA_KEY
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    type: str
    fields: Mapping[str, Any]
    # Once the reply is sent, the socket starts receiving this quiz's updates from this state on.
    attach_from: quiz_pb2.QuizState | None = field(default=None)


Handler = Callable[[Session, Any], Awaitable[Reply]]


# --- players ---


async def join_quiz(session: Session, message: protocol.JoinQuiz) -> Reply:
    response = await session.upstream.join_quiz(
        quiz_pb2.JoinQuizRequest(
            quiz_id=message.quiz_id, nickname=message.nickname, identity_token=message.identity_token or ""
        )
    )
    session.take_player_seat(
        response.state.quiz_id or message.quiz_id, response.player.player_id, response.player_token
    )
    return Reply(
        "joined",
        {
            "player": protocol.player_json(response.player),
            "player_token": response.player_token,
            "state": protocol.state_json(response.state),
        },
        attach_from=response.state,
    )


async def resume(session: Session, message: protocol.Resume) -> Reply:
    response = await session.upstream.resume_quiz(quiz_pb2.ResumeQuizRequest(player_token=message.player_token))
    token = response.player_token or message.player_token
    # A returning player gets everything in one message, their rank included.
    standing = await session.upstream.get_leaderboard(
        leaderboard_pb2.GetLeaderboardRequest(
            quiz_id=response.state.quiz_id, top_n=1, player_id=response.player.player_id
        )
    )
    session.take_player_seat(response.state.quiz_id, response.player.player_id, token)
    return Reply(
        "resumed",
        {
            "player": protocol.player_json(response.player),
            "rank": standing.player_entry.rank if standing.HasField("player_entry") else None,
            "player_token": token,
            "state": protocol.state_json(response.state),
            "answered_current_question": response.answered_current_question,
            "current_answer": (
                protocol.answer_result_json(response.current_answer) if response.HasField("current_answer") else None
            ),
        },
        attach_from=response.state,
    )


def _player_seat(session: Session) -> Seat:
    seat = session.seat
    if seat is None or not seat.player_token:
        raise ClientError("not_joined", "join a quiz (join_quiz or resume) first")
    return seat


async def submit_answer(session: Session, message: protocol.SubmitAnswer) -> Reply:
    seat = _player_seat(session)
    answer = quiz_pb2.Answer(
        player_token=seat.player_token,
        question_index=message.question_index,
        # A single choice also travels as `choice`, for a quiz_svc from before kinds during an upgrade.
        choice=message.value.choice,
        value=message.value,
    )
    # The platform's receipt time, which scores the answer: the same on every retry from this socket,
    # so an outage behind the edge costs the player no points. Never read from the client's message.
    answer.receive_time.FromMilliseconds(seat.receipt_ms(message.question_index))
    outcome = await session.upstream.submit_answer(answer)
    if outcome.error != quiz_pb2.ANSWER_ERROR_UNSPECIFIED:
        code = protocol.answer_error_code(outcome.error)
        raise ClientError(
            code,
            outcome.error_message or f"the answer was refused: {code}",
            retryable=outcome.error == quiz_pb2.ANSWER_ERROR_UNAVAILABLE,
        )
    return Reply("answer_result", protocol.answer_result_json(outcome.result))


async def leave_quiz(session: Session, message: protocol.LeaveQuiz) -> Reply:
    seat = _player_seat(session)
    await session.upstream.leave_quiz(quiz_pb2.LeaveQuizRequest(player_token=seat.player_token))
    session.leave_seat()
    return Reply("left", {})


# --- hosts ---


async def create_quiz(session: Session, message: protocol.CreateQuiz) -> Reply:
    request = quiz_pb2.CreateQuizRequest(title=message.title, questions=message.questions)
    if message.allow_late_join is not None:
        request.allow_late_join = message.allow_late_join
    response = await session.upstream.create_quiz(request)
    return Reply("quiz_created", {"quiz": protocol.quiz_json(response.quiz), "host_token": response.host_token})


def _host_fields(host: protocol.HostCredential) -> dict[str, str]:
    """The credential as every host request of QuizService carries it."""
    return {"host_token": host.host_token or "", "identity_token": host.identity_token or ""}


async def host_quiz(session: Session, message: protocol.HostQuiz) -> Reply:
    host = message.credential
    found = await session.upstream.get_quiz(quiz_pb2.GetQuizRequest(quiz_id=message.quiz_id, **_host_fields(host)))
    if not found.host_verified:
        # Signed in only, the token was valid (quiz_svc refuses a bad one with invalid_identity) but its
        # user does not host this session.
        raise ClientError(
            "permission_denied",
            "the host_token is not valid for this quiz"
            if host.host_token
            else "the identity token's user does not host this session: sign in as the user who started it, "
            "or present the session's host credential",
        )
    quiz = found.quiz
    state = (await session.upstream.get_quiz_state(quiz_pb2.GetQuizStateRequest(quiz_id=message.quiz_id))).state
    session.take_host_seat(message.quiz_id, host)
    return Reply(
        "hosting",
        {"state": protocol.state_json(state), "quiz": protocol.quiz_json(quiz)},
        attach_from=state,
    )


async def start_session(session: Session, message: protocol.StartSession) -> Reply:
    """A new session of an authored quiz, for its owner; the socket hosts it once it sends host_quiz."""
    started = await session.upstream.start_session(
        quiz_pb2.StartSessionRequest(quiz_id=message.quiz_id, **_host_fields(message.credential))
    )
    return Reply(
        "session_started",
        {
            "session": protocol.session_json(started.session),
            "quiz": protocol.quiz_json(started.quiz),
            "host_token": started.host_token,
        },
    )


def _host_credentials(session: Session, target: protocol.HostTarget) -> tuple[str, protocol.HostCredential]:
    """The quiz and the credential a host action acts with: what the message names, else the socket's
    `host_quiz`."""
    seat = session.seat
    hosted = seat.host if seat is not None else None
    quiz_id = target.quiz_id or (seat.quiz_id if seat is not None and hosted is not None else None)
    named = target.credential
    host = named if named.host_token or named.identity_token else hosted
    if not quiz_id or host is None:
        raise ClientError("not_hosting", "send host_quiz first, or give quiz_id and host_token (or identity_token)")
    return quiz_id, host


class _HostResponse(Protocol):
    """What every host RPC answers with: the quiz's state after the action."""

    @property
    def state(self) -> quiz_pb2.QuizState: ...


async def _host_call(session: Session, action: str, response: Awaitable[_HostResponse]) -> Reply:
    state = (await response).state
    session.fanout.observe_state(state)
    return Reply("host_ack", {"action": action, "state": protocol.state_json(state)})


# The host actions of HostAction: each one's QuizService call, given the quiz, the host's credential
# (its fields as every host request names them) and the question it names (next and close name the
# question they mean, so a retry that already took effect is told so).
_HostRpc = Callable[[Upstream, str, Mapping[str, str], int | None], Awaitable[_HostResponse]]
_HOST_RPCS: Final[Mapping[str, _HostRpc]] = {
    "start_quiz": lambda upstream, quiz_id, host, _: upstream.start_quiz(
        quiz_pb2.StartQuizRequest(quiz_id=quiz_id, **host)
    ),
    "next_question": lambda upstream, quiz_id, host, index: upstream.next_question(
        quiz_pb2.NextQuestionRequest(quiz_id=quiz_id, question_index=index, **host)
    ),
    "end_quiz": lambda upstream, quiz_id, host, _: upstream.end_quiz(quiz_pb2.EndQuizRequest(quiz_id=quiz_id, **host)),
}


async def host_action(session: Session, message: protocol.HostAction) -> Reply:
    quiz_id, host = _host_credentials(session, message.target)
    if message.action != "close_question":
        rpc = _HOST_RPCS[message.action]
        return await _host_call(
            session, message.action, rpc(session.upstream, quiz_id, _host_fields(host), message.question_index)
        )
    # The one host action whose reply carries more than the state: the closed question's results.
    response = await session.upstream.close_question(
        quiz_pb2.CloseQuestionRequest(quiz_id=quiz_id, question_index=message.question_index, **_host_fields(host))
    )
    session.fanout.observe_state(response.state)
    fields = {
        "action": message.action,
        "state": protocol.state_json(response.state),
        "results": protocol.results_json(response.results),
    }
    return Reply("host_ack", fields)


async def set_leaderboard_visibility(session: Session, message: protocol.SetLeaderboardVisibility) -> Reply:
    quiz_id, host = _host_credentials(session, message.target)
    request = quiz_pb2.SetLeaderboardVisibilityRequest(quiz_id=quiz_id, visible=message.visible, **_host_fields(host))
    return await _host_call(session, "set_leaderboard_visibility", session.upstream.set_leaderboard_visibility(request))


async def kick_player(session: Session, message: protocol.KickPlayer) -> Reply:
    quiz_id, host = _host_credentials(session, message.target)
    request = quiz_pb2.KickPlayerRequest(quiz_id=quiz_id, player_id=message.player_id, **_host_fields(host))
    return await _host_call(session, "kick_player", session.upstream.kick_player(request))


# --- anyone ---


async def get_state(session: Session, message: protocol.GetState) -> Reply:
    quiz_id = message.quiz_id or (session.seat.quiz_id if session.seat else None)
    if not quiz_id:
        raise ClientError("not_joined", "join or host a quiz first, or give quiz_id")
    state = (await session.upstream.get_quiz_state(quiz_pb2.GetQuizStateRequest(quiz_id=quiz_id))).state
    session.fanout.observe_state(state)
    return Reply("state", {"state": protocol.state_json(state)})


async def ping(session: Session, message: protocol.Ping) -> Reply:
    return Reply("pong", {"server_time_ms": time.time_ns() // 1_000_000})


ROUTES: Final[Mapping[str, Handler]] = {
    "join_quiz": join_quiz,
    "resume": resume,
    "submit_answer": submit_answer,
    "leave_quiz": leave_quiz,
    "create_quiz": create_quiz,
    "host_quiz": host_quiz,
    "start_session": start_session,
    "start_quiz": host_action,
    "next_question": host_action,
    "close_question": host_action,
    "end_quiz": host_action,
    "set_leaderboard_visibility": set_leaderboard_visibility,
    "kick_player": kick_player,
    "get_state": get_state,
    "ping": ping,
}


# --- errors ---

_STATUS_CODES: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_argument",
    grpc.StatusCode.FAILED_PRECONDITION: "failed_precondition",
    grpc.StatusCode.ALREADY_EXISTS: "already_exists",
    grpc.StatusCode.OUT_OF_RANGE: "invalid_argument",
}
_RETRYABLE: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "unavailable",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limited",
}
# Reasons that name a client code of their own: a credential whose player is no longer in the quiz is
# refused the same way whether it answers or resumes, and kept apart from a host credential's refusal.
_CODE_OF_REASON: Final[Mapping[str, str]] = {
    "player_left": "not_a_participant",
    "player_removed": "not_a_participant",
}


def rpc_error(code: grpc.StatusCode, details: str, reason: str = "") -> ClientError:
    """Maps a service's status, and the stable error code it sent in its trailer (`reason`), to a stable
    client code, keeping its actionable message; transport details of unavailability stay in the edge's
    log. The message's text is never read for a code: what was not found is the trailer's to say
    (quiz_svc's `*_not_found`), and a NOT_FOUND without one is about the quiz, which every call names."""
    if code == grpc.StatusCode.NOT_FOUND:
        not_found = reason if reason.endswith("_not_found") else "quiz_not_found"
        return ClientError(not_found, details or "the quiz does not exist")
    if reason in _CODE_OF_REASON:
        return ClientError(_CODE_OF_REASON[reason], details, reason=reason)
    if code in _STATUS_CODES:
        return ClientError(_STATUS_CODES[code], details or code.name.lower(), reason=reason)
    if code in _RETRYABLE:
        return ClientError(_RETRYABLE[code], "a service is busy or unreachable; retrying is safe", retryable=True)
    return ClientError("internal", "the request failed inside the service")


def _reason(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_CODE_METADATA_KEY and isinstance(value, str):
            return value
    return ""


async def dispatch(session: Session, raw: str | bytes, limits: ConnectionLimits | None = None) -> None:
    """Handles one text frame. Every failure becomes an error frame; the connection stays usable."""
    with session.telemetry.client_message() as handled:
        await _handle(session, raw, limits, handled)


async def _handle(session: Session, raw: str | bytes, limits: ConnectionLimits | None, handled: ClientMessage) -> None:
    request_id: protocol.RequestId = None
    try:
        envelope = protocol.parse_message(raw)
        request_id = envelope.request_id
        handled.message_type = envelope.type
        if limits is not None:
            limits.admit(envelope.type)
        reply = await ROUTES[envelope.type](session, envelope.message)
    except ClientError as exc:
        exc.request_id = exc.request_id if exc.request_id is not None else request_id
        handled.error_code = exc.code
        await session.send(protocol.encode_error(exc))
        return
    except grpc.aio.AioRpcError as exc:
        error = rpc_error(exc.code(), exc.details() or "", _reason(exc))
        if error.code in ("internal", "unavailable"):
            log.warning("upstream call failed: %s %s", exc.code(), exc.details())
        error.request_id = request_id
        handled.error_code = error.code
        await session.send(protocol.encode_error(error))
        return
    except Exception:
        log.exception("handling a client message failed")
        handled.error_code = "internal"
        await session.send(
            protocol.encode_error(
                ClientError("internal", "the edge failed to handle the message", request_id=request_id)
            )
        )
        return
    await session.send(protocol.encode(reply.type, request_id, reply.fields))
    if reply.attach_from is not None:
        session.attach(reply.attach_from)
