"""The telemetry of one process: `setup_telemetry` builds its tracer and meter providers, once, from
the process's entry, and its composition roots share them.

- Traces: an SDK TracerProvider per process, sampling parent-based with a ratio for new traces
  (QUIZMESH_TRACE_SAMPLE_RATIO, default 0.01; the standard OTEL_TRACES_SAMPLER variables when only
  they are set). Spans are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set. How the
  context travels is `quizmesh.tracing`; the event bus's spans are `quizmesh.eventbus.traced`.
- Metrics: a MeterProvider whose Prometheus reader has its own registry, served on
  QUIZMESH_METRICS_PORT (unset: no endpoint and no-op instruments; 0: a free port). The embedded mode
  sets up telemetry once, so its four components share one endpoint. Each service's instruments live
  with the service (`quiz_svc/metrics.py`, `edge/telemetry.py`).
- Logs: `quizmesh.logs`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

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
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry, start_http_server

from quizmesh.eventbus.ports import EventPublisher
from quizmesh.eventbus.traced import RecordTraces, TracedPublisher
from quizmesh.settings import FromEnvironment, Number, Port, SettingsError, Text, optional_setting, reads, setting

log = logging.getLogger(__name__)

LagSource = Callable[[], Mapping[tuple[str, int], int]]

# New traces sampled in production processes: tracing every answer cost 100-440 µs per answer.
DEFAULT_SAMPLE_RATIO = 0.01
# Latencies from 1 ms to 10 s: an answer is expected back within tens of milliseconds.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NOT_TRACED = (filters.health_check(), filters.service_prefix("grpc.reflection"))


def seconds_histogram(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    """A histogram of durations in seconds, with buckets from 1 ms to 10 s."""
    return meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
    )


METRICS_PORT = Port(
    "QUIZMESH_METRICS_PORT",
    "The port of the process's Prometheus endpoint (/metrics); 0 picks a free one and logs it.",
    default=0,
    unset="no endpoint, and no-op instruments",
)
METRICS_HOST = Text("QUIZMESH_METRICS_HOST", "The address the metrics endpoint listens on.", default="127.0.0.1")
TRACE_SAMPLE_RATIO = Number(
    "QUIZMESH_TRACE_SAMPLE_RATIO",
    "The share of new traces sampled (parent-based; a new trace linked to a sampled span is sampled too).",
    default=DEFAULT_SAMPLE_RATIO,
    minimum=0.0,
    maximum=1.0,
    unset=f"`{DEFAULT_SAMPLE_RATIO}`, or the SDK's sampler when only OTEL_TRACES_SAMPLER is set",
)
OTLP_ENDPOINT = Text(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "Where spans are exported over OTLP/gRPC.",
    default="",
    unset="spans are not exported",
)
OTEL_SERVICE_NAME = Text(
    "OTEL_SERVICE_NAME",
    "The service.name of the process's spans and metrics.",
    default="",
    unset="the component's name (`quiz-svc`, ...; `quizmesh` in the embedded mode)",
)
OTEL_TRACES_SAMPLER = Text(
    "OTEL_TRACES_SAMPLER",
    "The OpenTelemetry SDK's own sampler; used only while QUIZMESH_TRACE_SAMPLE_RATIO is unset.",
    default="",
    unset="quizmesh's ratio sampler",
)


def _sample_ratio(env: Mapping[str, str]) -> float | None:
    """QUIZMESH_TRACE_SAMPLE_RATIO; None (the SDK's own sampler) when only OTEL_TRACES_SAMPLER is set."""
    ratio = TRACE_SAMPLE_RATIO.read(env)
    if not TRACE_SAMPLE_RATIO.is_set(env) and OTEL_TRACES_SAMPLER.is_set(env):
        return None
    return ratio


@dataclass(frozen=True)
class TelemetrySettings(FromEnvironment):
    metrics_port: int | None = optional_setting(METRICS_PORT)  # None: no endpoint; 0: any free port
    metrics_host: str = setting(METRICS_HOST)
    # None: the SDK's sampler from the standard OTEL_TRACES_SAMPLER variables (set, and no ratio of ours)
    sample_ratio: float | None = field(
        default=TRACE_SAMPLE_RATIO.default, metadata=reads(TRACE_SAMPLE_RATIO, OTEL_TRACES_SAMPLER, read=_sample_ratio)
    )
    otlp_endpoint: str | None = optional_setting(OTLP_ENDPOINT)
    service_name: str | None = optional_setting(OTEL_SERVICE_NAME)  # None: the component's own name

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

    def grpc_server_interceptors(self, untraced_methods: Sequence[str] = ()) -> list[Any]:
        """The tracing interceptor, for every method but health checks, reflection and `untraced_methods`
        (full names, "/package.Service/Method")."""
        if not self.tracing:
            return []
        untraced = filters.any_of(*_NOT_TRACED, *map(filters.full_method_name, untraced_methods))
        return [aio_server_interceptor(self.tracer_provider, filter_=filters.negate(untraced))]  # type: ignore[no-untyped-call]

    def grpc_client_interceptors(self) -> list[Any]:
        if not self.tracing:
            return []
        traced = filters.negate(filters.any_of(*_NOT_TRACED))
        return list(aio_client_interceptors(self.tracer_provider, filter_=traced))  # type: ignore[no-untyped-call]

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
    resource = Resource.create({"service.name": settings.service_name or service_name})
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
