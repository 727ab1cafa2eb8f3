"""`python -m bench calls`: the CPU one batch of answers costs in gRPC alone, by how the call is made.

A grpc.aio echo of a `BatchSubmitAnswersRequest` of three answers between two processes on loopback:
a unary call without interceptors, a unary call with the interceptors every quizmesh server and client
installs (OpenTelemetry's, sampling new traces at the default ratio, and `StreamsEndInTheirCall`), and one
message each way on an open bidirectional stream with those interceptors. The client's CPU is its own
process time; the server's is read from /proc around the client's calls. At 500 answers/s the edge's
batches hold about three answers, so these figures, per batch, are most of what an answer pays in gRPC
(docs/performance.md §11a).

Then the answer path's own code at both ends: the edge's `Upstream` sending batches of three answers to
quiz_svc's `QuizServicer`, whose game refuses every answer at once (no Redis, no Kafka), as unary
`BatchSubmitAnswers` calls and as messages on `StreamAnswers` calls (docs/performance.md §13).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc
import uvloop
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider

from bench.procs import cpu_seconds, free_port
from edge.upstream import Upstream
from quiz_svc.domain import AnswerRefusal
from quiz_svc.grpc_api import QuizServicer
from quiz_svc.ports import UpdateFeed
from quiz_svc.service import AnswerInput, AnswerOutcome, QuizGame, SystemClock
from quizmesh.grpc_server import StreamsEndInTheirCall
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc
from quizmesh.telemetry import DEFAULT_SAMPLE_RATIO, Telemetry, TelemetrySettings

# Each variant: whether the interceptors are installed, and whether the batch goes as a unary call.
VARIANTS = {
    "unary, no interceptors": (False, True),
    "unary, quizmesh's interceptors": (True, True),
    "stream message, quizmesh's interceptors": (True, False),
}
# The answer path's code at both ends, by how the edge sends its batches.
ANSWER_PATHS = {
    "edge to quiz_svc, BatchSubmitAnswers": "unary",
    "edge to quiz_svc, StreamAnswers": "stream",
}
_SERVICE = "bench.Echo"
_WARM_UP = 200


class _RefusingGame:
    """Just what QuizServicer's answer methods call: every answer refused at once."""

    async def submit_answers(self, inputs: Sequence[AnswerInput]) -> list[AnswerOutcome]:
        return [AnswerRefusal.QUESTION_CLOSED] * len(inputs)


def _request() -> pb.BatchSubmitAnswersRequest:
    request = pb.BatchSubmitAnswersRequest()
    for n in range(3):
        request.answers.add(player_token=f"token-{n}" * 8, question_index=n, choice=n)
    return request


def _tracer_provider() -> TracerProvider:
    return TracerProvider(sampler=TelemetrySettings(sample_ratio=DEFAULT_SAMPLE_RATIO).sampler())


async def _serve(port: int, intercepted: bool) -> None:
    async def unary(request: bytes, _: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def stream(requests: AsyncIterator[bytes], _: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    interceptors = [StreamsEndInTheirCall(), aio_server_interceptor(_tracer_provider())] if intercepted else []  # type: ignore[no-untyped-call]
    server = grpc.aio.server(interceptors=interceptors)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _serve_quiz(port: int) -> None:
    server = grpc.aio.server()
    # No WatchQuiz is called here, so no feed is needed.
    game, feed = cast(QuizGame, _RefusingGame()), cast(UpdateFeed, None)
    servicer = QuizServicer(game, feed, SystemClock(), Telemetry.disabled())
    quiz_service_pb2_grpc.add_QuizServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _answer(port: int, path: str, calls: int) -> dict[str, float]:
    upstream = Upstream(f"127.0.0.1:{port}", "127.0.0.1:9")
    await upstream.open()
    answers = list(_request().answers)
    send = upstream.send_answer_batch_unary if path == "unary" else upstream.send_answer_batch
    try:
        for _ in range(_WARM_UP):
            await send(answers)
        started, cpu = time.monotonic(), time.process_time()
        for _ in range(calls):
            await send(answers)
        return {"client_cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - started}
    finally:
        await upstream.close(1.0)


async def _call(port: int, intercepted: bool, unary: bool, calls: int) -> dict[str, float]:
    interceptors = list(aio_client_interceptors(_tracer_provider())) if intercepted else []  # type: ignore[no-untyped-call]
    payload = _request().SerializeToString()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as channel:
        if unary:
            call = channel.unary_unary(f"/{_SERVICE}/Unary")
            for _ in range(_WARM_UP):
                await call(payload)
            started, cpu = time.monotonic(), time.process_time()
            for _ in range(calls):
                await call(payload, timeout=5)
        else:
            stream = channel.stream_stream(f"/{_SERVICE}/Stream")()
            for _ in range(_WARM_UP):
                await stream.write(payload)
                await stream.read()
            started, cpu = time.monotonic(), time.process_time()
            for _ in range(calls):
                await stream.write(payload)
                await stream.read()
            await stream.done_writing()
        return {"client_cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - started}


async def _ready(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10.0)


def _roles(calls: int) -> dict[str, tuple[list[str], list[str]]]:
    """Each variant's arguments to this module for its server and for its client, the port left out."""
    roles = {
        name: (["--serve", str(int(intercepted))], ["--call", str(int(intercepted)), str(int(unary)), str(calls)])
        for name, (intercepted, unary) in VARIANTS.items()
    }
    for name, path in ANSWER_PATHS.items():
        roles[name] = (["--serve-quiz"], ["--answer", path, str(calls)])
    return roles


async def run(calls: int = 5_000) -> dict[str, Any]:
    """µs per batch of each variant: client CPU, server CPU, and the wall time of one round trip."""
    results: dict[str, Any] = {"calls": calls}
    for name, (serve, call) in _roles(calls).items():
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.calls", serve[0], str(port), *serve[1:]
        )
        try:
            await _ready(f"127.0.0.1:{port}")
            server_before = cpu_seconds(server.pid)
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.calls", call[0], str(port), *call[1:], stdout=asyncio.subprocess.PIPE
            )
            out, _ = await client.communicate()
            server_cpu = cpu_seconds(server.pid) - server_before
        finally:
            server.terminate()
            await server.wait()
        measured = json.loads(out)
        results[name] = {
            "client_cpu_us": round(measured["client_cpu_s"] / calls * 1e6, 1),
            "server_cpu_us": round(server_cpu / calls * 1e6, 1),
            "round_trip_us": round(measured["wall_s"] / calls * 1e6, 1),
        }
        print(f"{name:42s} {results[name]}", file=sys.stderr, flush=True)
    return results


def main() -> None:
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "--serve":
        uvloop.run(_serve(port, sys.argv[3] == "1"))
    elif role == "--serve-quiz":
        uvloop.run(_serve_quiz(port))
    elif role == "--answer":
        print(json.dumps(uvloop.run(_answer(port, sys.argv[3], int(sys.argv[4])))))
    else:
        intercepted, unary, calls = sys.argv[3] == "1", sys.argv[4] == "1", int(sys.argv[5])
        print(json.dumps(uvloop.run(_call(port, intercepted, unary, calls))))


if __name__ == "__main__":
    main()
