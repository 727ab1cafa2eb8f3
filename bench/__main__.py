"""`python -m bench [fanout|floor|calls|pipeline|batching|fetch|sessions|topology|profile|idle|all]`: benchmarks.

Each writes its part of bench/out/results.json."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

OUT = Path(__file__).parent / "out"


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    logs = OUT / "logs"
    results: dict[str, Any] = {}
    if args.what in ("fanout", "all"):
        from bench.fanout import run as run_fanout

        results["fanout"] = await run_fanout(args.sizes, logs, protocols=args.protocols)
    if args.what in ("floor", "all"):
        from bench.floor import run as run_floor

        results["floor"] = await run_floor(args.sizes)
    if args.what in ("calls", "all"):
        from bench.calls import run as run_calls

        results["calls"] = await run_calls()
    if args.what in ("pipeline", "all"):
        from bench.pipeline import run as run_pipeline

        # An earlier checkout's figures go beside this one's, not over them.
        key = "pipeline" if args.services_from is None else "pipeline_services_from"
        results[key] = await run_pipeline(logs, quick=args.quick, services_from=args.services_from)
    if args.what == "batching":
        from bench.pipeline import batching_comparison

        results["batching"] = await batching_comparison(logs)
    if args.what == "fetch":
        from bench.pipeline import fetch_comparison

        results["fetch"] = await fetch_comparison(logs)
    if args.what == "topology":
        from bench.topology import run as run_topology

        results["topology"] = await run_topology(
            logs,
            rounds=args.rounds,
            quick=args.quick,
            parts=args.parts,
            big_quiz_rounds=args.big_quiz_rounds,
            big_quizzes=args.big_quizzes,
            big_quiz_duration_s=args.big_quiz_duration,
        )
    if args.what == "profile":
        from bench.profile import run as run_profile

        results["profile"] = await run_profile(logs, services_from=args.services_from)
    if args.what == "idle":
        from bench.idle import run as run_idle

        key = "idle" if args.services_from is None else "idle_services_from"
        results[key] = await run_idle(logs, services_from=args.services_from)
    if args.what in ("sessions", "all"):
        from bench.sessions import run as run_sessions

        results["sessions"] = await run_sessions(args.sessions, logs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "what",
        choices=[
            "fanout",
            "floor",
            "calls",
            "pipeline",
            "batching",
            "fetch",
            "sessions",
            "topology",
            "profile",
            "idle",
            "all",
        ],
        nargs="?",
        default="all",
    )
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 5000, 10000])
    parser.add_argument(
        "--protocols",
        type=lambda s: s.split(","),
        default=["plain", "socketio", "python-socketio"],
        help="fan-out rows: plain (edge, WebSocket), socketio (edge, /socket.io/), python-socketio",
    )
    parser.add_argument("--sessions", type=int, default=100_000, help="idle quiz sessions to create")
    parser.add_argument("--quick", action="store_true", help="shorter pipeline and topology steps")
    parser.add_argument(
        "--rounds", type=int, default=2, help="topology: runs on each topology, alternated (A B A B for 2)"
    )
    parser.add_argument("--big-quiz-rounds", type=int, default=1, help="topology: rounds of the big quizzes")
    parser.add_argument(
        "--big-quizzes",
        type=lambda s: s.split(","),
        default=["two_edges", "one_edge", "haproxy_9000"],
        help="topology: which big quizzes, in this order: two_edges, one_edge, haproxy_9000",
    )
    parser.add_argument("--big-quiz-duration", type=float, default=300.0, help="topology: seconds per big quiz")
    parser.add_argument(
        "--parts",
        type=lambda s: s.split(","),
        default=["replication", "big_quiz"],
        help="topology: replication (1,000 answers/s on each topology), big_quiz (10,000 players over 2 edges)",
    )
    parser.add_argument(
        "--services-from",
        type=lambda s: Path(s).resolve(),
        default=None,
        help="pipeline, profile, idle: run the services from this checkout (e.g. a git worktree of an earlier commit)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = uvloop.run(_run(args))
    path = OUT / "results.json"
    merged: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    merged.update(results)
    merged["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    merged.setdefault("runs", []).append(
        {"what": args.what, "started": started, "seconds": round(time.time() - started)}
    )
    path.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
