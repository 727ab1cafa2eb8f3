"""`python -m bench topology`: the multi-node topology against the single-node stack, in the same run.

Both topologies must be up (`scripts/infra.sh up`, `scripts/infra.sh up --topology cluster`). Two parts:

- **Replication's cost.** The same 1,000 answers/s (`bench.pipeline.steady_plan`, 2,000 players) offered
  to a fresh deployment on each topology in turn, single then cluster, `rounds` times (A B A B), so the
  machine's noise shows between rounds. Single: one process of each service on one Kafka broker, one
  Redis, one PostgreSQL. Cluster: two of each service, the edges behind HAProxy, three brokers (RF 3,
  `min.insync.replicas=2`), a Redis Cluster of 3 primaries and 3 replicas waiting for one replica per
  answer, the pub/sub Redis, a PostgreSQL primary and its replica. Each process's CPU per answer is
  measured as `bench.pipeline.measured_run` measures it; the components sum their processes.
- **A big quiz's broadcast spread.** One deployment on the cluster topology, one quiz at a time on it:
  10,000 players spread evenly over the two edges, then 10,000 on the first edge alone, then 9,000
  through HAProxy (`big_quizzes` chooses which; `big_quiz_rounds` times). The load generator spreads
  the 10,000 itself, half to each edge as HAProxy's `leastconn` does, because HAProxy cannot hold 10,000
  players here: it needs two descriptors per connection, and this machine's hard limit of 20,000 per
  process cannot be raised.

Before the runs, each topology's infrastructure is measured idle: the other topology keeps running beside
every run, and this is what it draws meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import loadtest
from bench.pipeline import Deployment, big_quiz_plan, infra_pids, measured_run, steady_plan
from bench.procs import tree_cpu_seconds

# Processes of each service a topology runs, as tests/support/stack.py runs them.
REPLICAS = {"single": 1, "cluster": 2}
IDLE_S = 10.0


def component(process: str) -> str:
    """The part a measured process belongs to: `quiz-svc-2` is quiz_svc, `infra:kafka3` kafka,
    `infra:pg-replica` postgres, `infra:redis-pubsub` redis_pubsub."""
    name = re.sub(r"-?\d+$", "", process.removeprefix("infra:"))
    if name.startswith("pg-"):
        return "postgres"
    return name.replace("-svc", "_svc").replace("-", "_")


def by_component(per_process: Mapping[str, float | None], digits: int = 1) -> dict[str, float]:
    parts: dict[str, float] = {}
    for process, value in per_process.items():
        if value is not None:
            parts[component(process)] = parts.get(component(process), 0.0) + value
    return {part: round(value, digits) for part, value in parts.items()}


def summary(measured: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparison needs of one measured run, the CPU per answer by component and in all."""
    report = measured["loadtest"]
    parts = by_component(measured["cpu_us_per_answer"])
    return {
        "answers_per_s_steady": report["answers_per_s_steady"],
        "answer_to_ack_ms": report["answer_to_ack_ms"],
        "answer_to_leaderboard_ms": report["answer_to_leaderboard_ms"],
        "broadcast_spread_ms": report["broadcast_spread_ms"],
        "joins_per_s": report["joins_per_s"],
        "connections_peak": report["connections_peak"],
        "errors": report["errors"],
        "every_answer_persisted": measured["every_answer_persisted"],
        "answers_per_call": measured["answers_per_call"],
        "cpu_us_per_answer": parts,
        "cpu_us_per_answer_total": round(sum(parts.values()), 1),
        "cpu_us_per_answer_by_process": measured["cpu_us_per_answer"],
        "load_generator_workers_cpu_s": measured["load_generator_workers_cpu_s"],
    }


async def idle_cores(topology: str) -> dict[str, float]:
    """CPU cores each component of a topology's infrastructure draws with no deployment on it."""
    pids = infra_pids(topology)
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(IDLE_S)
    return by_component({name: (tree_cpu_seconds(pid) - before[name]) / IDLE_S for name, pid in pids.items()}, 3)


async def _measure(
    log_dir: Path, topology: str, label: str, plan: Callable[[Deployment], loadtest.Plan]
) -> dict[str, Any]:
    """A fresh deployment on the topology, one measured run of the plan on it."""
    deployment = Deployment(log_dir, f"-{label}", topology=topology, replicas=REPLICAS[topology])
    await deployment.start()
    try:
        return summary(await measured_run(deployment, plan(deployment), label))
    finally:
        deployment.stop()


def _now() -> dict[str, Any]:
    """When a run started, and how busy the machine was (other work shares its 2 cores)."""
    return {"started_utc": time.strftime("%H:%M:%S", time.gmtime()), "load_average_1m": os.getloadavg()[0]}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


async def replication_cost(log_dir: Path, *, rounds: int, duration_s: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {topology: [] for topology in REPLICAS}
    for number in range(1, rounds + 1):
        for topology in REPLICAS:
            label = f"{topology}-{number}"
            started = _now()
            measured = await _measure(log_dir, topology, label, lambda d: steady_plan(d.url, 2000, duration_s))
            runs[topology].append({"round": number, **started, **measured})
    single, cluster = runs["single"], runs["cluster"]
    parts = sorted({part for run in single + cluster for part in run["cpu_us_per_answer"]})

    def mean(topology_runs: list[dict[str, Any]], part: str) -> float:
        total = sum(float(run["cpu_us_per_answer"].get(part, 0.0)) for run in topology_runs)
        return round(total / len(topology_runs), 1)

    mean_single = {part: mean(single, part) for part in parts}
    mean_cluster = {part: mean(cluster, part) for part in parts}
    total_single, total_cluster = sum(mean_single.values()), sum(mean_cluster.values())
    return {
        "runs": runs,
        "mean_cpu_us_per_answer": {"single": mean_single, "cluster": mean_cluster},
        # The cost of replication: the cluster's CPU per answer over the single node's, whole and by part.
        "cluster_over_single": {
            "total": _ratio(total_cluster, total_single),
            "per_round": [
                _ratio(c["cpu_us_per_answer_total"], s["cpu_us_per_answer_total"])
                for s, c in zip(single, cluster, strict=True)
            ],
            "by_component": {part: _ratio(mean_cluster[part], mean_single[part]) for part in parts},
        },
    }


BIG_QUIZZES = ("two_edges", "one_edge", "haproxy_9000")


async def big_quiz_spread(
    log_dir: Path, *, rounds: int, duration_s: float, quizzes: Sequence[str] = BIG_QUIZZES
) -> dict[str, Any]:
    """One big quiz at a time on one deployment: 10,000 players spread over both edges, 10,000 on the first
    edge alone, and 9,000 through HAProxy (as many as its descriptors allow here; see Deployment)."""
    runs: dict[str, list[dict[str, Any]]] = {where: [] for where in quizzes}
    deployment = Deployment(log_dir, "-spread", topology="cluster", replicas=REPLICAS["cluster"])
    await deployment.start()
    edges = (deployment.edge_url(0), deployment.edge_url(1))
    plans = {
        "two_edges": big_quiz_plan(edges[0], duration_s, player_urls=edges),
        "one_edge": big_quiz_plan(edges[0], duration_s),
        "haproxy_9000": big_quiz_plan(deployment.url, duration_s, players=9_000),
    }
    try:
        for number in range(1, rounds + 1):
            for where in quizzes:
                started = _now()
                measured = summary(await measured_run(deployment, plans[where], f"big-quiz-{where}-{number}"))
                runs[where].append({"round": number, **started, **measured})
    finally:
        deployment.stop()
    return {"runs": runs}


PARTS = ("replication", "big_quiz")


async def run(
    log_dir: Path,
    *,
    rounds: int = 2,
    quick: bool = False,
    parts: Sequence[str] = PARTS,
    big_quiz_rounds: int = 1,
    big_quizzes: Sequence[str] = BIG_QUIZZES,
    big_quiz_duration_s: float = 300.0,
) -> dict[str, Any]:
    results: dict[str, Any] = {"idle_cores": {topology: await idle_cores(topology) for topology in REPLICAS}}
    if "replication" in parts:
        results["replication"] = await replication_cost(log_dir, rounds=rounds, duration_s=40.0 if quick else 60.0)
    if "big_quiz" in parts:
        # 10,000 joins took 200-400 s on this machine's topology while other work ran beside it.
        results["big_quiz"] = await big_quiz_spread(
            log_dir,
            rounds=big_quiz_rounds,
            duration_s=120.0 if quick else big_quiz_duration_s,
            quizzes=big_quizzes,
        )
    return results
