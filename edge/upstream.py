"""The edge's gRPC clients: one channel per service, every call under a deadline, answers micro-batched.

Every batch costs its hops a fixed amount of CPU however many answers it carries, so answers from all
sockets wait up to a couple of milliseconds to share one, and each caller awaits only its own outcome.
The batches travel as messages on long-lived calls (edge/answer_streams.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, Protocol, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge.answer_streams import AnswerStreams, TraceMetadata
from edge.fanout import FeedNotFound
from edge.media import MediaFile
from edge.telemetry import EdgeTelemetry
from quizmesh.grpc_retry import CHANNEL_OPTIONS as RETRY_OPTIONS
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as leaderboard_grpc
from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as persistence_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from quizmesh.tracing import current_trace_context

log = logging.getLogger(__name__)

QUIZ_SERVICE: Final = "quizmesh.quiz.v1.QuizService"
LEADERBOARD_SERVICE: Final = "quizmesh.leaderboard.v1.LeaderboardService"

_CHANNEL_OPTIONS: Final = [
    # Long-lived watch streams must notice a dead peer; the services permit pings every 5 s.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    *RETRY_OPTIONS,
]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Message_co = TypeVar("_Message_co", covariant=True)


class _Stream(Protocol[_Message_co]):
    """A server-streaming call, as grpc.aio returns it."""

    def __aiter__(self) -> AsyncIterator[_Message_co]: ...

    def cancel(self) -> bool: ...


SendBatch = Callable[[list[quiz_pb2.Answer]], Awaitable[Sequence[quiz_pb2.AnswerOutcome]]]


class AnswerBatcher:
    """Queues answers and sends them as one batch `linger_s` after the first, or at once when `max_batch`
    are pending.

    While `max_in_flight` batches are in flight, pending answers wait for one of them to return and then
    go together, rather than opening another call: under load the batches grow by themselves, which is
    what lowers the CPU per answer at every hop behind the edge, while on an idle edge an answer waits
    only for its linger. A full batch always goes at once.
    """

    def __init__(self, send: SendBatch, *, max_batch: int, linger_s: float, max_in_flight: int) -> None:
        self._send = send
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[quiz_pb2.Answer, asyncio.Future[quiz_pb2.AnswerOutcome]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, answer: quiz_pb2.Answer) -> quiz_pb2.AnswerOutcome:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[quiz_pb2.AnswerOutcome] = loop.create_future()
        self._pending.append((answer, outcome))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None and len(self._in_flight) < self._max_in_flight:
            self._timer = loop.call_later(self._linger_s, self._flush)
        return await outcome

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send_batch(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._returned)

    def _returned(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending and self._timer is None:
            self._flush()  # these waited for the call that just returned, not for a linger

    async def _send_batch(self, batch: list[tuple[quiz_pb2.Answer, asyncio.Future[quiz_pb2.AnswerOutcome]]]) -> None:
        try:
            outcomes = await self._send([answer for answer, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"BatchSubmitAnswers returned {len(outcomes)} outcomes for {len(batch)}")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            # A caller whose socket closed has cancelled its future; its answer was still judged.
            if not future.done():
                future.set_result(outcome)

    async def close(self) -> None:
        """Sends what is pending and waits for every batch in flight."""
        self._flush()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)


class Upstream:
    """Clients of QuizService, LeaderboardService and (for the results export) PersistenceService.
    `open()` and `close()` bracket their channels."""

    def __init__(
        self,
        quiz_addr: str,
        leaderboard_addr: str,
        *,
        persistence_addr: str = "127.0.0.1:50053",
        answer_batch_size: int = 256,
        answer_batch_linger_s: float = 0.002,
        answer_batches_in_flight: int = 1,
        answer_streams: int = 2,
        answer_stream_max_age_s: float = 30.0,
        answer_deadline_s: float = 5.0,
        call_deadline_s: float = 5.0,
        readiness_deadline_s: float = 1.0,
        telemetry: EdgeTelemetry | None = None,
    ) -> None:
        self.telemetry = telemetry or EdgeTelemetry.disabled()
        self._quiz_addr = quiz_addr
        self._leaderboard_addr = leaderboard_addr
        self._persistence_addr = persistence_addr
        self._answer_deadline_s = answer_deadline_s
        self._deadline_s = call_deadline_s
        self._readiness_deadline_s = readiness_deadline_s
        self._batch_size = answer_batch_size
        self._linger_s = answer_batch_linger_s
        self._batches_in_flight = answer_batches_in_flight
        self._answer_stream_count = answer_streams
        self._answer_stream_max_age_s = answer_stream_max_age_s
        self._quiz_channel: grpc.aio.Channel | None = None
        self._answer_channel: grpc.aio.Channel | None = None
        self._leaderboard_channel: grpc.aio.Channel | None = None
        self._persistence_channel: grpc.aio.Channel | None = None
        self._quiz_stub: quiz_grpc.QuizServiceAsyncStub | None = None
        self._answer_stub: quiz_grpc.QuizServiceAsyncStub | None = None
        self._leaderboard_stub: leaderboard_grpc.LeaderboardServiceAsyncStub | None = None
        self._persistence_stub: persistence_grpc.PersistenceServiceAsyncStub | None = None
        self._batcher: AnswerBatcher | None = None
        self._answer_streams: AnswerStreams | None = None

    async def open(self) -> None:
        self._quiz_channel = self._channel(self._quiz_addr)
        # The answer path's calls skip the tracing interceptors, which cost more CPU per call than the
        # rest of the call: a batch carries its trace context itself when it is sampled (answer_batch).
        self._answer_channel = grpc.aio.insecure_channel(self._quiz_addr, options=_CHANNEL_OPTIONS)
        self._leaderboard_channel = self._channel(self._leaderboard_addr)
        self._persistence_channel = self._channel(self._persistence_addr)
        # The stubs' constructors are typed by overloads on the channel's class, which an untyped grpc hides.
        self._quiz_stub = cast("quiz_grpc.QuizServiceAsyncStub", quiz_grpc.QuizServiceStub(self._quiz_channel))
        self._answer_stub = cast("quiz_grpc.QuizServiceAsyncStub", quiz_grpc.QuizServiceStub(self._answer_channel))
        self._leaderboard_stub = cast(
            "leaderboard_grpc.LeaderboardServiceAsyncStub",
            leaderboard_grpc.LeaderboardServiceStub(self._leaderboard_channel),
        )
        self._persistence_stub = cast(
            "persistence_grpc.PersistenceServiceAsyncStub",
            persistence_grpc.PersistenceServiceStub(self._persistence_channel),
        )
        self._answer_streams = AnswerStreams(
            self._answer_stub.StreamAnswers,
            self.send_answer_batch_unary,
            streams=self._answer_stream_count,
            max_age_s=self._answer_stream_max_age_s,
            deadline_s=self._answer_deadline_s,
        )
        self._batcher = AnswerBatcher(
            self.send_answer_batch,
            max_batch=self._batch_size,
            linger_s=self._linger_s,
            max_in_flight=self._batches_in_flight,
        )

    def _channel(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            address, options=_CHANNEL_OPTIONS, interceptors=self.telemetry.grpc_client_interceptors
        )

    @property
    def _quiz(self) -> quiz_grpc.QuizServiceAsyncStub:
        assert self._quiz_stub is not None, "Upstream.open() was not called"
        return self._quiz_stub

    @property
    def _leaderboard(self) -> leaderboard_grpc.LeaderboardServiceAsyncStub:
        assert self._leaderboard_stub is not None, "Upstream.open() was not called"
        return self._leaderboard_stub

    @property
    def _persistence(self) -> persistence_grpc.PersistenceServiceAsyncStub:
        assert self._persistence_stub is not None, "Upstream.open() was not called"
        return self._persistence_stub

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        """One unary call under the edge's call deadline."""
        response: _Response = await method(request, timeout=self._deadline_s)
        return response

    async def close(self, grace_s: float = 5.0) -> None:
        if self._batcher is not None:
            try:
                await asyncio.wait_for(self._batcher.close(), grace_s)
            except TimeoutError:
                log.warning("answers still in flight after %.1f s at shutdown", grace_s)
        if self._answer_streams is not None:
            try:
                await asyncio.wait_for(self._answer_streams.close(), grace_s)
            except TimeoutError:
                log.warning("answer streams still open after %.1f s at shutdown", grace_s)
        channels = (self._quiz_channel, self._answer_channel, self._leaderboard_channel, self._persistence_channel)
        for channel in channels:
            if channel is not None:
                await channel.close(grace_s)

    async def ready(self) -> bool:
        """Whether both services answer their health check with SERVING right now."""
        checks = [
            self._serving(self._quiz_channel, QUIZ_SERVICE),
            self._serving(self._leaderboard_channel, LEADERBOARD_SERVICE),
        ]
        return all(await asyncio.gather(*checks))

    async def _serving(self, channel: grpc.aio.Channel | None, service: str) -> bool:
        if channel is None:
            return False
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self._readiness_deadline_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    # --- QuizService ---

    async def send_answer_batch(self, answers: list[quiz_pb2.Answer]) -> Sequence[quiz_pb2.AnswerOutcome]:
        """One batch now, on an answer stream: what the micro-batcher sends."""
        assert self._answer_streams is not None, "Upstream.open() was not called"
        with self.telemetry.answer_batch([a.trace_context for a in answers]) as metadata:
            return await self._answer_streams.send(answers, metadata)

    async def send_answer_batch_unary(
        self, answers: list[quiz_pb2.Answer], metadata: TraceMetadata = ()
    ) -> Sequence[quiz_pb2.AnswerOutcome]:
        """One batch now, as a unary call: for the batches that no answer stream took."""
        assert self._answer_stub is not None, "Upstream.open() was not called"
        response = await self._answer_stub.BatchSubmitAnswers(
            quiz_pb2.BatchSubmitAnswersRequest(answers=answers), timeout=self._answer_deadline_s, metadata=metadata
        )
        return list(response.outcomes)

    async def submit_answer(self, answer: quiz_pb2.Answer) -> quiz_pb2.AnswerOutcome:
        assert self._batcher is not None, "Upstream.open() was not called"
        # The answer shares its call with others; its own trace travels inside it.
        answer.trace_context.update(current_trace_context())
        return await self._batcher.submit(answer)

    async def create_quiz(self, request: quiz_pb2.CreateQuizRequest) -> quiz_pb2.CreateQuizResponse:
        return await self._call(self._quiz.CreateQuiz, request)

    async def get_quiz(self, request: quiz_pb2.GetQuizRequest) -> quiz_pb2.GetQuizResponse:
        return await self._call(self._quiz.GetQuiz, request)

    async def start_session(self, request: quiz_pb2.StartSessionRequest) -> quiz_pb2.StartSessionResponse:
        response: quiz_pb2.StartSessionResponse = await self._quiz.StartSession(request, timeout=self._deadline_s)
        return response

    async def join_quiz(self, request: quiz_pb2.JoinQuizRequest) -> quiz_pb2.JoinQuizResponse:
        return await self._call(self._quiz.JoinQuiz, request)

    async def resume_quiz(self, request: quiz_pb2.ResumeQuizRequest) -> quiz_pb2.ResumeQuizResponse:
        return await self._call(self._quiz.ResumeQuiz, request)

    async def get_leaderboard(
        self, request: leaderboard_pb2.GetLeaderboardRequest
    ) -> leaderboard_pb2.GetLeaderboardResponse:
        return await self._call(self._leaderboard.GetLeaderboard, request)

    async def leave_quiz(self, request: quiz_pb2.LeaveQuizRequest) -> quiz_pb2.LeaveQuizResponse:
        return await self._call(self._quiz.LeaveQuiz, request)

    async def get_quiz_state(self, request: quiz_pb2.GetQuizStateRequest) -> quiz_pb2.GetQuizStateResponse:
        return await self._call(self._quiz.GetQuizState, request)

    async def get_media(self, media_id: str) -> MediaFile | None:
        """A stored picture or clip, or None when quiz_svc has none under that ID."""
        try:
            response: quiz_pb2.GetMediaResponse = await self._call(
                self._quiz.GetMedia, quiz_pb2.GetMediaRequest(media_id=media_id)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return MediaFile(response.media_id, response.content_type, response.content)

    # --- QuizService, the host's calls (each returns at least `state`) ---

    async def start_quiz(self, request: quiz_pb2.StartQuizRequest) -> quiz_pb2.StartQuizResponse:
        return await self._call(self._quiz.StartQuiz, request)

    async def next_question(self, request: quiz_pb2.NextQuestionRequest) -> quiz_pb2.NextQuestionResponse:
        return await self._call(self._quiz.NextQuestion, request)

    async def close_question(self, request: quiz_pb2.CloseQuestionRequest) -> quiz_pb2.CloseQuestionResponse:
        return await self._call(self._quiz.CloseQuestion, request)

    async def end_quiz(self, request: quiz_pb2.EndQuizRequest) -> quiz_pb2.EndQuizResponse:
        return await self._call(self._quiz.EndQuiz, request)

    async def set_leaderboard_visibility(
        self, request: quiz_pb2.SetLeaderboardVisibilityRequest
    ) -> quiz_pb2.SetLeaderboardVisibilityResponse:
        return await self._call(self._quiz.SetLeaderboardVisibility, request)

    async def kick_player(self, request: quiz_pb2.KickPlayerRequest) -> quiz_pb2.KickPlayerResponse:
        return await self._call(self._quiz.KickPlayer, request)

    # --- PersistenceService ---

    async def list_participants(
        self, request: persistence_pb2.ListParticipantsRequest
    ) -> persistence_pb2.ListParticipantsResponse:
        return await self._call(self._persistence.ListParticipants, request)

    async def list_answers(self, request: persistence_pb2.ListAnswersRequest) -> persistence_pb2.ListAnswersResponse:
        return await self._call(self._persistence.ListAnswers, request)

    async def list_user_results(
        self, request: persistence_pb2.ListUserResultsRequest
    ) -> persistence_pb2.ListUserResultsResponse:
        response: persistence_pb2.ListUserResultsResponse = await self._persistence.ListUserResults(
            request, timeout=self._deadline_s
        )
        return response

    # --- watches (no deadline: they live as long as the quiz has local sockets; keepalive guards them) ---
    # wait_for_ready: while no replica can be reached the call waits for the channel to connect instead
    # of failing at once, so a broken watch resumes the moment a replica serves again.

    async def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        call: _Stream[quiz_pb2.WatchQuizResponse] = self._quiz.WatchQuiz(
            quiz_pb2.WatchQuizRequest(quiz_id=quiz_id), wait_for_ready=True
        )
        async for update in _watched(call, quiz_id):
            yield update

    async def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[leaderboard_pb2.Leaderboard]:
        call: _Stream[leaderboard_pb2.WatchLeaderboardResponse] = self._leaderboard.WatchLeaderboard(
            leaderboard_pb2.WatchLeaderboardRequest(quiz_id=quiz_id), wait_for_ready=True
        )
        async for update in _watched(call, quiz_id):
            yield update.leaderboard


async def _watched(call: _Stream[_Response], quiz_id: str) -> AsyncIterator[_Response]:
    """A watch's messages; a quiz the service does not know ends it with FeedNotFound."""
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise FeedNotFound(quiz_id) from exc
        raise
    finally:
        call.cancel()
