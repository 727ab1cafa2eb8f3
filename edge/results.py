"""The results export for a quiz's host: `GET /quizzes/{quiz_id}/results.csv`; running a quiz again:
`POST /quizzes/{quiz_id}/sessions`; and a signed-in learner's history: `GET /api/v1/users/me/results`.

The rows are `quizmesh.results.results_csv`'s, from what persistence_svc stored. The host proves who
they are with `Authorization: Bearer <host_token>` or, signed in, `Bearer <identity token>` (verified by
quiz_svc), the learner with `Authorization: Bearer <identity token>` (verified by persistence_svc), never
in the URL, where it would end up in logs and browser history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from google.protobuf import json_format

from edge.upstream import Upstream
from quizmesh.identity import is_identity_token
from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.results import read_stored_quiz, results_csv


def _bearer(request: web.Request, what: str) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise web.HTTPUnauthorized(
            text=f"send the {what} as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="quizmesh"'},
        )
    return token.strip()


def _host_credential(token: str) -> dict[str, str]:
    """A host's bearer token as the host requests of QuizService carry it: an identity token (RS256 or
    ES256) in `identity_token`, one of quizmesh's host credentials (HS256) in `host_token`. Either way
    quiz_svc verifies it; the header only says which field it belongs in."""
    return {"identity_token": token} if is_identity_token(token) else {"host_token": token}


def _http_error(exc: grpc.aio.AioRpcError) -> web.HTTPException:
    code = exc.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return web.HTTPUnauthorized(
            text=exc.details() or "the credential was refused", headers={"WWW-Authenticate": 'Bearer realm="quizmesh"'}
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return web.HTTPNotFound(text="the quiz does not exist")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return web.HTTPForbidden(text=exc.details() or "the credential does not own this quiz")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return web.HTTPBadRequest(text=exc.details() or "the request was refused as invalid")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return web.HTTPServiceUnavailable(
            text="a service is busy or unreachable; retrying is safe", headers={"Retry-After": "2"}
        )
    return web.HTTPBadGateway(text="a service failed to answer")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def csv_handler(upstream: Upstream) -> Handler:
    async def results(request: web.Request) -> web.StreamResponse:
        host = _host_credential(_bearer(request, "quiz's host token, or the identity token of its signed-in host"))
        try:
            found = await upstream.get_quiz(quiz_pb2.GetQuizRequest(quiz_id=request.match_info["quiz_id"], **host))
            if not found.host_verified:
                raise web.HTTPForbidden(text="the credential does not host this quiz")
            quiz = found.quiz
            state = (await upstream.get_quiz_state(quiz_pb2.GetQuizStateRequest(quiz_id=quiz.quiz_id))).state
            stored = await read_stored_quiz(quiz.quiz_id, upstream.list_participants, upstream.list_answers)
        except grpc.aio.AioRpcError as exc:
            raise _http_error(exc) from None
        body = results_csv(quiz.quiz_id, state.question_index + 1, stored.participants, stored.answers)
        return web.Response(
            body=body.encode(),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="quizmesh-{quiz.quiz_id}-results.csv"',
                "Cache-Control": "no-store",
            },
        )

    return results


def session_handler(upstream: Upstream) -> Handler:
    """Starts a new session of a quiz for its owner, who proves it with the quiz's first host credential
    (`Authorization: Bearer <host_token>`) or, signed in, their identity token: StartSession's reply as
    JSON, the new session's join code and host credential included."""

    async def run_again(request: web.Request) -> web.StreamResponse:
        owner = _host_credential(
            _bearer(request, "quiz's host token as issued at its creation, or its owner's identity token")
        )
        try:
            started = await upstream.start_session(
                quiz_pb2.StartSessionRequest(quiz_id=request.match_info["quiz_id"], **owner)
            )
        except grpc.aio.AioRpcError as exc:
            raise _http_error(exc) from None
        body = json_format.MessageToDict(started, preserving_proto_field_name=True)
        return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})

    return run_again


def history_handler(upstream: Upstream) -> Handler:
    """A signed-in learner's past sessions, newest first, as ListUserResults returns them (JSON, field
    names as in the contract); `?page_size=` and `?page_token=` page through them."""

    async def history(request: web.Request) -> web.StreamResponse:
        identity_token = _bearer(request, "identity token of the signed-in user")
        try:
            page_size = int(request.query.get("page_size", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="page_size must be a whole number") from None
        try:
            page = await upstream.list_user_results(
                persistence_pb2.ListUserResultsRequest(
                    identity_token=identity_token,
                    page_size=page_size,
                    page_token=request.query.get("page_token", ""),
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise _http_error(exc) from None
        # Every field, zeros included (a score of 0 is a result); 64-bit numbers as strings (proto3 JSON).
        body = json_format.MessageToDict(
            page, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    return history
