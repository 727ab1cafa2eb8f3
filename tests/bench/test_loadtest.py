"""The load generator against a real stack: small N, every number it reports cross-checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apps.cli import main as cli_main
from bench import loadtest
from tests.support.checks import stored_answers
from tests.support.stack import Stack, stack_of_kind

PLAYERS = 24


@pytest.fixture(params=["embedded", pytest.param("processes", marks=pytest.mark.slow)])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with stack_of_kind(request.param, tmp_path) as running:
        yield running


def _plan(stack: Stack) -> loadtest.Plan:
    return loadtest.Plan(
        url=stack.ws_url().replace("http://", "ws://", 1),
        players=PLAYERS,
        quizzes=2,
        duration_s=7.0,
        join_rate=60.0,
        answer_min_s=1.5,
        answer_max_s=2.0,
        workers=2,
    )


@pytest.mark.e2e
async def test_loadtest_measures_joins_answers_and_leaderboards_of_a_real_stack(stack: Stack) -> None:
    lines: list[str] = []
    report: dict[str, Any] = await loadtest.run(_plan(stack), progress=lines.append)

    assert report["workers_finished"] == 2
    assert report["joins"] == PLAYERS and report["connections_peak"] == PLAYERS
    assert report["join_ms"]["count"] == PLAYERS
    accepted = report["answers_accepted"]
    # 24 players over ~6 s of 1.5 s questions: each answers several questions.
    assert accepted >= PLAYERS * 2
    assert set(report["errors"]) <= {"question_closed"}
    assert accepted + sum(report["errors"].values()) == report["answers_sent"]
    assert report["answer_to_ack_ms"]["count"] == accepted
    assert 0 < report["answer_to_ack_ms"]["p50"] <= report["answer_to_ack_ms"]["p99"]
    # The stacks coalesce leaderboards every 200 ms: a scoring answer shows up soon after its ack.
    reflected = report["answer_to_leaderboard_ms"]
    assert reflected["count"] > 0 and reflected["p50"] >= report["answer_to_ack_ms"]["p50"]
    assert report["leaderboard_messages"] >= PLAYERS
    assert sum(row["answers_accepted"] for row in report["timeline"]) == accepted
    assert len(lines) >= 5 and "answers/s" in lines[-1]

    # Every accepted answer reaches persistence: the stores agree with what the players were told.
    stored = 0
    for _ in range(150):
        stored = sum([len(await stored_answers(stack.persistence_addrs[0], q)) for q in report["quiz_ids"]])
        if stored >= accepted:
            break
        await asyncio.sleep(0.2)
    assert stored == accepted


def test_percentiles_are_nearest_rank() -> None:
    assert loadtest.percentiles([float(x) for x in range(1, 101)]) == {
        "count": 100,
        "p50": 50.0,
        "p95": 95.0,
        "p99": 99.0,
        "max": 100.0,
    }
    assert loadtest.percentiles([])["p99"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--players", "1", "--quizzes", "2"], "every quiz needs at least one player"),
        (["--answer-interval", "5:2"], "the answer interval must be MIN:MAX"),
        (["--duration", "600", "--answer-interval", "1:2"], "at most 500 questions"),
    ],
)
def test_loadtest_refuses_an_impossible_plan(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["loadtest", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
