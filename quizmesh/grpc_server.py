"""The gRPC server every service runs: its servicers plus truthful health checking and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quizmesh.grpc_reflection import enable_reflection
from quizmesh.process import CannotStart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it to a server."""

    full_name: str  # e.g. "quizmesh.quiz.v1.QuizService"
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object
    # Methods whose servicer makes its call's span itself, and only when the caller sent a trace context
    # (quizmesh.tracing.traced_call): on a hot path, the tracing interceptor's cost per call is too high.
    traced_by_servicer: tuple[str, ...] = ()
    # Called when the server stops taking calls, before the grace for those in flight: a servicer ends
    # the long-lived calls that it can end cleanly, whose callers then go to another replica.
    on_stop: Callable[[], None] | None = None

    def full_method(self, method: str) -> str:
        return f"/{self.full_name}/{method}"


class StreamsEndInTheirCall(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio has no type stubs
    """Runs each response-streaming handler written as an async generator as a coroutine that writes
    its responses, and closes the generator in the call's own task, however the call ends.

    grpc.aio iterates such a generator itself. When the client cancels while a write waits on flow
    control, it abandons the generator at its `yield`, and the event loop closes it later in a task of
    its own. A generator that attached a context then cannot detach it: OpenTelemetry's server
    interceptor wraps every stream in one that does, hence `ERROR opentelemetry.context Failed to
    detach context` (open-telemetry/opentelemetry-python-contrib#2357). The servicers' own `finally`
    blocks (unsubscribing a watcher) also ran late, whenever the generator was collected.

    Installed outermost, it wraps what the other interceptors made of the handler.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        streaming = handler.stream_stream if handler.request_streaming else handler.unary_stream
        if not inspect.isasyncgenfunction(streaming):
            return handler
        make = (
            grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        )
        return make(
            _written(streaming),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _written(
    responses_of: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncGenerator[Any, None]],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]:
    async def write_all(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        responses = responses_of(request, context)
        async with contextlib.aclosing(responses):
            async for response in responses:
                await context.write(response)

    return write_all


class GrpcServer:
    """Serves NOT_SERVING until told the service is ready, and again from the start of shutdown."""

    def __init__(
        self,
        address: str,
        bindings: Sequence[ServiceBinding],
        *,
        interceptors: Sequence[Any] = (),
        lame_duck_s: float = 0.5,
    ):
        self._lame_duck_s = lame_duck_s
        self._stopping = False
        self._server = grpc.aio.server(
            interceptors=[StreamsEndInTheirCall(), *interceptors],
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                # gRPC would share a port another process already listens on, the connections split
                # between the two; a port taken must stop this process instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health.aio.HealthServicer()
        self._names = [b.full_name for b in bindings]
        self._on_stop = [b.on_stop for b in bindings if b.on_stop is not None]
        for binding in bindings:
            binding.add_to_server(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        enable_reflection([*self._names, health.SERVICE_NAME], self._server)
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind to address", which says no more than a port of 0
            self.port = 0
        if self.port == 0:
            raise CannotStart(
                f"cannot listen on {address}: another process holds the port, or the address is not this "
                "machine's. Stop that process, or give this service another address (its QUIZMESH_*_ADDR)"
            )

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self._set_all(status)

    async def ready(self, on_ready: Callable[[int], None] | None) -> None:
        """SERVING from now on, and the port told to whoever started the service (apps/launcher.py waits for it)."""
        await self.set_serving(True)
        if on_ready is not None:
            on_ready(self.port)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self._names]:
            await self._health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        """Ordered shutdown: NOT_SERVING first, then stop accepting and let in-flight calls finish.

        Between the two the server keeps serving for a short lame-duck period: a call a client sent just
        before it saw NOT_SERVING (or before its balancer did) still arrives, and is served rather than
        cancelled as it would be once the server stops accepting.
        """
        if self._stopping:
            await self._server.stop(grace_s)
            return
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        await asyncio.sleep(self._lame_duck_s)
        for on_stop in self._on_stop:
            on_stop()
        await self._server.stop(grace_s)
