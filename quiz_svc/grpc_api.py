"""The gRPC face of quiz_svc: translates requests into service calls and domain errors into status
codes, in one table. A client mistake is answered with a status, never logged as a traceback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import NoReturn, TypeVar

import grpc

from quiz_svc import domain, messages
from quiz_svc.domain import AnswerRefusal, HostAction
from quiz_svc.kinds import InvalidAnswer
from quiz_svc.metrics import QuizMetrics
from quiz_svc.ports import Clock, QuizUpdate, UpdateFeed
from quiz_svc.service import AcceptedAnswer, AnswerInput, MediaNotFound, PlayerLeft, PlayerNotFound, QuizGame
from quizmesh.grpc_errors import ERROR_CODE_METADATA_KEY, QUESTION_INDEX_METADATA_KEY
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from quizmesh.telemetry import Telemetry
from quizmesh.tracing import answer_spans, traced_call

log = logging.getLogger(__name__)

_Item = TypeVar("_Item")

SERVICE_NAME = "quizmesh.quiz.v1.QuizService"
# The answer path's methods, traced by the servicer rather than the interceptor: see traced_call. A
# StreamAnswers call gets a server span for each batch that brought a trace context, not one for the call.
BATCH_SUBMIT_ANSWERS = "BatchSubmitAnswers"
STREAM_ANSWERS = "StreamAnswers"
_BATCH_SUBMIT_ANSWERS_PATH = f"/{SERVICE_NAME}/{BATCH_SUBMIT_ANSWERS}"
_STREAM_ANSWERS_PATH = f"/{SERVICE_NAME}/{STREAM_ANSWERS}"


_STATUS_OF: dict[type[domain.QuizError], grpc.StatusCode] = {
    domain.InvalidQuiz: grpc.StatusCode.INVALID_ARGUMENT,
    domain.InvalidNickname: grpc.StatusCode.INVALID_ARGUMENT,
    domain.NicknameTaken: grpc.StatusCode.ALREADY_EXISTS,
    domain.QuizNotFound: grpc.StatusCode.NOT_FOUND,
    PlayerNotFound: grpc.StatusCode.NOT_FOUND,
    MediaNotFound: grpc.StatusCode.NOT_FOUND,
    domain.NotTheHost: grpc.StatusCode.PERMISSION_DENIED,
    domain.PlayerRemoved: grpc.StatusCode.PERMISSION_DENIED,
    PlayerLeft: grpc.StatusCode.PERMISSION_DENIED,
    domain.NotAPlayer: grpc.StatusCode.UNAUTHENTICATED,
    domain.WrongPhase: grpc.StatusCode.FAILED_PRECONDITION,
    domain.JoinClosed: grpc.StatusCode.FAILED_PRECONDITION,
    domain.SignInRequired: grpc.StatusCode.UNAUTHENTICATED,
    domain.NotSignedIn: grpc.StatusCode.UNAUTHENTICATED,
    domain.Unavailable: grpc.StatusCode.UNAVAILABLE,
}
_ERROR_CODE_OF: dict[type[domain.QuizError], str] = {
    domain.InvalidQuiz: "invalid_quiz",
    domain.InvalidNickname: "invalid_nickname",
    domain.NicknameTaken: "nickname_taken",
    domain.QuizNotFound: "quiz_not_found",
    PlayerNotFound: "player_not_found",
    MediaNotFound: "media_not_found",
    domain.NotTheHost: "permission_denied",
    domain.PlayerRemoved: "player_removed",
    PlayerLeft: "player_left",
    domain.NotAPlayer: "unauthenticated",
    domain.WrongPhase: "wrong_phase",
    domain.JoinClosed: "join_closed",
    domain.SignInRequired: "sign_in_required",
    domain.NotSignedIn: "invalid_identity",
    domain.Unavailable: "unavailable",
}
_ANSWER_ERROR = {
    AnswerRefusal.QUESTION_CLOSED: pb.ANSWER_ERROR_QUESTION_CLOSED,
    AnswerRefusal.ALREADY_ANSWERED: pb.ANSWER_ERROR_ALREADY_ANSWERED,
    AnswerRefusal.QUESTION_NOT_FOUND: pb.ANSWER_ERROR_QUESTION_NOT_FOUND,
    AnswerRefusal.QUESTION_NOT_OPEN: pb.ANSWER_ERROR_QUESTION_NOT_OPEN,
    AnswerRefusal.INVALID_CHOICE: pb.ANSWER_ERROR_INVALID_CHOICE,
    AnswerRefusal.INVALID_ANSWER: pb.ANSWER_ERROR_INVALID_ANSWER,
    AnswerRefusal.UNAUTHENTICATED: pb.ANSWER_ERROR_UNAUTHENTICATED,
    AnswerRefusal.QUIZ_NOT_FOUND: pb.ANSWER_ERROR_QUIZ_NOT_FOUND,
    AnswerRefusal.NOT_A_PARTICIPANT: pb.ANSWER_ERROR_NOT_A_PARTICIPANT,
    AnswerRefusal.UNAVAILABLE: pb.ANSWER_ERROR_UNAVAILABLE,
}
_REFUSAL_STATUS = {
    AnswerRefusal.QUESTION_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    AnswerRefusal.ALREADY_ANSWERED: grpc.StatusCode.ALREADY_EXISTS,
    AnswerRefusal.QUESTION_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    AnswerRefusal.QUESTION_NOT_OPEN: grpc.StatusCode.FAILED_PRECONDITION,
    AnswerRefusal.INVALID_CHOICE: grpc.StatusCode.INVALID_ARGUMENT,
    AnswerRefusal.INVALID_ANSWER: grpc.StatusCode.INVALID_ARGUMENT,
    AnswerRefusal.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    AnswerRefusal.QUIZ_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    AnswerRefusal.NOT_A_PARTICIPANT: grpc.StatusCode.PERMISSION_DENIED,
    AnswerRefusal.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
MAX_BATCH = 5000


async def _abort(context: grpc.aio.ServicerContext, status: grpc.StatusCode, code: str, message: str) -> NoReturn:
    """Ends the call with a status; the stable error code also travels as trailing metadata."""
    context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, code),))
    await context.abort(status, message)
    raise AssertionError("context.abort returned")


async def _abort_for(context: grpc.aio.ServicerContext, exc: domain.QuizError) -> NoReturn:
    kind = type(exc)
    if isinstance(exc, domain.InvalidQuiz) and exc.question is not None:
        # Which question is at fault, so a reader of a spreadsheet can name its row.
        context.set_trailing_metadata(
            ((ERROR_CODE_METADATA_KEY, _ERROR_CODE_OF[kind]), (QUESTION_INDEX_METADATA_KEY, str(exc.question)))
        )
        await context.abort(_STATUS_OF[kind], str(exc))
    await _abort(context, _STATUS_OF[kind], _ERROR_CODE_OF[kind], str(exc))


async def _abort_oversized_batch(context: grpc.aio.ServicerContext) -> NoReturn:
    message = f"a batch holds at most {MAX_BATCH} answers; split it"
    await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", message)


async def _until(ended: asyncio.Event, items: AsyncIterator[_Item]) -> AsyncIterator[_Item]:
    """The items until `ended` is set."""
    ending = asyncio.ensure_future(ended.wait())
    item: asyncio.Future[_Item] | None = None
    try:
        while True:
            item = asyncio.ensure_future(anext(items))
            await asyncio.wait((item, ending), return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                return
            try:
                value = item.result()
            except StopAsyncIteration:
                return
            yield value
    finally:
        ending.cancel()
        if item is not None:
            item.cancel()


def _require(value: str, field: str) -> None:
    if not value.strip():
        raise domain.InvalidQuiz(f"{field} is required")


async def _page(page_size: int, page_token: str, context: grpc.aio.ServicerContext) -> tuple[int, int | None]:
    """A list call's page size and the creation time its page token continues before."""
    size = page_size or 50
    if not 0 < size <= 1000:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "page_size must be 1 to 1000")
    if not page_token:
        return size, None
    try:
        return size, int(page_token)
    except ValueError:
        await _abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
            "page_token is not one this service issued; pass next_page_token unchanged",
        )


def _answer_input(answer: pb.Answer, event_headers: tuple[tuple[str, bytes], ...] = ()) -> AnswerInput:
    received = answer.receive_time.ToMilliseconds() if answer.HasField("receive_time") else None
    try:
        value = messages.value_from_pb(answer.value, answer.choice)
    except InvalidAnswer:
        value = None
    return AnswerInput(answer.player_token, answer.question_index, value, event_headers, received)


def _accepted_to_pb(outcome: AcceptedAnswer) -> pb.AnswerResult:
    return messages.answer_to_pb(outcome.answer, outcome.event_id, outcome.question)


def _outcome_to_pb(outcome: AcceptedAnswer | AnswerRefusal) -> pb.AnswerOutcome:
    if isinstance(outcome, AnswerRefusal):
        return pb.AnswerOutcome(error=_ANSWER_ERROR[outcome], error_message=domain.REFUSAL_MESSAGES[outcome])
    return pb.AnswerOutcome(result=_accepted_to_pb(outcome))


class QuizServicer(pb_grpc.QuizServiceServicer):
    def __init__(self, game: QuizGame, feed: UpdateFeed, clock: Clock, telemetry: Telemetry) -> None:
        self._game = game
        self._feed = feed
        self._clock = clock
        self._metrics = QuizMetrics(telemetry.meter("quiz_svc"))
        self._tracer = telemetry.tracer("quiz_svc")
        self._streams_end = asyncio.Event()

    def end_streams(self) -> None:
        """Ends every long-lived call with OK, a StreamAnswers call once it has answered the batches it
        read, so that the callers open new ones on another replica while this one drains, instead of
        holding its stop for the whole grace period."""
        self._streams_end.set()

    def _count(self, outcomes: Sequence[AcceptedAnswer | AnswerRefusal]) -> None:
        accepted = 0
        for outcome in outcomes:
            if isinstance(outcome, AnswerRefusal):
                self._metrics.answers_rejected.add(1, {"reason": outcome.value})
            else:
                accepted += 1
        self._metrics.answers_accepted.add(accepted)

    async def CreateQuiz(
        self, request: pb.CreateQuizRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateQuizResponse:
        try:
            questions = [messages.question_from_pb(q, position) for position, q in enumerate(request.questions)]
            uploads = {upload.name: upload.content for upload in request.media}
            if len(uploads) != len(request.media):
                raise domain.InvalidQuiz("two uploads have the same name")
            if request.validate_only:
                await self._game.check_quiz(request.title, questions, uploads)
                return pb.CreateQuizResponse()
            late = request.allow_late_join if request.HasField("allow_late_join") else True
            quiz, host_token = await self._game.create_quiz(
                request.title,
                questions,
                late,
                uploads,
                identity_token=request.identity_token,
                requires_sign_in=request.requires_sign_in,
            )
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.CreateQuizResponse(quiz=messages.quiz_to_pb(quiz, with_answers=True), host_token=host_token)

    async def GetMedia(self, request: pb.GetMediaRequest, context: grpc.aio.ServicerContext) -> pb.GetMediaResponse:
        try:
            found = await self._game.media(request.media_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.GetMediaResponse(media_id=found.media_id, content_type=found.content_type, content=found.content)

    async def ErasePlayers(
        self, request: pb.ErasePlayersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ErasePlayersResponse:
        try:
            for player in request.players:
                _require(player.quiz_id, "players.quiz_id")
                _require(player.player_id, "players.player_id")
            erased = await self._game.erase_players(
                [(p.quiz_id, p.player_id) for p in request.players], request.replacement_nickname
            )
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.ErasePlayersResponse(erased=erased)

    async def GetQuiz(self, request: pb.GetQuizRequest, context: grpc.aio.ServicerContext) -> pb.GetQuizResponse:
        try:
            _require(request.quiz_id, "quiz_id")
            quiz = await self._game.quiz(request.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        try:
            is_host = await self._game.hosts(quiz.quiz_id, request.host_token, request.identity_token)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.GetQuizResponse(quiz=messages.quiz_to_pb(quiz, with_answers=is_host), host_verified=is_host)

    async def ListQuizzes(
        self, request: pb.ListQuizzesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQuizzesResponse:
        size, before = await _page(request.page_size, request.page_token, context)
        try:
            quizzes = await self._game.list_quizzes(size, before, request.identity_token)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        token = str(quizzes[-1].created_ms) if len(quizzes) == size else ""
        response = pb.ListQuizzesResponse(next_page_token=token)
        for quiz in quizzes:
            summary = messages.quiz_to_pb(quiz, with_answers=False)
            del summary.questions[:]
            response.quizzes.append(summary)
        return response

    async def StartSession(
        self, request: pb.StartSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSessionResponse:
        try:
            _require(request.quiz_id, "quiz_id")
            session, quiz, host_token = await self._game.start_session(
                request.quiz_id, request.host_token, request.identity_token
            )
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.StartSessionResponse(
            quiz=messages.quiz_to_pb(quiz, with_answers=True),
            host_token=host_token,
            session=messages.session_to_pb(session),
        )

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        size, before = await _page(request.page_size, request.page_token, context)
        try:
            _require(request.quiz_id, "quiz_id")
            sessions = await self._game.list_sessions(
                request.quiz_id, request.host_token, request.identity_token, size, before
            )
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.ListSessionsResponse(
            sessions=[messages.session_to_pb(s) for s in sessions],
            next_page_token=str(sessions[-1].created_ms) if len(sessions) == size else "",
        )

    async def JoinQuiz(self, request: pb.JoinQuizRequest, context: grpc.aio.ServicerContext) -> pb.JoinQuizResponse:
        try:
            _require(request.quiz_id, "quiz_id")
            player, token, state = await self._game.join(request.quiz_id, request.nickname, request.identity_token)
            quiz = await self._game.quiz(request.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        self._metrics.joins.add(1)
        return pb.JoinQuizResponse(
            player=messages.player_to_pb(player),
            player_token=token,
            state=messages.state_to_pb(quiz, state, self._clock.now_ms()),
        )

    async def ResumeQuiz(
        self, request: pb.ResumeQuizRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeQuizResponse:
        try:
            resumed = await self._game.resume(request.player_token)
            quiz = await self._game.quiz(resumed.state.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        response = pb.ResumeQuizResponse(
            player=messages.player_to_pb(resumed.player),
            state=messages.state_to_pb(quiz, resumed.state, self._clock.now_ms()),
            answered_current_question=resumed.current_answer is not None,
            player_token=resumed.player_token,
        )
        if resumed.current_answer is not None:
            event_id = domain.answer_event_id(quiz.quiz_id, resumed.state.question_index, resumed.player.player_id)
            question = quiz.questions[resumed.state.question_index]
            response.current_answer.CopyFrom(messages.answer_to_pb(resumed.current_answer, event_id, question))
        return response

    async def LeaveQuiz(self, request: pb.LeaveQuizRequest, context: grpc.aio.ServicerContext) -> pb.LeaveQuizResponse:
        try:
            await self._game.leave(request.player_token)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.LeaveQuizResponse()

    async def SubmitAnswer(
        self, request: pb.SubmitAnswerRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitAnswerResponse:
        [outcome] = await self._game.submit_answers([_answer_input(request.answer)])
        self._count([outcome])
        if isinstance(outcome, AnswerRefusal):
            await _abort(context, _REFUSAL_STATUS[outcome], outcome.value, domain.REFUSAL_MESSAGES[outcome])
        return pb.SubmitAnswerResponse(result=_accepted_to_pb(outcome))

    async def BatchSubmitAnswers(
        self, request: pb.BatchSubmitAnswersRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchSubmitAnswersResponse:
        if len(request.answers) > MAX_BATCH:
            await _abort_oversized_batch(context)
        outcomes = await self._judge_batch(request.answers, _BATCH_SUBMIT_ANSWERS_PATH, context.invocation_metadata())
        return pb.BatchSubmitAnswersResponse(outcomes=outcomes)

    async def StreamAnswers(  # type: ignore[override]  # grpc.aio also serves a handler that writes its responses
        self,
        requests: AsyncIterator[pb.StreamAnswersRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # Each batch is judged in a task of its own, so that a caller with several batches in flight
        # is not served one after the other; the call takes one write at a time.
        writing = asyncio.Lock()

        async def answer(request: pb.StreamAnswersRequest) -> None:
            outcomes = await self._judge_batch(request.answers, _STREAM_ANSWERS_PATH, request.trace_context.items())
            async with writing:
                await context.write(pb.StreamAnswersResponse(batch_id=request.batch_id, outcomes=outcomes))

        async def read(batches: asyncio.TaskGroup) -> bool:
            """Whether the call must end for an oversized batch; the batches before it are answered."""
            async for request in requests:
                if len(request.answers) > MAX_BATCH:
                    return True
                batches.create_task(answer(request))
            return False

        async with asyncio.TaskGroup() as batches:
            reading = batches.create_task(read(batches))
            ending = batches.create_task(self._streams_end.wait())
            await asyncio.wait((reading, ending), return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            ending.cancel()
        if not reading.cancelled() and reading.result():
            await _abort_oversized_batch(context)

    async def _judge_batch(
        self, answers: Sequence[pb.Answer], method_path: str, trace_metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> list[pb.AnswerOutcome]:
        started = time.perf_counter()
        # Many players' answers share this call; each keeps its own trace through the event it publishes.
        with (
            traced_call(self._tracer, method_path, trace_metadata),
            answer_spans(self._tracer, "quiz_svc answer", [a.trace_context for a in answers]) as traces,
        ):
            inputs = [_answer_input(a, t.headers) for a, t in zip(answers, traces, strict=True)]
            outcomes = await self._game.submit_answers(inputs)
            for t, outcome in zip(traces, outcomes, strict=True):
                if t.span is not None:
                    t.span.set_attribute(
                        "quizmesh.answer.outcome", outcome.value if isinstance(outcome, AnswerRefusal) else "accepted"
                    )
        self._count(outcomes)
        self._metrics.batch_duration.record(time.perf_counter() - started)
        return [_outcome_to_pb(o) for o in outcomes]

    async def _host(
        self,
        request: pb.StartQuizRequest
        | pb.NextQuestionRequest
        | pb.CloseQuestionRequest
        | pb.SetLeaderboardVisibilityRequest
        | pb.EndQuizRequest,
        action: HostAction,
        context: grpc.aio.ServicerContext,
        question_index: int | None = None,
    ) -> tuple[pb.QuizState, pb.QuestionResults | None]:
        quiz_id = request.quiz_id
        try:
            _require(quiz_id, "quiz_id")
            state, results = await self._game.host_action(
                quiz_id, request.host_token, action, question_index, request.identity_token
            )
            quiz = await self._game.quiz(quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return (
            messages.state_to_pb(quiz, state, self._clock.now_ms()),
            messages.results_to_pb(quiz, results) if results else None,
        )

    async def StartQuiz(self, request: pb.StartQuizRequest, context: grpc.aio.ServicerContext) -> pb.StartQuizResponse:
        state, _ = await self._host(request, HostAction.START, context)
        return pb.StartQuizResponse(state=state)

    async def NextQuestion(
        self, request: pb.NextQuestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.NextQuestionResponse:
        target = request.question_index if request.HasField("question_index") else None
        state, _ = await self._host(request, HostAction.NEXT, context, target)
        return pb.NextQuestionResponse(state=state)

    async def CloseQuestion(
        self, request: pb.CloseQuestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseQuestionResponse:
        target = request.question_index if request.HasField("question_index") else None
        state, results = await self._host(request, HostAction.CLOSE, context, target)
        return pb.CloseQuestionResponse(state=state, results=results)

    async def SetLeaderboardVisibility(
        self, request: pb.SetLeaderboardVisibilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLeaderboardVisibilityResponse:
        action = HostAction.SHOW_LEADERBOARD if request.visible else HostAction.HIDE_LEADERBOARD
        state, _ = await self._host(request, action, context)
        return pb.SetLeaderboardVisibilityResponse(state=state)

    async def KickPlayer(
        self, request: pb.KickPlayerRequest, context: grpc.aio.ServicerContext
    ) -> pb.KickPlayerResponse:
        try:
            _require(request.quiz_id, "quiz_id")
            _require(request.player_id, "player_id")
            state = await self._game.kick(
                request.quiz_id, request.host_token, request.player_id, request.identity_token
            )
            quiz = await self._game.quiz(request.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.KickPlayerResponse(state=messages.state_to_pb(quiz, state, self._clock.now_ms()))

    async def EndQuiz(self, request: pb.EndQuizRequest, context: grpc.aio.ServicerContext) -> pb.EndQuizResponse:
        state, _ = await self._host(request, HostAction.END, context)
        return pb.EndQuizResponse(state=state)

    async def GetQuizState(
        self, request: pb.GetQuizStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQuizStateResponse:
        try:
            _require(request.quiz_id, "quiz_id")
            quiz, state = await self._game.state(request.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
        return pb.GetQuizStateResponse(state=messages.state_to_pb(quiz, state, self._clock.now_ms()))

    async def WatchQuiz(
        self, request: pb.WatchQuizRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchQuizResponse]:
        try:
            _require(request.quiz_id, "quiz_id")
            quiz, _ = await self._game.state(request.quiz_id)
        except domain.QuizError as exc:
            await _abort_for(context, exc)
            return
        # Subscribe before reading the state, so no change can fall between the two. The first message
        # carries the closed question's results too: the watcher may have missed that close (its stream
        # was down), and sees its results now.
        async with self._feed.watch(quiz.quiz_id) as updates:
            _, state, results = await self._game.snapshot(quiz.quiz_id)
            yield messages.update_to_pb(quiz, QuizUpdate(state, results), self._clock.now_ms())
            async for payload in _until(self._streams_end, updates):
                yield pb.WatchQuizResponse.FromString(payload)
