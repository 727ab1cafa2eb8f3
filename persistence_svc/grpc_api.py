"""quizmesh.persistence.v1.PersistenceService: validates requests, pages through the ResultStore.

Page tokens are opaque to clients: URL-safe base64 of a small JSON object holding the last row's
sort key and the quiz it belongs to, so a token cannot continue a different quiz's listing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from persistence_svc.catch_up import CatchUp, NotCaughtUp
from persistence_svc.domain import (
    AnswerCursor,
    AnswerRow,
    HistoryCursor,
    ParticipantCursor,
    ParticipantRow,
)
from persistence_svc.erasure import delete_user_data
from persistence_svc.history import SessionResult, user_results
from persistence_svc.ports import Listing, LiveCopies, LiveCopyUnavailable, ResultStore, StoreUnavailable
from quizmesh.answer_values import from_json
from quizmesh.identity import ANONYMOUS, Identities, InvalidIdentity
from quizmesh.persistence.v1 import persistence_service_pb2 as pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
DEFAULT_HISTORY_PAGE_SIZE = 20
MAX_HISTORY_PAGE_SIZE = 100
# A `caught_up` listing waits at most this long for the sink (less when the call's deadline is nearer),
# and answers UNAVAILABLE a little before the caller's deadline, so the caller learns why.
MAX_CATCH_UP_S = 10.0
_DEADLINE_MARGIN_S = 0.5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOKEN_VERSION = 1


_RowT = TypeVar("_RowT")
_CursorT = TypeVar("_CursorT")


class InvalidRequest(ValueError):
    """The request cannot be served as sent; the message says what to change."""


class Unauthenticated(ValueError):
    """The request names no user it may read: no valid identity token, no valid service credential."""


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    if isinstance(exc, InvalidRequest):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    elif isinstance(exc, Unauthenticated):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    elif isinstance(exc, StoreUnavailable):
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, "the results database is unavailable right now; retry with backoff"
        )
    elif isinstance(exc, NotCaughtUp):
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry with backoff")
    elif isinstance(exc, LiveCopyUnavailable):
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"the deletion is not finished: {exc}; repeat DeleteUserData with backoff, it finishes what was begun",
        )
    raise exc


class PersistenceServicer(pb_grpc.PersistenceServiceServicer):
    """Reads stored participants and answers; the sink loop writes them. DeleteUserData alone changes
    them, and renames the players in the live copies too."""

    def __init__(
        self,
        store: ResultStore,
        catch_up: CatchUp,
        identities: Identities = ANONYMOUS,
        service_token: str | None = None,
        live_copies: Sequence[LiveCopies] = (),
    ) -> None:
        self._store = store
        self._catch_up = catch_up
        self._identities = identities
        self._service_token = service_token
        self._live_copies = live_copies

    async def _user_id(self, identity_token: str, user_id: str, service_token: str) -> str:
        """The user a history request may read: the identity token's subject, or, for the application's
        backend presenting the service credential, the user it names."""
        if identity_token:
            try:
                user = await self._identities.user(identity_token)
            except InvalidIdentity as exc:
                raise Unauthenticated(str(exc)) from None
            assert user is not None
            return user.user_id
        if not service_token or self._service_token is None:
            raise Unauthenticated(
                "a user's results need their identity token, or the service credential with their user_id"
            )
        if not hmac.compare_digest(service_token.encode(), self._service_token.encode()):
            raise Unauthenticated("the service credential is not valid")
        if not user_id:
            raise InvalidRequest("user_id is empty: name the user whose results to read")
        return user_id

    async def DeleteUserData(
        self, request: pb.DeleteUserDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteUserDataResponse:
        try:
            user_id = await self._user_id(request.identity_token, request.user_id, request.service_token)
            forgotten = await delete_user_data(self._store, self._live_copies, user_id)
        except (InvalidRequest, Unauthenticated, StoreUnavailable, LiveCopyUnavailable) as exc:
            await _abort(context, exc)
        return pb.DeleteUserDataResponse(participations=forgotten)

    async def ListUserResults(
        self, request: pb.ListUserResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUserResultsResponse:
        try:
            user_id = await self._user_id(request.identity_token, request.user_id, request.service_token)
            if not 0 <= request.page_size <= MAX_HISTORY_PAGE_SIZE:
                raise InvalidRequest(
                    f"page_size must be 0 (for {DEFAULT_HISTORY_PAGE_SIZE}) to {MAX_HISTORY_PAGE_SIZE}"
                )
            after = _history_cursor(request.page_token, user_id)
            results, next_after = await user_results(
                self._store, user_id, request.page_size or DEFAULT_HISTORY_PAGE_SIZE, after
            )
        except (InvalidRequest, Unauthenticated, StoreUnavailable) as exc:
            await _abort(context, exc)
        return pb.ListUserResultsResponse(
            results=[_session_result(r) for r in results],
            next_page_token="" if next_after is None else _history_token(user_id, next_after),
        )

    async def _caught_up(
        self, quiz_id: str, caught_up: bool, page_token: str, context: grpc.aio.ServicerContext
    ) -> None:
        """For a `caught_up` listing's first page, waits until the sink has stored what Kafka holds of the quiz."""
        if not caught_up or page_token:
            return
        remaining = context.time_remaining()
        within_s = MAX_CATCH_UP_S if remaining is None else min(MAX_CATCH_UP_S, remaining - _DEADLINE_MARGIN_S)
        await self._catch_up.wait(quiz_id, max(0.0, within_s))

    async def _page(
        self,
        request: pb.ListParticipantsRequest | pb.ListAnswersRequest,
        context: grpc.aio.ServicerContext,
        listing: Listing[_RowT, _CursorT],
        cursor: Callable[[str, str], _CursorT | None],
        token: Callable[[str, _CursorT], str],
    ) -> tuple[tuple[_RowT, ...], str]:
        """One page of a listing and the token of the next: the request checked, its token read, the sink
        waited for if asked."""
        try:
            quiz_id = _quiz_id(request.quiz_id)
            limit = _page_size(request.page_size)
            after = cursor(request.page_token, quiz_id)
            await self._caught_up(quiz_id, request.caught_up, request.page_token, context)
            page = await listing(quiz_id, limit, after, from_primary=request.caught_up)
        except (InvalidRequest, StoreUnavailable, NotCaughtUp) as exc:
            await _abort(context, exc)
        return page.items, "" if page.next_after is None else token(quiz_id, page.next_after)

    async def ListParticipants(
        self, request: pb.ListParticipantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListParticipantsResponse:
        rows, token = await self._page(
            request, context, self._store.list_participants, _participant_cursor, _participant_token
        )
        return pb.ListParticipantsResponse(participants=[_participant(row) for row in rows], next_page_token=token)

    async def ListAnswers(
        self, request: pb.ListAnswersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAnswersResponse:
        rows, token = await self._page(request, context, self._store.list_answers, _answer_cursor, _answer_token)
        return pb.ListAnswersResponse(answers=[_answer(row) for row in rows], next_page_token=token)


def _quiz_id(quiz_id: str) -> str:
    if not quiz_id:
        raise InvalidRequest("quiz_id is empty: pass the ID returned by CreateQuiz")
    return quiz_id


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidRequest(
            f"page_size is {requested}: pass 0 for the default of {DEFAULT_PAGE_SIZE}, "
            f"or a size from 1 to {MAX_PAGE_SIZE}"
        )
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def _participant(row: ParticipantRow) -> pb.Participant:
    participant = pb.Participant(
        quiz_id=row.quiz_id,
        player_id=row.player_id,
        nickname=row.nickname,
        join_time=_timestamp(row.joined_at),
        kicked=row.kicked,
        quiz_elapsed_ms=row.quiz_elapsed_ms,
        user_id=row.user_id or "",
    )
    if row.left_at is not None:
        participant.leave_time.CopyFrom(_timestamp(row.left_at))
    return participant


def _answer(row: AnswerRow) -> pb.StoredAnswer:
    return pb.StoredAnswer(
        quiz_id=row.quiz_id,
        question_index=row.question_index,
        player_id=row.player_id,
        choice=row.choice,
        correct=row.correct,
        points=row.points,
        response_time_ms=row.response_time_ms,
        answer_time=_timestamp(row.answered_at),
        event_id=row.event_id,
        total_score=row.total_score,
        streak=row.streak,
        quiz_elapsed_ms=row.quiz_elapsed_ms,
        value=from_json(orjson.loads(row.answer)),
        answer_text=row.answer_text,
        credit=row.credit,
    )


def _session_result(result: SessionResult) -> pb.UserSessionResult:
    return pb.UserSessionResult(
        session_id=result.session.quiz_id,
        player_id=result.session.player_id,
        nickname=result.nickname,
        join_time=_timestamp(result.session.joined_at),
        score=result.score,
        rank=result.rank,
        player_count=result.player_count,
        answers=[_answer(a) for a in result.answers],
    )


def _history_token(user_id: str, cursor: HistoryCursor) -> str:
    return _encode({"k": "u", "q": user_id, "t": _micros(cursor.joined_at), "s": cursor.quiz_id})


def _history_cursor(token: str, user_id: str) -> HistoryCursor | None:
    found = _time_and_key(token, "u", user_id, "s")
    return None if found is None else HistoryCursor(*found)


def _time_and_key(token: str, kind: str, scope: str, key: str) -> tuple[datetime, str] | None:
    """The instant and the string key (in field `key`) that a join-ordered listing's token carries; None
    for no token (the first page)."""
    if not token:
        return None
    fields = _decode(token, kind, scope)
    at, value = fields.get("t"), fields.get(key)
    if not isinstance(at, int) or not isinstance(value, str):
        raise _bad_token(kind)
    return _instant(at, kind), value


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _encode(fields: dict[str, Any]) -> str:
    raw = json.dumps({"v": _TOKEN_VERSION, **fields}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, kind: str, quiz_id: str) -> dict[str, Any]:
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _bad_token(kind) from None
    if not isinstance(fields, dict) or fields.get("v") != _TOKEN_VERSION or fields.get("k") != kind:
        raise _bad_token(kind)
    if fields.get("q") != quiz_id:
        raise InvalidRequest(
            "page_token continues another listing (of another quiz, or another user's history): send the "
            "request that returned it again with only page_token changed, or an empty page_token to start over"
        )
    return fields


def _bad_token(kind: str) -> InvalidRequest:
    rpc = {"a": "ListAnswers", "p": "ListParticipants", "u": "ListUserResults"}[kind]
    return InvalidRequest(
        f"page_token is not one {rpc} issued: pass next_page_token from the previous response "
        "unchanged, or an empty page_token for the first page"
    )


def _participant_token(quiz_id: str, cursor: ParticipantCursor) -> str:
    return _encode({"k": "p", "q": quiz_id, "t": _micros(cursor.joined_at), "p": cursor.player_id})


def _participant_cursor(token: str, quiz_id: str) -> ParticipantCursor | None:
    found = _time_and_key(token, "p", quiz_id, "p")
    return None if found is None else ParticipantCursor(*found)


def _answer_token(quiz_id: str, cursor: AnswerCursor) -> str:
    return _encode(
        {
            "k": "a",
            "q": quiz_id,
            "i": cursor.question_index,
            "t": _micros(cursor.answered_at),
            "p": cursor.player_id,
        }
    )


def _answer_cursor(token: str, quiz_id: str) -> AnswerCursor | None:
    if not token:
        return None
    fields = _decode(token, "a", quiz_id)
    question_index, answered_at, player_id = fields.get("i"), fields.get("t"), fields.get("p")
    if (
        not isinstance(question_index, int)
        or not 0 <= question_index < 2**31
        or not isinstance(answered_at, int)
        or not isinstance(player_id, str)
    ):
        raise _bad_token("a")
    return AnswerCursor(question_index, _instant(answered_at, "a"), player_id)


def _instant(micros: int, kind: str) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise _bad_token(kind) from None
