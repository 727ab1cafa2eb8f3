"""Redis commands and PostgreSQL queries show up as spans inside the trace that caused them."""

from __future__ import annotations

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from quizmesh.redis_client import run_scripts
from quizmesh.telemetry import setup_telemetry
from tests.support.infra import REAL, require

pytestmark = pytest.mark.integration


async def test_redis_and_postgres_calls_are_children_of_the_current_span() -> None:
    require("Redis", REAL.redis_url)
    require("PostgreSQL", REAL.postgres_dsn)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("driver-test", {"QUIZMESH_TRACE_SAMPLE_RATIO": "1"}, span_exporter=exporter)
    tracer = telemetry.tracer_provider.get_tracer("test")
    redis = Redis.from_url(REAL.redis_url)
    connection = await asyncpg.connect(REAL.postgres_dsn)
    try:
        with tracer.start_as_current_span("an answer") as parent:
            await redis.set("driver-span-test", "1", ex=10)
            assert await connection.fetchval("SELECT 41 + 1") == 42
    finally:
        await connection.close()
        await redis.aclose()
        telemetry.close()
    trace_id = parent.get_span_context().trace_id
    children = [
        s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == parent.get_span_context().span_id
    ]
    systems = {s.attributes.get("db.system") for s in children if s.attributes}
    assert {"redis", "postgresql"} <= systems, [(s.name, s.attributes) for s in children]
    assert all(s.context.trace_id == trace_id for s in children)


async def test_lua_script_pipelines_get_a_span_only_inside_a_recorded_one() -> None:
    require("Redis", REAL.redis_url)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("driver-test", {"QUIZMESH_TRACE_SAMPLE_RATIO": "1"}, span_exporter=exporter)
    tracer = telemetry.tracer_provider.get_tracer("test")
    redis = Redis.from_url(REAL.redis_url)
    script = redis.register_script("return ARGV[1]")
    try:
        await redis.script_load("return ARGV[1]")
        exporter.clear()
        assert await run_scripts(redis, [(script, ["driver-span-test"], ["unrecorded"])]) == [b"unrecorded"]
        unrecorded = list(exporter.get_finished_spans())
        with tracer.start_as_current_span("a sampled answer") as parent:
            assert await run_scripts(redis, [(script, ["driver-span-test"], ["recorded"])]) == [b"recorded"]
    finally:
        await redis.aclose()
        telemetry.close()
    assert unrecorded == []
    children = [
        s for s in exporter.get_finished_spans() if s.parent and s.parent.span_id == parent.get_span_context().span_id
    ]
    assert [s.attributes.get("db.system") for s in children if s.attributes] == ["redis"]
