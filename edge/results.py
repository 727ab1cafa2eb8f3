"""The results export for a quiz's host: `GET /quizzes/{quiz_id}/results.csv`.

One row per player per question asked so far, players in join order, from what persistence_svc stored.
A question a player did not answer has an empty choice, 0 points and the player's running total. The
host proves who they are with `Authorization: Bearer <host_token>`, never in the URL, where it would end
up in logs and browser history.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import grpc
from aiohttp import web

from edge.upstream import Upstream
from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

COLUMNS: Final = (
    "quiz_id",
    "player_id",
    "nickname",
    "question_index",
    "choice",
    "correct",
    "points",
    "response_time_ms",
    "total_score",
)
_PAGE_SIZE: Final = 1000
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _as_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def results_csv(
    quiz_id: str,
    questions_asked: int,
    participants: Sequence[persistence_pb2.Participant],
    answers: Sequence[persistence_pb2.StoredAnswer],
) -> str:
    nicknames = {participant.player_id: participant.nickname for participant in participants}
    for stored in answers:  # an answer stored before its player's join event is still reported
        nicknames.setdefault(stored.player_id, "")
    by_player_question = {(stored.player_id, stored.question_index): stored for stored in answers}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for player_id, nickname in nicknames.items():
        total = 0
        for index in range(questions_asked):
            answer = by_player_question.get((player_id, index))
            if answer is None:
                writer.writerow((quiz_id, player_id, _as_text(nickname), index, "", "", 0, "", total))
                continue
            total = answer.total_score
            writer.writerow(
                (
                    quiz_id,
                    player_id,
                    _as_text(nickname),
                    index,
                    answer.choice,
                    "true" if answer.correct else "false",
                    answer.points,
                    answer.response_time_ms,
                    answer.total_score,
                )
            )
    return out.getvalue()


def _host_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise web.HTTPUnauthorized(
            text="send the quiz's host token as 'Authorization: Bearer <host_token>'",
            headers={"WWW-Authenticate": 'Bearer realm="quizmesh"'},
        )
    return token.strip()


async def _participants(upstream: Upstream, quiz_id: str) -> list[persistence_pb2.Participant]:
    participants: list[persistence_pb2.Participant] = []
    token = ""
    while True:
        page = await upstream.list_participants(
            persistence_pb2.ListParticipantsRequest(quiz_id=quiz_id, page_size=_PAGE_SIZE, page_token=token)
        )
        participants.extend(page.participants)
        token = page.next_page_token
        if not token:
            return participants


async def _answers(upstream: Upstream, quiz_id: str) -> list[persistence_pb2.StoredAnswer]:
    answers: list[persistence_pb2.StoredAnswer] = []
    token = ""
    while True:
        page = await upstream.list_answers(
            persistence_pb2.ListAnswersRequest(quiz_id=quiz_id, page_size=_PAGE_SIZE, page_token=token)
        )
        answers.extend(page.answers)
        token = page.next_page_token
        if not token:
            return answers


def _http_error(exc: grpc.aio.AioRpcError) -> web.HTTPException:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return web.HTTPNotFound(text="the quiz does not exist")
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
        host_token = _host_token(request)
        try:
            quiz = (
                await upstream.get_quiz(
                    quiz_pb2.GetQuizRequest(quiz_id=request.match_info["quiz_id"], host_token=host_token)
                )
            ).quiz
            # As in routes.host_quiz: only a valid host credential gets correct choices back, and every
            # question has some, so their absence means the token is not this quiz's.
            if not quiz.questions or not quiz.questions[0].correct_choices:
                raise web.HTTPForbidden(text="the host token is not valid for this quiz")
            state = (await upstream.get_quiz_state(quiz_pb2.GetQuizStateRequest(quiz_id=quiz.quiz_id))).state
            participants = await _participants(upstream, quiz.quiz_id)
            answers = await _answers(upstream, quiz.quiz_id)
        except grpc.aio.AioRpcError as exc:
            raise _http_error(exc) from None
        body = results_csv(quiz.quiz_id, state.question_index + 1, participants, answers)
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
