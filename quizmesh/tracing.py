"""Trace context as it travels between processes: W3C Trace Context in gRPC metadata, in Kafka record
headers and in the contracts' `trace_context` fields, and the spans built from it.

Every per-answer and per-record span on a hot path is created only when its parent is sampled, so an
unsampled answer costs a flag check, not a span.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Headers = tuple[tuple[str, bytes], ...]

# The contracts name W3C Trace Context, whatever OTEL_PROPAGATORS says for other hops.
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_PROPAGATOR.fields)
_TRACEPARENT = "traceparent"
# A traceparent is "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"; bit 0 of the flags is "sampled".
_TRACEPARENT_LENGTH = 55


def unsampled_span() -> trace.NonRecordingSpan:
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


def span_context_of(carrier: Mapping[str, str]) -> trace.SpanContext | None:
    span_context = trace.get_current_span(context_from(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


@contextlib.contextmanager
def linked_span(tracer: trace.Tracer, name: str, carrier: Mapping[str, str]) -> Iterator[trace.Span]:
    """A new trace's span linked to the span whose context `carrier` holds (e.g. one fan-out of an
    update that covers many answers: a child of none of them, linked to the update's publication)."""
    linked = span_context_of(carrier)
    links = [Link(linked)] if linked is not None else []
    with tracer.start_as_current_span(name, context=Context(), links=links) as span:
        yield span


def call_metadata() -> tuple[tuple[str, str], ...]:
    """The current span's trace context as gRPC metadata, for a call made without the tracing interceptor."""
    return tuple(current_trace_context().items())


@contextlib.contextmanager
def traced_call(
    tracer: trace.Tracer, full_method: str, metadata: Iterable[tuple[str, str | bytes]] | None
) -> Iterator[None]:
    """The server span of a call that the tracing interceptor leaves out (see ServiceBinding.traced_by_servicer),
    named and typed as the interceptor names its spans, the current span inside the block. Only a call that
    brought a trace context gets one: the caller traces its call only when it is sampled, so an unsampled
    call costs a look through its metadata."""
    carrier = {key: value for key, value in metadata or () if key in _TRACE_HEADERS and isinstance(value, str)}
    if not carrier:
        yield
        return
    service, _, method = full_method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    with tracer.start_as_current_span(
        full_method, context=_PROPAGATOR.extract(carrier), kind=SpanKind.SERVER, attributes=attributes
    ):
        yield


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
    with EndingSpans([a.span for a in answers if a.span is not None]):
        yield answers


class EndingSpans:
    """Ends spans when the block they cover is left, marked failed if it raised."""

    def __init__(self, spans: Sequence[trace.Span]) -> None:
        self._spans = spans

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: TracebackType | None) -> None:
        for span in self._spans:
            if kind is not None:
                span.set_status(Status(StatusCode.ERROR, kind.__name__))
            span.end()


def carrier_headers(carrier: Mapping[str, str]) -> Headers:
    """Trace context fields as Kafka record headers."""
    return tuple((k, v.encode("latin-1")) for k, v in carrier.items())


def span_carrier(span: trace.Span) -> dict[str, str]:
    """The W3C Trace Context fields that make `span` the parent of whatever receives them."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def span_headers(span: trace.Span) -> Headers:
    """Record headers that make `span` the parent of whatever consumes the record."""
    return carrier_headers(span_carrier(span))


def has_trace_context(headers: Headers) -> bool:
    """Whether record headers carry any trace context field."""
    return any(key in _TRACE_HEADERS for key, _ in headers)
