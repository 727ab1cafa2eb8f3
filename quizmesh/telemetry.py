"""Traces, metrics and logs: one `setup_telemetry` per process, shared by its composition roots.

- Traces: an SDK TracerProvider per process, sampling parent-based with a ratio for new traces
  (QUIZMESH_TRACE_SAMPLE_RATIO, default 0.01; the standard OTEL_TRACES_SAMPLER variables when only
  they are set). Every per-answer and per-record span on a hot path is created only when its parent
  is sampled, so an unsampled answer costs a flag check, not a span. Spans are exported over OTLP
  only when OTEL_EXPORTER_OTLP_ENDPOINT is set. Context travels as W3C Trace
  Context: in gRPC metadata (the gRPC interceptors), in Kafka record headers (`TracedPublisher`,
  `RecordTraces`) and, where many answers share one call or one update covers many answers, in the
  `trace_context` fields of the contracts.
- Metrics: a MeterProvider whose Prometheus reader has its own registry, served on
  QUIZMESH_METRICS_PORT (unset: no endpoint and no-op instruments; 0: a free port). The embedded mode
  sets up telemetry once, so its four components share one endpoint.
- Logs: `configure_logging` (called by the CLI, which owns the process) writes ECS JSON with
  `trace.id`/`span.id`, or plain text in `quizmesh dev`; both redact anything shaped like a JWT.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from wsgiref.simple_server import WSGIServer

import ecs_logging
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry, start_http_server

from quizmesh.eventbus.ports import ConsumedRecord, EventPublisher, Record
from quizmesh.settings import SettingsError, env_choice, env_int, env_str

log = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]
LagSource = Callable[[], Mapping[tuple[str, int], int]]

# The contracts name W3C Trace Context, whatever OTEL_PROPAGATORS says for other hops.
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_PROPAGATOR.fields)
_TRACEPARENT = "traceparent"
# A traceparent is "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"; bit 0 of the flags is "sampled".
_TRACEPARENT_LENGTH = 55
# New traces sampled in production processes: tracing every answer cost 100-440 µs per answer.
DEFAULT_SAMPLE_RATIO = 0.01
# Latencies from 1 ms to 10 s: an answer is expected back within tens of milliseconds.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NOT_TRACED = filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection")))


# --- trace context carriers ---


def _unsampled_span() -> trace.NonRecordingSpan:
    """A new trace's root that the sampler left out: valid IDs, the sampled flag clear."""
    return trace.NonRecordingSpan(trace.SpanContext(random.getrandbits(128), random.getrandbits(64), is_remote=False))


def current_trace_context() -> dict[str, str]:
    """The current span's W3C Trace Context fields; empty when nothing is traced."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    if not span_context.trace_state:
        # What the propagator writes, without its regex and context look-ups: this runs per answer.
        trace_id, span_id, flags = span_context.trace_id, span_context.span_id, span_context.trace_flags
        return {_TRACEPARENT: f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def _sampled_traceparent(traceparent: str) -> bool:
    """Whether a W3C traceparent asks for sampling, read without parsing the rest of it."""
    return len(traceparent) == _TRACEPARENT_LENGTH and int(traceparent[-2:], 16) & 1 == 1


def carrier_sampled(carrier: Mapping[str, str]) -> bool:
    """Whether the context in `carrier` is a sampled one (an empty or invalid carrier is not)."""
    return _sampled_traceparent(carrier.get(_TRACEPARENT, ""))


def headers_sampled(headers: Headers) -> bool:
    """Whether Kafka record headers carry a sampled trace context."""
    for key, value in headers:
        if key == _TRACEPARENT:
            return _sampled_traceparent(value.decode("latin-1"))
    return False


def current_span_recording() -> bool:
    return trace.get_current_span().is_recording()


def context_from(carrier: Mapping[str, str]) -> Context:
    return _PROPAGATOR.extract(carrier)


def context_from_headers(headers: Headers) -> Context | None:
    """The context carried by Kafka record headers; None when they carry none."""
    carrier = {k: v.decode("latin-1") for k, v in headers if k in _TRACE_HEADERS}
    return _PROPAGATOR.extract(carrier) if carrier else None


def headers_with_context(headers: Headers, context: Context | None = None) -> Headers:
    """headers with their trace context replaced by `context`'s (the current one by default)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    kept = tuple((k, v) for k, v in headers if k not in _TRACE_HEADERS)
    return kept + tuple((k, v.encode("latin-1")) for k, v in carrier.items())


def _span_context_of(carrier: Mapping[str, str]) -> trace.SpanContext | None:
    span_context = trace.get_current_span(context_from(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


@contextlib.contextmanager
def linked_span(tracer: trace.Tracer, name: str, carrier: Mapping[str, str]) -> Iterator[trace.Span]:
    """A new trace's span linked to the span whose context `carrier` holds (e.g. one fan-out of an
    update that covers many answers: a child of none of them, linked to the update's publication)."""
    linked = _span_context_of(carrier)
    links = [Link(linked)] if linked is not None else []
    with tracer.start_as_current_span(name, context=Context(), links=links) as span:
        yield span


@dataclass
class AnswerTrace:
    """One answer's trace inside a batch: its span when sampled, and the headers its event carries on."""

    span: trace.Span | None
    headers: Headers


@contextlib.contextmanager
def answer_spans(tracer: trace.Tracer, name: str, carriers: Sequence[Mapping[str, str]]) -> Iterator[list[AnswerTrace]]:
    """One span per sampled answer of a batch, each a child of that answer's own context (the current
    one when it brought none) and linked to the batch's span: the answer stays one trace. An unsampled
    answer gets no span; its event carries its context on unchanged, so no later hop records it either."""
    batch = trace.get_current_span()
    batch_links: list[Link] | None = None
    answers: list[AnswerTrace] = []
    for carrier in carriers:
        if carrier and not carrier_sampled(carrier):
            answers.append(AnswerTrace(None, carrier_headers(carrier)))
            continue
        if not carrier and not batch.is_recording():
            answers.append(AnswerTrace(None, ()))
            continue
        if batch_links is None:
            batch_context = batch.get_span_context()
            batch_links = [Link(batch_context)] if batch_context.is_valid else []
        parent = context_from(carrier) if carrier else None
        span = tracer.start_span(name, context=parent, links=batch_links, kind=SpanKind.INTERNAL)
        answers.append(AnswerTrace(span, span_headers(span)))
    spans = [a.span for a in answers if a.span is not None]
    try:
        yield answers
    except BaseException as exc:
        for span in spans:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


def carrier_headers(carrier: Mapping[str, str]) -> Headers:
    """Trace context fields as Kafka record headers."""
    return tuple((k, v.encode("latin-1")) for k, v in carrier.items())


def span_headers(span: trace.Span) -> Headers:
    """Record headers that make `span` the parent of whatever consumes the record."""
    return headers_with_context((), trace.set_span_in_context(span))


def _has_context(headers: Headers) -> bool:
    return any(key in _TRACE_HEADERS for key, _ in headers)


class TracedPublisher:
    """An EventPublisher that gives every record a PRODUCER span: a child of the context the record's
    headers carry (else of the current one), whose context replaces it in the headers."""

    def __init__(self, inner: EventPublisher, tracer: trace.Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def publish(self, records: Sequence[Record], *, timeout_s: float) -> None:
        spans: list[trace.Span] = []
        traced: list[Record] = []
        current_recording = current_span_recording()
        for record in records:
            if not (headers_sampled(record.headers) or (current_recording and not _has_context(record.headers))):
                # Not sampled: the record keeps whatever context it carries, and gets no span.
                traced.append(record)
                continue
            span = self._tracer.start_span(
                f"{record.topic} publish",
                context=context_from_headers(record.headers),
                kind=SpanKind.PRODUCER,
                attributes={"messaging.destination.name": record.topic, "messaging.kafka.message.key": record.key},
            )
            spans.append(span)
            headers = headers_with_context(record.headers, trace.set_span_in_context(span))
            traced.append(Record(record.topic, record.key, record.value, headers))
        try:
            await self._inner.publish(traced, timeout_s=timeout_s)
        except BaseException as exc:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    async def close(self) -> None:
        await self._inner.close()


class RecordTraces:
    """Processing spans for consumed records, each a child of the context its headers carry.

    With `remember_links`, the span contexts are kept per record key (the quiz ID) until
    `publication_headers` takes them: a coalesced update then links to the answers it reflects.
    """

    def __init__(self, tracer: trace.Tracer, span_name: str, *, remember_links: bool = False, max_links: int = 64):
        self._tracer = tracer
        self._span_name = span_name
        self._remember = remember_links
        self._max_links = max_links
        self._pending: dict[str, collections.deque[trace.SpanContext]] = {}

    @classmethod
    def disabled(cls) -> RecordTraces:
        return cls(trace.NoOpTracer(), "")

    @contextlib.contextmanager
    def processing(self, records: Sequence[ConsumedRecord]) -> Iterator[None]:
        spans: list[trace.Span] = []
        for record in records:
            if not headers_sampled(record.headers):
                continue
            parent = context_from_headers(record.headers)
            if parent is None:
                continue
            span = self._tracer.start_span(
                self._span_name,
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
            )
            spans.append(span)
            span_context = span.get_span_context()
            if self._remember and span_context.is_valid:
                pending = self._pending.setdefault(record.key, collections.deque(maxlen=self._max_links))
                pending.append(span_context)
        try:
            yield
        except BaseException as exc:
            for span in spans:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    def publication(self, key: str, span_name: str) -> dict[str, str]:
        """The trace context for what covers everything processed for `key` since the last call (a
        coalesced update): a new trace's span linked to those records' spans (the newest `max_links`)."""
        links = [Link(c) for c in self._pending.pop(key, ())]
        span = self._tracer.start_span(span_name, context=Context(), links=links, kind=SpanKind.INTERNAL)
        span.set_attribute("quizmesh.linked_records", len(links))
        span.end()
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier


# --- metrics ---


def _seconds_histogram(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    return meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
    )


class QuizMetrics:
    """quiz_svc's instruments (Prometheus names in comments)."""

    def __init__(self, meter: metrics.Meter) -> None:
        # quizmesh_quiz_joins_total
        self.joins = meter.create_counter("quizmesh_quiz_joins", description="Players who joined a quiz")
        # quizmesh_quiz_answers_accepted_total
        self.answers_accepted = meter.create_counter(
            "quizmesh_quiz_answers_accepted", description="Answers judged and durable in the event bus"
        )
        # quizmesh_quiz_answers_rejected_total{reason}
        self.answers_rejected = meter.create_counter(
            "quizmesh_quiz_answers_rejected", description="Answers refused, by reason"
        )
        # quizmesh_quiz_answer_batch_duration_seconds
        self.batch_duration = _seconds_histogram(
            meter, "quizmesh_quiz_answer_batch_duration", "Time to judge and publish one batch of answers"
        )


class EdgeMetrics:
    """The edge's instruments (Prometheus names in comments)."""

    def __init__(self, meter: metrics.Meter) -> None:
        # quizmesh_edge_connections: the HPA's per-pod signal
        self.connections = meter.create_up_down_counter(
            "quizmesh_edge_connections", description="Open WebSocket connections"
        )
        # quizmesh_edge_answer_latency_seconds
        self.answer_latency = _seconds_histogram(
            meter, "quizmesh_edge_answer_latency", "From a submit_answer frame received to its reply sent"
        )
        # quizmesh_edge_answer_to_leaderboard_seconds
        self.answer_to_leaderboard = _seconds_histogram(
            meter,
            "quizmesh_edge_answer_to_leaderboard",
            "From the newest answer a leaderboard update reflects (server time) to its fan-out",
        )
        # quizmesh_edge_broadcast_duration_seconds
        self.broadcast_duration = _seconds_histogram(
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
            token = otel_context.attach(trace.set_span_in_context(_unsampled_span()))
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
    def answer_batch(self, carriers: Sequence[Mapping[str, str]]) -> Iterator[None]:
        """The span of one batched call: a new trace (whichever answer's task flushed it) linked to
        every sampled answer it carries; each answer's own trace continues in quiz_svc. A batch of
        unsampled answers gets no span: the call runs in the flushing answer's unsampled context."""
        links = [Link(c) for c in map(_span_context_of, filter(carrier_sampled, carriers)) if c is not None]
        if not links:
            yield
            return
        with self.tracer.start_as_current_span(
            "edge answer batch", context=Context(), links=links, attributes={"quizmesh.answers": len(carriers)}
        ):
            yield


# --- the process's telemetry ---


@dataclass(frozen=True)
class TelemetrySettings:
    metrics_port: int | None  # None: no endpoint; 0: any free port
    metrics_host: str
    otlp_endpoint: str | None
    # None: the SDK's sampler from the standard OTEL_TRACES_SAMPLER variables (set, and no ratio of ours)
    sample_ratio: float | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetrySettings:
        port = env.get("QUIZMESH_METRICS_PORT", "")
        return cls(
            metrics_port=env_int(env, "QUIZMESH_METRICS_PORT", 0) if port else None,
            metrics_host=env_str(env, "QUIZMESH_METRICS_HOST", "127.0.0.1"),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            sample_ratio=_sample_ratio(env),
        )

    def sampler(self) -> Sampler | None:
        if self.sample_ratio is None:
            return None
        return ParentBased(RatioOrLinked(self.sample_ratio))


class RatioOrLinked(Sampler):
    """Samples a new trace that links to a sampled span (a batch carrying a sampled answer, an update
    reflecting one), else the given ratio of new traces: a sampled answer's links then lead somewhere."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if links and any(link.context.trace_flags.sampled for link in links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"RatioOrLinked{{{self._ratio.rate}}}"


def _sample_ratio(env: Mapping[str, str]) -> float | None:
    raw = env.get("QUIZMESH_TRACE_SAMPLE_RATIO", "")
    if not raw:
        return None if env.get("OTEL_TRACES_SAMPLER") else DEFAULT_SAMPLE_RATIO
    try:
        ratio = float(raw)
    except ValueError:
        raise SettingsError(f"QUIZMESH_TRACE_SAMPLE_RATIO={raw!r} is not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise SettingsError(f"QUIZMESH_TRACE_SAMPLE_RATIO={ratio} must be between 0 and 1")
    return ratio


class Telemetry:
    """The tracer and meter providers of one process, and its metrics endpoint."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        *,
        metrics_server: tuple[WSGIServer, threading.Thread] | None = None,
        new_trace_ratio: float | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        # The share of new traces the sampler keeps (None: the SDK's sampler decides, e.g. from OTEL_TRACES_SAMPLER)
        self.new_trace_ratio = new_trace_ratio
        self._metrics_server = metrics_server
        self._lag_sources: list[tuple[str, LagSource]] = []
        self._lag_gauge: metrics.ObservableGauge | None = None

    @classmethod
    def disabled(cls) -> Telemetry:
        """No spans, no-op instruments: for components run without a composition root's telemetry."""
        return cls(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())

    @property
    def tracing(self) -> bool:
        return isinstance(self.tracer_provider, TracerProvider)

    @property
    def metrics_port(self) -> int | None:
        return int(self._metrics_server[0].server_port) if self._metrics_server else None

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def grpc_server_interceptors(self) -> list[Any]:
        if not self.tracing:
            return []
        return [aio_server_interceptor(self.tracer_provider, filter_=_NOT_TRACED)]  # type: ignore[no-untyped-call]

    def grpc_client_interceptors(self) -> list[Any]:
        if not self.tracing:
            return []
        return list(aio_client_interceptors(self.tracer_provider, filter_=_NOT_TRACED))  # type: ignore[no-untyped-call]

    def traced_publisher(self, inner: EventPublisher) -> EventPublisher:
        return TracedPublisher(inner, self.tracer("quizmesh.eventbus")) if self.tracing else inner

    def record_traces(self, span_name: str, *, remember_links: bool = False) -> RecordTraces:
        return RecordTraces(self.tracer("quizmesh.eventbus"), span_name, remember_links=remember_links)

    def watch_consumer_lag(self, group: str, source: LagSource) -> None:
        """Exports `source`'s per-partition lag (records behind the partition's end) as
        quizmesh_consumer_lag{group, topic, partition}."""
        self._lag_sources.append((group, source))
        if self._lag_gauge is None:
            self._lag_gauge = self.meter("quizmesh.eventbus").create_observable_gauge(
                "quizmesh_consumer_lag",
                callbacks=[self._observe_lag],
                description="Records in a partition not yet consumed by the group",
            )

    def _observe_lag(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(lag, {"group": group, "topic": topic, "partition": str(partition)})
            for group, source in self._lag_sources
            for (topic, partition), lag in source().items()
        ]

    def close(self) -> None:
        if self._metrics_server is not None:
            server, thread = self._metrics_server
            server.shutdown()
            server.server_close()
            thread.join(5)
        if isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()
        if isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.shutdown()


def setup_telemetry(
    service_name: str, env: Mapping[str, str], *, span_exporter: SpanExporter | None = None
) -> Telemetry:
    """The telemetry of one process: call once, from the process's entry, and close it at exit.

    `span_exporter` adds an exporter that sees every span as it ends (tests use an in-memory one)."""
    settings = TelemetrySettings.from_env(env)
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    tracer_provider = TracerProvider(resource=resource, sampler=settings.sampler())
    if settings.otlp_endpoint:
        tracer_provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings.otlp_endpoint)))
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    _instrument_drivers(tracer_provider)
    if settings.metrics_port is None:
        return Telemetry(tracer_provider, metrics.NoOpMeterProvider(), new_trace_ratio=settings.sample_ratio)
    registry = CollectorRegistry(auto_describe=True)
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)], resource=resource)
    try:
        server = start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        raise SettingsError(
            f"QUIZMESH_METRICS_PORT={settings.metrics_port}: cannot listen on "
            f"{settings.metrics_host}:{settings.metrics_port}: {exc.strerror}"
        ) from None
    telemetry = Telemetry(tracer_provider, meter_provider, metrics_server=server, new_trace_ratio=settings.sample_ratio)
    log.info("metrics of %s at http://%s:%d/metrics", service_name, settings.metrics_host, telemetry.metrics_port)
    return telemetry


def _instrument_drivers(tracer_provider: TracerProvider) -> None:
    """Redis commands and asyncpg queries become child spans of whatever answer they serve.

    The instrumentors patch the driver classes process-wide; re-instrumenting binds them to this
    provider (a process sets up telemetry once, tests several times).
    """
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), AsyncPGInstrumentor()):  # type: ignore[no-untyped-call]
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=tracer_provider)


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


# --- logs ---

# header.payload.signature, base64url: how every credential quizmesh issues looks.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    return _JWT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Redacts JWT-shaped strings from the whole formatted line, so a credential is caught wherever it
    hides: message, arguments, exception text or extra fields (a filter sees only msg and args)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


class TraceIdsForEcs(logging.Filter):
    """ecs-logging maps only Elastic APM's record attributes to `trace.id`/`span.id`; this fills
    them from the current OpenTelemetry span."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.elasticapm_trace_id = f"{span_context.trace_id:032x}"
            record.elasticapm_span_id = f"{span_context.span_id:016x}"
        return True


LogFormat = Literal["ecs", "plain"]


def log_handler(log_format: LogFormat, stream: Any = None, *, service_name: str = "quizmesh") -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "ecs":
        handler.addFilter(TraceIdsForEcs())
        inner: logging.Formatter = ecs_logging.StdlibFormatter(
            extra={"service.name": service_name}, exclude_fields=("process", "log.original")
        )
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(RedactingFormatter(inner))
    return handler


def configure_logging(level: str, env: Mapping[str, str], *, default_format: LogFormat, service_name: str) -> None:
    """The process's root logging: QUIZMESH_LOG_FORMAT=ecs|plain, else `default_format`."""
    log_format = env_choice(env, "QUIZMESH_LOG_FORMAT", default_format, ("ecs", "plain"))
    root = logging.getLogger()
    root.handlers[:] = [log_handler(log_format, service_name=service_name)]
    root.setLevel(level.upper())
