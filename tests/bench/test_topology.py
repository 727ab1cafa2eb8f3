"""`python -m bench topology` on a small scale: two processes of each service behind HAProxy on the
topology the tests run on, measured as the benchmark measures it, and its processes counted by part."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.pipeline import Deployment, measured_run, steady_plan
from bench.topology import component, summary
from tests.support.infra import REAL, require_real_stack


def test_each_process_counts_in_its_part() -> None:
    assert [component(p) for p in ("edge", "edge-2", "quiz-svc-1", "leaderboard-svc", "haproxy")] == [
        "edge",
        "edge",
        "quiz_svc",
        "leaderboard_svc",
        "haproxy",
    ]
    assert [component(p) for p in ("infra:kafka", "infra:kafka3", "infra:redis6", "infra:redis-pubsub")] == [
        "kafka",
        "kafka",
        "redis",
        "redis_pubsub",
    ]
    assert {component(p) for p in ("infra:postgres", "infra:pg-primary", "infra:pg-replica")} == {"postgres"}


@pytest.mark.slow
@pytest.mark.e2e
async def test_a_replicated_deployment_is_measured_by_process_and_by_part(tmp_path: Path) -> None:
    require_real_stack()
    deployment = Deployment(
        tmp_path, "-test", topology="cluster" if REAL.redis_mode == "cluster" else "single", replicas=2
    )
    await deployment.start()
    try:
        # 40 players answering every 2 s question through HAProxy, over a window of several seconds.
        measured = summary(await measured_run(deployment, steady_plan(deployment.url, 40, 12.0), "test"))
    finally:
        deployment.stop()

    assert measured["connections_peak"] == 40
    assert set(measured["errors"]) <= {"question_closed"}
    assert measured["every_answer_persisted"]
    # Counted by both quiz_svc processes: every accepted answer came in some call.
    assert measured["answers_per_call"] is not None and measured["answers_per_call"] >= 1
    processes = measured["cpu_us_per_answer_by_process"]
    services = {f"{s}-{i}" for s in ("edge", "quiz-svc", "leaderboard-svc", "persistence-svc") for i in (1, 2)}
    assert services | {"haproxy"} <= set(processes)
    parts = measured["cpu_us_per_answer"]
    assert {"edge", "quiz_svc", "leaderboard_svc", "persistence_svc", "haproxy", "kafka", "redis", "postgres"} <= set(
        parts
    )
    assert parts["edge"] == pytest.approx(processes["edge-1"] + processes["edge-2"], abs=0.1)
    assert measured["cpu_us_per_answer_total"] == pytest.approx(sum(parts.values()), abs=0.1)
