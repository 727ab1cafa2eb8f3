"""The shipped alerts fire and resolve for real: a process stack on a private Kafka, Redis and
PostgreSQL, scraped by Debian's Prometheus (scripts/prometheus.sh) evaluating the shipped rules with
every duration scaled by TIME_SCALE (`for: 5m` becomes 10 s, `rate(...[5m])` reads 10 s), so a fault
shows in seconds with the shipped expressions and thresholds.

The tests run in order on one stack and each leaves it healthy: Kafka stopped, a consumer frozen
(SIGSTOP), a service stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.procs import free_port
from scripts.prometheus_config import rule_groups
from tests.faults.harness import GrpcGame
from tests.support.private_infra import PrivateInfra
from tests.support.stack import Stack, process_stack, stop_process, wait_ready

from .conftest import PROMETHEUS_SH

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]

TIME_SCALE = 1 / 30
ALERT_TIMEOUT_S = 120
JOBS = {"edge", "quiz-svc", "leaderboard-svc", "persistence-svc", "quizmesh-kafka-exporter"}


@dataclass
class Prometheus:
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as reply:
            reply.raise_for_status()
            body = await reply.json()
        assert body["status"] == "success", body
        return body["data"]

    async def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        alerts = (await self.get("/api/v1/alerts"))["alerts"]
        return [
            a
            for a in alerts
            if a["state"] == "firing"
            and a["labels"]["alertname"] == alertname
            and labels.items() <= a["labels"].items()
        ]

    async def wait_firing(self, alertname: str, **labels: str) -> float:
        """Seconds until the alert fires."""
        return await self._wait(alertname, labels, firing=True)

    async def wait_resolved(self, alertname: str, **labels: str) -> float:
        return await self._wait(alertname, labels, firing=False)

    async def _wait(self, alertname: str, labels: Mapping[str, str], *, firing: bool) -> float:
        started = time.monotonic()
        while bool(await self.firing(alertname, **labels)) != firing:
            if time.monotonic() - started > ALERT_TIMEOUT_S:
                alerts = (await self.get("/api/v1/alerts"))["alerts"]
                state = "fire" if firing else "resolve"
                raise AssertionError(f"{alertname} {dict(labels)} did not {state} in {ALERT_TIMEOUT_S} s: {alerts}")
            await asyncio.sleep(0.5)
        return round(time.monotonic() - started, 1)


@dataclass
class Watched:
    stack: Stack
    prometheus: Prometheus
    game: GrpcGame
    infra: PrivateInfra


@contextlib.contextmanager
def prometheus_watching(stack: Stack, kafka: str, directory: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "QUIZMESH_PROMETHEUS_DIR": str(directory),
        "QUIZMESH_PROMETHEUS_PORT": str(port),
        "QUIZMESH_KAFKA_EXPORTER_PORT": str(free_port()),
    }
    targets = [arg for job, address in stack.metrics_targets for arg in ("--target", f"{job}={address}")]
    script = ["bash", str(PROMETHEUS_SH)]
    up = [*script, "up", *targets, "--kafka", kafka, "--time-scale", str(TIME_SCALE)]
    started = subprocess.run(up, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stderr
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([*script, "down"], env=env, capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
async def watched(private_infra: PrivateInfra) -> AsyncIterator[Watched]:
    # Beside the private infrastructure, not in pytest's temporary directories, which other pytest
    # sessions on the machine may clean up while this one runs.
    directory = private_infra.directory / "watched"
    async with (
        process_stack(directory / "logs", extra_env=private_infra.service_env, metrics=True) as stack,
        aiohttp.ClientSession() as session,
    ):
        with prometheus_watching(stack, private_infra.kafka_bootstrap, directory / "prometheus") as url:
            game = GrpcGame(stack.quiz_addrs, players=40, questions=8)
            await game.setup()
            try:
                yield Watched(stack, Prometheus(url, session), game, private_infra)
            finally:
                await game.close()


async def test_prometheus_scrapes_every_process_and_the_lag_exporter(watched: Watched) -> None:
    await watched.game.answer_question()
    prometheus = watched.prometheus
    deadline = time.monotonic() + 30
    while True:
        targets = (await prometheus.get("/api/v1/targets"))["activeTargets"]
        up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
        if up == JOBS or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert up == JOBS, targets
    assert len(targets) == len(watched.stack.metrics_targets) + 1
    # Every series the rules read exists, except the edge's, which need WebSocket traffic
    # (tests/observability checks those against a real edge's endpoint).
    await watched.game.next_question()
    await watched.game.answer_question()
    # Again: every answer is refused as already_answered, so the refusal counter has a series.
    await watched.game.answer_question()
    await asyncio.sleep(2)
    names = set(await prometheus.get("/api/v1/label/__name__/values"))
    read = {n for g in rule_groups() for r in g["rules"] for n in re.findall(r"\b[a-z_]+(?=[{\[])", r["expr"])}
    read -= {n for n in read if n.startswith("quizmesh_edge_")}
    assert read <= names, sorted(read - names)


async def test_kafka_down_fires_the_unavailable_answers_alert_and_it_resolves(watched: Watched) -> None:
    game, prometheus = watched.game, watched.prometheus
    await game.next_question()
    await asyncio.to_thread(watched.infra.infra, "stop", "kafka")
    answering = asyncio.create_task(game.answer_question(give_up_after_s=240))
    try:
        fired_s = await prometheus.wait_firing("QuizmeshAnswerRejectionsUnavailable")
    finally:
        await asyncio.to_thread(watched.infra.infra, "start", "kafka")
    await answering
    assert game.ledger.errors["answer:unavailable"] > 0
    resolved_s = await prometheus.wait_resolved("QuizmeshAnswerRejectionsUnavailable")
    print(f"unavailable answers: fired after {fired_s} s, resolved {resolved_s} s after Kafka was back")


async def test_a_frozen_consumer_fires_the_stall_alert_and_it_resolves(watched: Watched) -> None:
    game, prometheus = watched.game, watched.prometheus
    (leaderboard,) = watched.stack.processes["leaderboard-svc"]
    await game.next_question()
    leaderboard.send_signal(signal.SIGSTOP)
    try:
        await game.answer_question()
        stalled = await prometheus.wait_firing("QuizmeshConsumerStalled", consumergroup="leaderboard_svc")
        await prometheus.wait_firing("QuizmeshTargetDown", job="leaderboard-svc")
        # persistence_svc consumed the same answers: only the frozen group stalls.
        assert await prometheus.firing("QuizmeshConsumerStalled", consumergroup="persistence_svc") == []
    finally:
        leaderboard.send_signal(signal.SIGCONT)
    resolved = await prometheus.wait_resolved("QuizmeshConsumerStalled", consumergroup="leaderboard_svc")
    await prometheus.wait_resolved("QuizmeshTargetDown", job="leaderboard-svc")
    print(f"stalled consumer: fired after {stalled} s, resolved {resolved} s after SIGCONT")


async def test_a_stopped_service_fires_its_target_down_alerts_and_they_resolve(watched: Watched) -> None:
    stack, prometheus = watched.stack, watched.prometheus
    assert stop_process(stack.processes["persistence-svc"][0]) == 0
    try:
        await prometheus.wait_firing("QuizmeshTargetDown", job="persistence-svc")
        await prometheus.wait_firing("QuizmeshPersistenceSvcDown", job="persistence-svc")
        assert await prometheus.firing("QuizmeshTargetDown", job="quiz-svc") == []
    finally:
        stack.restart("persistence-svc")
        assert stack.log_dir is not None
        await wait_ready(stack, stack.log_dir)
    await prometheus.wait_resolved("QuizmeshPersistenceSvcDown")
    await prometheus.wait_resolved("QuizmeshTargetDown", job="persistence-svc")
