"""One game on the embedded stack, observed: every answer is one trace from the edge's frame to
leaderboard_svc, the leaderboard update links back to it, and the Prometheus endpoint counts the game.

The four components share one process, so all their spans land in one in-memory exporter and all their
metrics on one endpoint, as in `quizmesh dev`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from apps.launcher import embedded_env, run_embedded
from bench.procs import free_port
from quizmesh.telemetry import setup_telemetry
from tests.support.game import Game
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLAYERS = 3
QUESTION = {"text": "2 + 2?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 30}


@dataclass(frozen=True)
class Observed:
    spans: Sequence[ReadableSpan]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]  # (sample name, labels) -> value
    player_count: int

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    @property
    def sample_names(self) -> set[str]:
        return {name for name, _ in self.samples}


@contextlib.asynccontextmanager
async def observed_stack(tmp_path: Path, exporter: InMemorySpanExporter) -> AsyncIterator[tuple[Stack, int]]:
    ports = {"edge": free_port(), "quiz": free_port(), "leaderboard": free_port(), "persistence": free_port()}
    base = {
        **os.environ,
        "QUIZMESH_LEADERBOARD_INTERVAL_MS": "100",
        "QUIZMESH_METRICS_PORT": "0",
        "QUIZMESH_TRACE_SAMPLE_RATIO": "1",
    }
    base.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env = embedded_env(base, ports, str(tmp_path / "observed.sqlite3"))
    telemetry = setup_telemetry("quizmesh", env, span_exporter=exporter)
    assert telemetry.metrics_port is not None
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_embedded(env, stop, ready.set_result, telemetry=telemetry))
    try:
        watched: list[asyncio.Future[Any]] = [task, ready]
        await asyncio.wait(watched, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.done(), "the embedded stack did not become ready in 30 s"
        url = f"http://127.0.0.1:{ports['edge']}"
        yield Stack([url], [env["QUIZMESH_QUIZ_ADDR"]], [], [], mode="embedded"), telemetry.metrics_port
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        telemetry.close()


async def _scrape(session: aiohttp.ClientSession, port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture(scope="module")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    exporter = InMemorySpanExporter()
    async with (
        observed_stack(tmp_path_factory.mktemp("observed"), exporter) as (stack, metrics_port),
        aiohttp.ClientSession() as session,
    ):
        game = await Game.create(stack, session, [QUESTION])
        try:
            players = await game.join(PLAYERS)
            await game.host_action("start_quiz")
            await game.wait_for_phase("question_open", 0)
            await game.answer(0, {p.player_id: 1 for p in players})
            again = await players[0].client.request("submit_answer", question_index=0, choice=0)
            assert again["type"] == "error" and again["code"] == "already_answered", again
            # Every player sees a leaderboard that counts every answer: the updates went all the way.
            for player in players:
                await player.client.wait_for(
                    lambda m: (
                        m.get("type") == "leaderboard_updated" and sum(1 for e in m["top"] if e["score"] > 0) == PLAYERS
                    )
                )
            # The persistence consumer may still be behind; lag is a gauge, so give it a poll.
            await asyncio.sleep(0.3)
            samples = await _scrape(session, metrics_port)
        finally:
            await game.close()
    return Observed(exporter.get_finished_spans(), samples, PLAYERS)


def _named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _linked_span_ids(span: ReadableSpan) -> set[int]:
    return {link.context.span_id for link in span.links}


def _id(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def test_an_answer_is_one_trace_from_the_frame_to_the_leaderboard_and_the_update_links_back(
    observed: Observed,
) -> None:
    spans = observed.spans
    by_id = {_id(s)[1]: s for s in spans}
    frames = [
        s
        for s in _named(spans, "edge client message")
        if s.attributes and s.attributes.get("quizmesh.message.type") == "submit_answer"
    ]
    assert len(frames) == PLAYERS + 1  # the duplicate answer is a frame too
    accepted_traces = 0
    for frame in frames:
        trace_id, frame_id = _id(frame)
        in_trace = [s for s in spans if _id(s)[0] == trace_id]
        [answer] = _named(in_trace, "quiz_svc answer")
        assert answer.parent is not None and answer.parent.span_id == frame_id
        # The batched gRPC call is its own trace; the answer links to the server span of that call.
        [server_call] = [by_id[i] for i in _linked_span_ids(answer)]
        assert server_call.kind == SpanKind.SERVER and server_call.name.endswith("/StreamAnswers")
        # One span for the call on each side: the edge's batch, and quiz_svc's own (not the interceptors').
        assert server_call.parent is not None and by_id[server_call.parent.span_id].name == "edge answer batch"
        assert server_call.context is not None and server_call.context.trace_id != trace_id
        if answer.attributes and answer.attributes.get("quizmesh.answer.outcome") != "accepted":
            assert answer.attributes.get("quizmesh.answer.outcome") == "already_answered"
            assert not _named(in_trace, "answer_submitted publish")
            continue
        accepted_traces += 1
        [produce] = _named(in_trace, "answer_submitted publish")
        assert produce.kind == SpanKind.PRODUCER and produce.parent is not None
        assert produce.parent.span_id == _id(answer)[1]
        [apply] = _named(in_trace, "leaderboard_svc apply")
        assert apply.kind == SpanKind.CONSUMER and apply.parent is not None
        assert apply.parent.span_id == _id(produce)[1]
        # The coalesced update that reflects this answer links to its apply span, and an edge's
        # fan-out of that update links to the update's publication.
        [publication] = [p for p in _named(spans, "leaderboard_svc publish") if _id(apply)[1] in _linked_span_ids(p)]
        fanouts = [f for f in _named(spans, "edge leaderboard fan-out") if _id(publication)[1] in _linked_span_ids(f)]
        assert fanouts, "no fan-out links to the update that reflects the answer"
    assert accepted_traces == PLAYERS


def test_the_metrics_endpoint_counts_the_game(observed: Observed) -> None:
    assert observed.value("quizmesh_quiz_joins_total") == PLAYERS
    assert observed.value("quizmesh_quiz_answers_accepted_total") == PLAYERS
    assert observed.value("quizmesh_quiz_answers_rejected_total", reason="already_answered") == 1
    assert observed.value("quizmesh_quiz_answers_rejected_total") == 1
    assert observed.value("quizmesh_edge_errors_total", code="already_answered") == 1
    # The host and the players are connected while the endpoint is scraped.
    assert observed.value("quizmesh_edge_connections") == PLAYERS + 1
    assert observed.value("quizmesh_edge_answer_latency_seconds_count") == PLAYERS + 1
    assert observed.value("quizmesh_quiz_answer_batch_duration_seconds_count") >= 1
    assert observed.value("quizmesh_edge_broadcast_duration_seconds_count") >= 1
    assert observed.value("quizmesh_edge_answer_to_leaderboard_seconds_count") >= 1
    assert observed.value("quizmesh_edge_leaderboard_messages_total") >= PLAYERS
    lag_groups = {dict(labels)["group"] for name, labels in observed.samples if name == "quizmesh_consumer_lag"}
    assert lag_groups == {"leaderboard_svc", "persistence_svc"}
    assert observed.value("quizmesh_consumer_lag", group="leaderboard_svc") == 0


_METRIC = re.compile(r"\bquizmesh_[a-z0-9_]+\b")


def _rule_expressions() -> list[str]:
    """The rules that read the services' metrics (the others read `up` and the Kafka exporter's
    series, which tests/prometheus checks against a real Prometheus)."""
    rules = yaml.safe_load((REPO / "deploy/observability/prometheus-rules.yaml").read_text())["spec"]
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"] if _METRIC.search(rule["expr"])]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((REPO / "deploy/observability/grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.parametrize("source", ["alert rules", "dashboard"])
def test_every_query_names_only_metrics_the_services_export(observed: Observed, source: str) -> None:
    expressions = _rule_expressions() if source == "alert rules" else _dashboard_expressions()
    assert expressions
    for expr in expressions:
        names = set(_METRIC.findall(expr))
        assert names, f"{expr!r} names no quizmesh metric"
        assert names <= observed.sample_names, f"{expr!r} names unexported {sorted(names - observed.sample_names)}"
