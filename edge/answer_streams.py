"""Answer batches as messages on long-lived StreamAnswers calls to quiz_svc.

A batch sent as a message on an open call costs quiz_svc less than half, and the edge about a third less,
than the same batch as a unary BatchSubmitAnswers call (docs/performance.md §13). The edge
keeps a few calls open and sends its batches over them in turn: with several replicas each call is placed
by the channel's balancer like any call, and a call older than its age limit is closed once its answers
are back and replaced, so that the load spreads again after replicas come and go.

A batch the server never read goes as a unary call instead: one sent on a call that had already ended,
one that a draining replica left unread when it ended its calls (OK), and every batch while quiz_svc does
not know StreamAnswers (UNIMPLEMENTED, during an upgrade). A call that fails leaves its unanswered batches
to fail with its status, as a unary call would: the server may have judged them, and the player's
retry, which is safe, finds out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Final, Protocol

import grpc

from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

log = logging.getLogger(__name__)

TraceMetadata = tuple[tuple[str, str], ...]
UnaryBatch = Callable[[list[quiz_pb2.Answer], TraceMetadata], Awaitable[Sequence[quiz_pb2.AnswerOutcome]]]

# How long batches go as unary calls after a replica drained a stream (it is stopping, and a new stream
# may land on it again) and after quiz_svc refused the method (an older release).
_UNARY_AFTER_DRAIN_S: Final = 1.0
_UNARY_AFTER_UNIMPLEMENTED_S: Final = 60.0


class AnswerCall(Protocol):
    """A StreamAnswers call, as grpc.aio returns it."""

    def __aiter__(self) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]: ...

    async def write(self, request: quiz_pb2.StreamAnswersRequest) -> None: ...

    async def done_writing(self) -> None: ...

    def cancel(self) -> bool: ...


class _Unread(Exception):
    """The call ended without answering the batch, which the server never read."""


class _Stream:
    """One open call: its batches awaiting an answer, and the task that reads the answers."""

    def __init__(self, call: AnswerCall, opened_at: float) -> None:
        self.call = call
        self.opened_at = opened_at
        self.waiting: dict[int, asyncio.Future[Sequence[quiz_pb2.AnswerOutcome]]] = {}
        self.writing = asyncio.Lock()  # a call takes one write at a time
        self.ended = False
        self.retiring = False
        self.abandoned = False


class AnswerStreams:
    """Sends each batch on one of `streams` open calls in turn, opening them as needed."""

    def __init__(
        self,
        open_call: Callable[[], AnswerCall],
        unary: UnaryBatch,
        *,
        streams: int,
        max_age_s: float,
        deadline_s: float,
    ) -> None:
        self._open_call = open_call
        self._unary = unary
        self._slots: list[_Stream | None] = [None] * streams
        self._turn = itertools.cycle(range(streams))
        self._max_age_s = max_age_s
        self._deadline_s = deadline_s
        self._batch_ids = itertools.count(1)
        self._unary_until = 0.0
        # Readers of every call not yet ended, and the tasks closing retired calls' writing side.
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, answers: list[quiz_pb2.Answer], trace: TraceMetadata) -> Sequence[quiz_pb2.AnswerOutcome]:
        now = time.monotonic()
        if now < self._unary_until:
            return await self._unary(answers, trace)
        stream = self._stream(next(self._turn), now)
        batch_id = next(self._batch_ids)
        answered: asyncio.Future[Sequence[quiz_pb2.AnswerOutcome]] = asyncio.get_running_loop().create_future()
        stream.waiting[batch_id] = answered
        request = quiz_pb2.StreamAnswersRequest(batch_id=batch_id, answers=answers, trace_context=dict(trace))
        written = False
        try:
            async with asyncio.timeout(self._deadline_s):
                try:
                    async with stream.writing:
                        await stream.call.write(request)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    # The call ended before this batch went out: the reader has its status.
                    stream.waiting.pop(batch_id, None)
                    raise _Unread() from None
                written = True
                return await answered
        except _Unread:
            pass
        except TimeoutError:
            stream.waiting.pop(batch_id, None)
            if not written:
                # The server took no write in all that time: the call is stuck, and ends here.
                stream.abandoned = True
                stream.call.cancel()
            raise _deadline_exceeded(self._deadline_s) from None
        return await self._unary(answers, trace)

    def _stream(self, slot: int, now: float) -> _Stream:
        stream = self._slots[slot]
        if stream is not None and not stream.ended and now - stream.opened_at > self._max_age_s:
            self._retire(stream)
            stream = None
        if stream is None or stream.ended:
            stream = _Stream(self._open_call(), now)
            self._track(self._read(stream))
            self._slots[slot] = stream
        return stream

    def _track(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retire(self, stream: _Stream) -> None:
        """Stops writing to the call: the server answers what it has read and ends it."""
        stream.retiring = True
        self._track(self._finish_writing(stream))

    async def _finish_writing(self, stream: _Stream) -> None:
        try:
            async with stream.writing:
                await stream.call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # it ended already; the reader has its status

    async def _read(self, stream: _Stream) -> None:
        failure: Exception | None = None
        try:
            async for response in stream.call:
                answered = stream.waiting.pop(response.batch_id, None)
                if answered is not None and not answered.done():
                    answered.set_result(response.outcomes)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.warning("quiz_svc does not serve StreamAnswers; answers go as unary calls for a while")
                self._unary_until = time.monotonic() + _UNARY_AFTER_UNIMPLEMENTED_S
            else:
                failure = _deadline_exceeded(self._deadline_s) if stream.abandoned else exc
        else:
            if stream.waiting and not stream.retiring:
                self._unary_until = time.monotonic() + _UNARY_AFTER_DRAIN_S
        finally:
            stream.ended = True
        for answered in stream.waiting.values():
            if not answered.done():
                answered.set_exception(_Unread() if failure is None else _copy(failure))
        stream.waiting.clear()

    async def close(self) -> None:
        """Ends every call once its batches are answered."""
        for stream in self._slots:
            if stream is not None and not stream.ended and not stream.retiring:
                self._retire(stream)
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _copy(exc: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
    """The call's failure for one batch's caller: each raises an exception object of its own."""
    return grpc.aio.AioRpcError(
        exc.code(), exc.initial_metadata(), exc.trailing_metadata(), exc.details(), exc.debug_error_string()
    )


def _deadline_exceeded(deadline_s: float) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        f"no answer to the batch within {deadline_s:.1f} s",
    )
