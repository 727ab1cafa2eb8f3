"""One page of a learner's history (ListUserResults' reads, `persistence_svc.history.user_results`) on
the real PostgreSQL: a user who played `sessions` sessions of `players` players and `questions`
questions each, read `runs` times after `warmup` unmeasured reads; prints the median and p90 in ms.

Runs in a scratch database of its own (tests.support.infra.scratch_database, dropped afterwards). It
builds its sessions with the tests' event factories, so it lives beside them rather than in the
installed `bench` package. To compare two checkouts, run it with the other's tree first on PYTHONPATH:
`PYTHONPATH=/tmp/before python -m tests.persistence_svc.history_reads` reads through that tree's history.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from persistence_svc.adapters.postgres import PostgresResultStore
from persistence_svc.domain import batch_of
from persistence_svc.event_rows import row_from_event
from persistence_svc.history import user_results
from quizmesh.eventcodec import Event
from tests.persistence_svc.persistence_factories import answered, joined, new_quiz_id
from tests.support.infra import migrate_database, scratch_database


async def _fill(store: PostgresResultStore, user: str, sessions: int, players: int, questions: int) -> None:
    for s in range(sessions):
        quiz_id = new_quiz_id()
        me = joined(quiz_id, "me", 60_000 * (s + 1))
        me.user_id = user
        events: list[Event] = [me, *(joined(quiz_id, f"p{p}", 60_000 * (s + 1) + p + 1) for p in range(players - 1))]
        totals = dict.fromkeys(["me", *(f"p{p}" for p in range(players - 1))], 0)
        for q in range(questions):
            for i, player in enumerate(totals):
                points = (i * 37 + q * 11) % 1000
                totals[player] += points
                answer = answered(quiz_id, q, player, 60_000 * (s + 1) + 1_000 * (q + 1) + i, points=points)
                answer.total_score = totals[player]
                events.append(answer)
        await store.save(batch_of(row_from_event(e) for e in events))


async def run(sessions: int, players: int, questions: int, runs: int, warmup: int) -> dict[str, float]:
    async with scratch_database() as database:
        await migrate_database(database.owner_dsn)
        store = await PostgresResultStore.connect(database.service_dsn)
        try:
            user = f"bench-{uuid.uuid4().hex}"
            await _fill(store, user, sessions, players, questions)
            for _ in range(warmup):
                await user_results(store, user, sessions, None)
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                results, _ = await user_results(store, user, sessions, None)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(results) == sessions
        finally:
            await store.close()
    timings.sort()
    return {"median_ms": statistics.median(timings), "p90_ms": timings[int(0.9 * (len(timings) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--players", type=int, default=30)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(run(args.sessions, args.players, args.questions, args.runs, args.warmup))
    print(
        f"{args.sessions} sessions x {args.players} players x {args.questions} questions: "
        f"median {figures['median_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms over {args.runs} reads"
    )


if __name__ == "__main__":
    main()
