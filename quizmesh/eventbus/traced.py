"""Spans for the event bus: a PRODUCER span per published record, and processing spans for consumed
ones (each a child of the context its record's headers carry)."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

from quizmesh.eventbus.ports import ConsumedRecord, EventPublisher, Record
from quizmesh.tracing import (
    EndingSpans,
    context_from_headers,
    current_span_recording,
    has_trace_context,
    headers_sampled,
    headers_with_context,
    span_carrier,
)


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
            if not (headers_sampled(record.headers) or (current_recording and not has_trace_context(record.headers))):
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
        with EndingSpans(spans):
            await self._inner.publish(traced, timeout_s=timeout_s)

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
        with EndingSpans(spans):
            yield

    def publication(self, key: str, span_name: str) -> dict[str, str]:
        """The trace context for what covers everything processed for `key` since the last call (a
        coalesced update): a new trace's span linked to those records' spans (the newest `max_links`)."""
        links = [Link(c) for c in self._pending.pop(key, ())]
        span = self._tracer.start_span(span_name, context=Context(), links=links, kind=SpanKind.INTERNAL)
        span.set_attribute("quizmesh.linked_records", len(links))
        span.end()
        return span_carrier(span)
