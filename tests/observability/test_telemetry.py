"""Telemetry on its own (quizmesh.telemetry, .tracing, .logs, .eventbus.traced, edge.telemetry): logs
without credentials, ECS lines with trace IDs, the metrics endpoint's configuration, trace context
through record headers, and consumer lag."""

from __future__ import annotations

import io
import json
import logging
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from edge.telemetry import EdgeTelemetry
from quizmesh.auth import Credentials
from quizmesh.eventbus.memory import InMemoryBus, InMemoryConsumer, InMemoryPublisher
from quizmesh.eventbus.ports import ConsumedRecord, Record
from quizmesh.eventbus.traced import RecordTraces, TracedPublisher
from quizmesh.logs import REDACTED, LogFormat, log_handler
from quizmesh.process import ProcessSettings
from quizmesh.settings import SettingsError
from quizmesh.telemetry import Telemetry, setup_telemetry
from quizmesh.tracing import answer_spans, context_from_headers, current_trace_context, traced_call

TOKEN = Credentials(b"k" * 32).issue("player", "QUIZ1234", "player-1")
# Production processes sample 1% of new traces; these tests follow every one.
SAMPLE_ALL = {"QUIZMESH_TRACE_SAMPLE_RATIO": "1"}
NONE_NEW = {"QUIZMESH_TRACE_SAMPLE_RATIO": "0"}
SAMPLED_ANSWER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def _log_line(log_format: LogFormat) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.observability.{log_format}")
    logger.handlers[:] = [log_handler(log_format, stream, service_name="quiz-svc")]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


@pytest.mark.parametrize("log_format", ["ecs", "plain"])
def test_a_credential_never_reaches_the_log(log_format: LogFormat) -> None:
    logger, stream = _log_line(log_format)
    logger.info("player resumed with %s", TOKEN)
    logger.warning(f"bad credential {TOKEN}", extra={"token": TOKEN})
    try:
        raise ValueError(f"cannot verify {TOKEN}")
    except ValueError:
        logger.exception("verification failed")
    out = stream.getvalue()
    assert TOKEN.split(".")[1] not in out
    # The message argument, the message and the exception text; ECS lines also hold the extra field.
    assert out.count(REDACTED) == (4 if log_format == "ecs" else 3)


def test_ecs_lines_carry_the_current_trace_and_span_ids() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logger, stream = _log_line("ecs")
    with provider.get_tracer("test").start_as_current_span("work") as span:
        logger.info("answer accepted")
    logger.info("outside any span")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["message"] == "answer accepted"
    assert inside["log.level"] == "info"
    assert "ecs.version" in inside and "@timestamp" in inside
    assert inside["service"]["name"] == "quiz-svc"
    assert inside["trace"]["id"] == f"{context.trace_id:032x}"
    assert inside["span"]["id"] == f"{context.span_id:016x}"
    assert "trace" not in outside


def test_an_unknown_log_format_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError, match="QUIZMESH_LOG_FORMAT"):
        ProcessSettings.from_env({"QUIZMESH_LOG_FORMAT": "xml"})


def test_without_a_metrics_port_there_is_no_endpoint_and_instruments_cost_nothing() -> None:
    telemetry = setup_telemetry("quiz-svc", {})
    try:
        assert telemetry.metrics_port is None
        assert telemetry.tracing
        assert telemetry.meter("m").create_counter("quizmesh_test").__class__.__name__.startswith("NoOp")
    finally:
        telemetry.close()


def test_metrics_port_zero_serves_prometheus_text_on_a_free_port() -> None:
    telemetry = setup_telemetry("quiz-svc", {"QUIZMESH_METRICS_PORT": "0"})
    try:
        assert telemetry.metrics_port
        telemetry.meter("m").create_counter("quizmesh_test_things").add(2)
        url = f"http://127.0.0.1:{telemetry.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        assert "quizmesh_test_things_total" in text and 'service_name="quiz-svc"' in text
    finally:
        telemetry.close()


def test_a_busy_metrics_port_is_a_configuration_error() -> None:
    first = setup_telemetry("a", {"QUIZMESH_METRICS_PORT": "0"})
    try:
        with pytest.raises(SettingsError, match="QUIZMESH_METRICS_PORT"):
            setup_telemetry("b", {"QUIZMESH_METRICS_PORT": str(first.metrics_port)})
    finally:
        first.close()


async def test_a_published_record_carries_its_producer_span_to_the_consumer() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("t", SAMPLE_ALL, span_exporter=exporter)
    tracer = telemetry.tracer("test")
    bus = InMemoryBus(partitions=2)
    publisher = TracedPublisher(InMemoryPublisher(bus), tracer)
    consumer = InMemoryConsumer(bus, "g", ["answers"])
    await consumer.start()
    with tracer.start_as_current_span("answer") as answer:
        headers = tuple((k, v.encode()) for k, v in current_trace_context().items())
    await publisher.publish([Record("answers", "Q1", b"x", headers)], timeout_s=1)
    [record] = await consumer.poll(10, 0.1)
    traces = RecordTraces(tracer, "apply", remember_links=True)
    with traces.processing([record]):
        pass
    traces.publication("Q1", "publish")
    [produce] = [s for s in exporter.get_finished_spans() if s.name == "answers publish"]
    [apply] = [s for s in exporter.get_finished_spans() if s.name == "apply"]
    [publication] = [s for s in exporter.get_finished_spans() if s.name == "publish"]
    assert produce.kind == SpanKind.PRODUCER and produce.parent is not None
    assert produce.parent.span_id == answer.get_span_context().span_id
    assert apply.parent is not None and produce.context is not None and apply.parent.span_id == produce.context.span_id
    assert apply.context is not None and [link.context.span_id for link in publication.links] == [apply.context.span_id]
    assert traces.publication("Q1", "publish")  # a context still, with nothing left to link
    assert [s for s in exporter.get_finished_spans() if s.name == "publish"][-1].links == ()
    telemetry.close()


def test_records_without_trace_context_get_no_processing_span() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("t", SAMPLE_ALL, span_exporter=exporter)
    traces = telemetry.record_traces("apply")
    with traces.processing([ConsumedRecord("answers", 0, 0, "Q1", b"x")]):
        pass
    assert exporter.get_finished_spans() == ()
    assert context_from_headers(()) is None
    telemetry.close()


def test_disabled_telemetry_adds_no_interceptors_and_no_publisher_wrapper() -> None:
    telemetry = Telemetry.disabled()
    publisher = InMemoryPublisher(InMemoryBus())
    assert telemetry.grpc_server_interceptors() == []
    assert telemetry.grpc_client_interceptors() == []
    assert telemetry.traced_publisher(publisher) is publisher
    assert RecordTraces.disabled().publication("Q1", "publish") == {}


async def test_the_in_memory_consumer_reports_its_lag_per_partition() -> None:
    bus = InMemoryBus(partitions=2)
    consumer = InMemoryConsumer(bus, "g", ["answers"])
    await consumer.start()
    await bus.append([Record("answers", "Q1", b"1"), Record("answers", "Q1", b"2")])
    partition = bus.partition_for("Q1")
    assert consumer.lag() == {("answers", partition): 2, ("answers", 1 - partition): 0}
    await consumer.poll(1, 0.1)
    assert consumer.lag()[("answers", partition)] == 1


def test_by_default_a_small_ratio_of_new_traces_is_sampled() -> None:
    telemetry = setup_telemetry("t", {})
    tracer = telemetry.tracer("test")
    sampled = 0
    for _ in range(2000):
        with tracer.start_as_current_span("frame") as span:
            sampled += span.is_recording()
    assert 0 < sampled < 100  # 1%: 20 expected
    telemetry.close()
    with pytest.raises(SettingsError, match="QUIZMESH_TRACE_SAMPLE_RATIO"):
        setup_telemetry("t", {"QUIZMESH_TRACE_SAMPLE_RATIO": "2"})


async def test_an_unsampled_answer_gets_no_span_anywhere_and_carries_its_context_on() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("t", NONE_NEW, span_exporter=exporter)
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("frame"):
        unsampled = current_trace_context()
    assert int(unsampled["traceparent"][-2:], 16) & 1 == 0  # the "sampled" flag is off
    with EdgeTelemetry(telemetry).answer_batch([unsampled]), answer_spans(tracer, "answer", [unsampled, {}]) as traces:
        assert [t.span for t in traces] == [None, None]
        assert dict((k, v.decode()) for k, v in traces[0].headers) == unsampled
    bus = InMemoryBus()
    consumer = InMemoryConsumer(bus, "g", ["answers"])
    await consumer.start()
    await TracedPublisher(InMemoryPublisher(bus), tracer).publish(
        [Record("answers", "Q1", b"x", traces[0].headers)], timeout_s=1
    )
    [record] = await consumer.poll(10, 0.1)
    assert record.headers == traces[0].headers
    with telemetry.record_traces("apply").processing([record]):
        pass
    assert exporter.get_finished_spans() == ()
    telemetry.close()


def test_a_sampled_answer_is_traced_and_its_batch_too_whatever_the_ratio() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("t", NONE_NEW, span_exporter=exporter)
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("frame"):
        unsampled = current_trace_context()
    carriers = [unsampled, SAMPLED_ANSWER]
    with EdgeTelemetry(telemetry).answer_batch(carriers), answer_spans(tracer, "answer", carriers) as traces:
        assert traces[0].span is None and traces[1].span is not None
    [batch] = [s for s in exporter.get_finished_spans() if s.name == "edge answer batch"]
    [answer] = [s for s in exporter.get_finished_spans() if s.name == "answer"]
    assert [f"{link.context.span_id:016x}" for link in batch.links] == ["b7ad6b7169203331"]
    assert answer.parent is not None and f"{answer.parent.span_id:016x}" == "b7ad6b7169203331"
    assert answer.context is not None and batch.context is not None
    assert [link.context.span_id for link in answer.links] == [batch.context.span_id]
    telemetry.close()


def _exported(env: dict[str, str]) -> tuple[InMemorySpanExporter, Telemetry]:
    exporter = InMemorySpanExporter()
    return exporter, setup_telemetry("t", env, span_exporter=exporter)


def test_a_batch_of_unsampled_answers_sends_no_trace_context_and_its_call_gets_no_span() -> None:
    exporter, telemetry = _exported(SAMPLE_ALL)
    tracer = telemetry.tracer("test")
    unsampled = {"traceparent": SAMPLED_ANSWER["traceparent"][:-2] + "00"}
    with EdgeTelemetry(telemetry).answer_batch([unsampled]) as metadata:
        assert metadata == ()
    with traced_call(tracer, "/quizmesh.quiz.v1.QuizService/BatchSubmitAnswers", metadata):
        assert not trace.get_current_span().is_recording()
    assert exporter.get_finished_spans() == ()
    telemetry.close()


def test_a_sampled_batch_carries_its_span_to_the_call_span_on_the_server() -> None:
    exporter, telemetry = _exported(NONE_NEW)
    tracer = telemetry.tracer("test")
    with EdgeTelemetry(telemetry).answer_batch([SAMPLED_ANSWER]) as metadata:
        assert [key for key, _ in metadata] == ["traceparent"]
    # What grpc.aio hands the servicer: the caller's metadata among its own.
    received = (("user-agent", "grpc-python"), *metadata)
    with traced_call(tracer, "/quizmesh.quiz.v1.QuizService/BatchSubmitAnswers", received):
        pass
    [batch] = [s for s in exporter.get_finished_spans() if s.name == "edge answer batch"]
    [call] = [s for s in exporter.get_finished_spans() if s.name == "/quizmesh.quiz.v1.QuizService/BatchSubmitAnswers"]
    assert batch.kind == SpanKind.CLIENT and call.kind == SpanKind.SERVER
    assert batch.context is not None and call.parent is not None
    assert (call.parent.trace_id, call.parent.span_id) == (batch.context.trace_id, batch.context.span_id)
    assert call.attributes is not None
    assert (call.attributes["rpc.service"], call.attributes["rpc.method"]) == (
        "quizmesh.quiz.v1.QuizService",
        "BatchSubmitAnswers",
    )
    telemetry.close()


@pytest.mark.parametrize(("env", "sampled"), [(NONE_NEW, False), (SAMPLE_ALL, True)])
def test_a_client_frame_starts_a_trace_sampled_at_the_ratio_and_carries_it_either_way(
    env: dict[str, str], sampled: bool
) -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("t", env, span_exporter=exporter)
    edge = EdgeTelemetry(telemetry)
    carriers = []
    for _ in range(3):
        with edge.client_message() as handled:
            handled.message_type = "submit_answer"
            carriers.append(current_trace_context()["traceparent"])
    assert current_trace_context() == {}  # the frame's context ends with it
    # Each frame is its own trace, with valid IDs whether or not it is sampled, so later hops follow its flag.
    assert len({carrier.split("-")[1] for carrier in carriers}) == 3
    assert all(len(carrier) == 55 and "-0000000000000000-" not in carrier for carrier in carriers)
    assert {int(carrier[-2:], 16) & 1 for carrier in carriers} == {int(sampled)}
    assert len([s for s in exporter.get_finished_spans() if s.name == "edge client message"]) == (3 if sampled else 0)
    telemetry.close()
