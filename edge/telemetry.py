"""The edge's telemetry: its instruments, the span around each client frame, and the spans of a
leaderboard fan-out and of a batched answer call."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

from quizmesh.telemetry import Telemetry, seconds_histogram
from quizmesh.tracing import call_metadata, carrier_sampled, linked_span, span_context_of, unsampled_span


class EdgeMetrics:
    """The edge's instruments (Prometheus names in comments)."""

    def __init__(self, meter: metrics.Meter) -> None:
        # quizmesh_edge_connections: the HPA's per-pod signal
        self.connections = meter.create_up_down_counter(
            "quizmesh_edge_connections", description="Open WebSocket connections"
        )
        # quizmesh_edge_answer_latency_seconds
        self.answer_latency = seconds_histogram(
            meter, "quizmesh_edge_answer_latency", "From a submit_answer frame received to its reply sent"
        )
        # quizmesh_edge_answer_to_leaderboard_seconds
        self.answer_to_leaderboard = seconds_histogram(
            meter,
            "quizmesh_edge_answer_to_leaderboard",
            "From the newest answer a leaderboard update reflects (server time) to its fan-out",
        )
        # quizmesh_edge_broadcast_duration_seconds
        self.broadcast_duration = seconds_histogram(
            meter, "quizmesh_edge_broadcast_duration", "Time to fan one leaderboard update out to local sockets"
        )
        # quizmesh_edge_leaderboard_messages_total
        self.leaderboard_messages = meter.create_counter(
            "quizmesh_edge_leaderboard_messages", description="leaderboard_updated frames queued to sockets"
        )
        # quizmesh_edge_errors_total{code}
        self.errors = meter.create_counter("quizmesh_edge_errors", description="error frames sent, by code")


@dataclass
class ClientMessage:
    """What handling one client frame came to, filled in by the handler."""

    message_type: str = ""
    error_code: str = ""


class EdgeTelemetry:
    """The edge's tracer, instruments and gRPC client interceptors."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.tracer = telemetry.tracer("edge")
        self._new_trace_ratio = telemetry.new_trace_ratio if telemetry.tracing else None
        self.metrics = EdgeMetrics(telemetry.meter("edge"))
        self.grpc_client_interceptors = telemetry.grpc_client_interceptors()

    @classmethod
    def disabled(cls) -> EdgeTelemetry:
        return cls(Telemetry.disabled())

    @contextlib.contextmanager
    def client_message(self) -> Iterator[ClientMessage]:
        """A SERVER span around handling one client frame; an answer's trace starts here.

        A frame is a new trace's root, so with a ratio sampler the decision is made here first: building
        an unsampled span through the SDK cost ≈ 10% of the edge's CPU per answer. A frame left out still
        carries an unsampled context, so no later hop starts a trace of its own for it.
        """
        started = time.perf_counter()
        handled = ClientMessage()
        ratio = self._new_trace_ratio
        if ratio is not None and random.random() >= ratio:
            token = otel_context.attach(trace.set_span_in_context(unsampled_span()))
            try:
                yield handled
            finally:
                otel_context.detach(token)
        else:
            with self.tracer.start_as_current_span("edge client message", kind=SpanKind.SERVER) as span:
                yield handled
                span.set_attribute("quizmesh.message.type", handled.message_type)
                if handled.error_code:
                    span.set_attribute("quizmesh.error.code", handled.error_code)
        if handled.error_code:
            self.metrics.errors.add(1, {"code": handled.error_code})
        if handled.message_type == "submit_answer":
            self.metrics.answer_latency.record(time.perf_counter() - started)

    @contextlib.contextmanager
    def broadcast(self, trace_context: Mapping[str, str], last_answer_ms: int, recipients: int) -> Iterator[None]:
        """Times one leaderboard fan-out; its span links to the update's publication."""
        started = time.perf_counter()
        with linked_span(self.tracer, "edge leaderboard fan-out", trace_context) as span:
            span.set_attribute("quizmesh.recipients", recipients)
            yield
        self.metrics.broadcast_duration.record(time.perf_counter() - started)
        self.metrics.leaderboard_messages.add(recipients)
        if last_answer_ms:
            self.metrics.answer_to_leaderboard.record(max(0.0, time.time() - last_answer_ms / 1000))

    @contextlib.contextmanager
    def answer_batch(self, carriers: Sequence[Mapping[str, str]]) -> Iterator[tuple[tuple[str, str], ...]]:
        """The span of one batched call, and the metadata that carries it to quiz_svc: a new trace
        (whichever answer's task flushed it) linked to every sampled answer it carries; each answer's own
        trace continues in quiz_svc. A batch of unsampled answers gets no span and sends no trace context,
        so no hop of the call records anything (the call goes without the tracing interceptor: see
        quizmesh.tracing.traced_call)."""
        links = [Link(c) for c in map(span_context_of, filter(carrier_sampled, carriers)) if c is not None]
        if not links:
            yield ()
            return
        with self.tracer.start_as_current_span(
            "edge answer batch",
            context=Context(),
            kind=SpanKind.CLIENT,
            links=links,
            attributes={"quizmesh.answers": len(carriers)},
        ):
            yield call_metadata()
