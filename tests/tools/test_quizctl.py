"""quizctl against a running quizmesh: what it prints, what it changes, and its exit codes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from apps import quizctl
from bench.procs import free_port
from quizmesh import results
from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.support.checks import wait_for_stored_answers
from tests.support.stack import Stack

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "capitals.json"


async def run(capsys: pytest.CaptureFixture[str], stack: Stack, *args: str) -> tuple[int, str, str]:
    """Runs quizctl's main() in a thread (it runs its own event loop) against stack; returns code, out, err."""
    capsys.readouterr()
    addresses = [
        f"--quiz-addr={stack.quiz_addrs[0]}",
        f"--leaderboard-addr={stack.leaderboard_addrs[0]}",
        f"--persistence-addr={stack.persistence_addrs[0]}",
        "--timeout=10",
    ]
    code = await asyncio.to_thread(quizctl.main, [*addresses, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def create(capsys: pytest.CaptureFixture[str], stack: Stack) -> tuple[str, str]:
    code, out, err = await run(capsys, stack, "create", "--file", str(EXAMPLE), "--json")
    assert code == 0, err
    created = json.loads(out)
    return created["quiz_id"], created["host_token"]


async def join(stack: Stack, quiz_id: str, nicknames: Sequence[str]) -> dict[str, str]:
    """Player tokens by nickname, joined over gRPC as the edge would."""
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel:
        quiz = pb_grpc.QuizServiceStub(channel)
        tokens = {}
        for nickname in nicknames:
            joined = await quiz.JoinQuiz(pb.JoinQuizRequest(quiz_id=quiz_id, nickname=nickname), timeout=10)
            tokens[nickname] = joined.player_token
        return tokens


async def answer(stack: Stack, token: str, question_index: int, choice: int) -> pb.AnswerResult:
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel:
        request = pb.SubmitAnswerRequest(
            answer=pb.Answer(player_token=token, question_index=question_index, choice=choice)
        )
        response: pb.SubmitAnswerResponse = await pb_grpc.QuizServiceStub(channel).SubmitAnswer(request, timeout=10)
        return response.result


async def test_a_host_runs_a_quiz_and_exports_its_results(
    capsys: pytest.CaptureFixture[str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = await run(capsys, stack, "create", "--file", str(EXAMPLE))
    assert code == 0, err
    printed = dict(line.split(maxsplit=1) for line in out.splitlines())
    quiz_id, host_token = printed["quiz_id"], printed["host_token"]

    code, out, _ = await run(capsys, stack, "list", "--limit", "5")
    assert code == 0
    assert out.splitlines()[0].startswith(quiz_id)
    assert out.splitlines()[0].endswith("European capitals")

    tokens = await join(stack, quiz_id, ["ada", "bob"])
    monkeypatch.setenv("QUIZMESH_HOST_TOKEN", host_token)
    code, out, err = await run(capsys, stack, "start", quiz_id)
    assert (code, out.strip()) == (0, f"{quiz_id}  question_open  question 1/4  players 2"), err

    ada_first = await answer(stack, tokens["ada"], 0, 0)
    bob_first = await answer(stack, tokens["bob"], 0, 2)
    code, out, _ = await run(capsys, stack, "close", quiz_id)
    assert code == 0
    assert out.splitlines() == [
        f"{quiz_id}  question_closed  question 1/4  players 2",
        "correct [0]  answers per choice [1, 0, 1, 0]",
    ]
    # quizctl names the question it closes: closing it again (a repeat after a lost reply) changes nothing.
    repeat = await run(capsys, stack, "close", quiz_id)
    assert repeat[:2] == (0, out)
    code, out, _ = await run(capsys, stack, "next", quiz_id, "--host-token", host_token, "--json")
    assert code == 0
    assert json.loads(out)["state"]["phase"] == "QUIZ_PHASE_QUESTION_OPEN"
    bob_second = await answer(stack, tokens["bob"], 1, 1)
    code, _, _ = await run(capsys, stack, "end", quiz_id)
    assert code == 0

    expected_scores = sorted([ada_first.total_score, bob_second.total_score], reverse=True)
    for _ in range(50):  # the leaderboard is a projection of Kafka events, updated every 200 ms here
        code, out, _ = await run(capsys, stack, "leaderboard", quiz_id, "--json")
        if [int(e["score"]) for e in json.loads(out).get("top_entries", ())] == expected_scores:
            break
        await asyncio.sleep(0.1)
    code, out, _ = await run(capsys, stack, "leaderboard", quiz_id, "--top", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{quiz_id}: 2 players")
    leader = max((ada_first.total_score, "ada"), (bob_second.total_score, "bob"))
    assert lines[1].split()[:3] == ["1", str(leader[0]), leader[1]]
    assert len(lines) == 2

    await wait_for_stored_answers(stack.persistence_addrs[0], quiz_id, expected=3)
    code, out, err = await run(capsys, stack, "export", quiz_id)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.startswith(",".join(results.COLUMNS))
    # One row per player per question asked so far (2 of 4), players in join order.
    assert [(r["nickname"], r["question_index"]) for r in rows] == [
        ("ada", "0"),
        ("ada", "1"),
        ("bob", "0"),
        ("bob", "1"),
    ]
    ada_q0, ada_q1, bob_q0, bob_q1 = rows
    assert ada_q0 | {"player_id": ""} == {
        "quiz_id": quiz_id,
        "player_id": "",
        "nickname": "ada",
        "question_index": "0",
        "choice": "0",
        "correct": "true",
        "points": str(ada_first.points),
        "response_time_ms": str(ada_first.response_time_ms),
        "total_score": str(ada_first.total_score),
        "answer": "Paris",
    }
    # An unanswered question: no choice, no points, the total so far.
    assert (ada_q1["choice"], ada_q1["correct"], ada_q1["points"], ada_q1["total_score"]) == (
        "",
        "",
        "0",
        str(ada_first.total_score),
    )
    assert (bob_q0["correct"], bob_q0["points"]) == ("false", str(bob_first.points))
    assert (bob_q1["choice"], bob_q1["correct"], bob_q1["total_score"]) == ("1", "true", str(bob_second.total_score))


async def test_tail_prints_state_and_leaderboard_changes_as_json_lines(
    capsys: pytest.CaptureFixture[str], stack: Stack
) -> None:
    quiz_id, host_token = await create(capsys, stack)
    tokens = await join(stack, quiz_id, ["cy"])
    capsys.readouterr()
    addresses = [f"--quiz-addr={stack.quiz_addrs[0]}", f"--leaderboard-addr={stack.leaderboard_addrs[0]}"]
    tailing = asyncio.create_task(asyncio.to_thread(quizctl.main, [*addresses, "tail", quiz_id, "--count", "4"]))
    async with grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel:
        quiz = pb_grpc.QuizServiceStub(channel)
        await asyncio.sleep(0.3)  # the watches are open: the first quiz line is the lobby
        await quiz.StartQuiz(pb.StartQuizRequest(quiz_id=quiz_id, host_token=host_token), timeout=10)
        await answer(stack, tokens["cy"], 0, 0)
        assert await asyncio.wait_for(tailing, 15) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    quiz_lines = [line for line in lines if line["stream"] == "quiz"]
    assert quiz_lines[0]["state"].get("phase", "QUIZ_PHASE_LOBBY") == "QUIZ_PHASE_LOBBY"
    assert any(line["state"].get("phase") == "QUIZ_PHASE_QUESTION_OPEN" for line in quiz_lines)
    boards = [line["leaderboard"] for line in lines if line["stream"] == "leaderboard"]
    assert boards and boards[-1]["quiz_id"] == quiz_id
    assert [e["nickname"] for e in boards[-1]["entries"]] == ["cy"]


async def test_a_missing_quiz_exits_3_with_the_services_reason(
    capsys: pytest.CaptureFixture[str], stack: Stack
) -> None:
    code, out, err = await run(capsys, stack, "export", "NOSUCHQZ")
    assert (code, out) == (quizctl.EXIT_NOT_FOUND, "")
    assert err.startswith("quizctl: NOT_FOUND: ") and "NOSUCHQZ" in err
    assert err.count("\n") == 1


async def test_another_quizs_host_token_exits_4(capsys: pytest.CaptureFixture[str], stack: Stack) -> None:
    quiz_id, _ = await create(capsys, stack)
    _, other_token = await create(capsys, stack)
    code, _, err = await run(capsys, stack, "start", quiz_id, "--host-token", other_token)
    assert code == quizctl.EXIT_DENIED, err
    assert err.startswith("quizctl: PERMISSION_DENIED: ")
    code, _, err = await run(capsys, stack, "end", quiz_id, "--host-token", "forged")
    assert code == quizctl.EXIT_DENIED, err


async def test_the_owner_runs_a_quiz_again_and_lists_its_sessions(
    capsys: pytest.CaptureFixture[str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUIZMESH_HOST_TOKEN", raising=False)
    monkeypatch.delenv("QUIZMESH_IDENTITY_TOKEN", raising=False)
    quiz_id, host_token = await create(capsys, stack)
    code, out, err = await run(capsys, stack, "run-again", quiz_id, "--host-token", host_token, "--json")
    assert code == 0, err
    again = json.loads(out)
    session_id, session_host = again["session"]["session_id"], again["host_token"]
    assert session_id != quiz_id and again["quiz"]["quiz_id"] == session_id

    code, out, err = await run(capsys, stack, "start", session_id, "--host-token", session_host)
    assert code == 0, err
    code, out, err = await run(capsys, stack, "sessions", quiz_id, "--host-token", host_token)
    assert code == 0, err
    assert [line.split()[::2] for line in out.splitlines()] == [[session_id, "question_open"], [quiz_id, "lobby"]]
    assert quiz_id in (await run(capsys, stack, "list", "--limit", "1000"))[1]
    assert session_id not in (await run(capsys, stack, "list", "--limit", "1000"))[1]

    # Only the owner: a session's host credential is not the quiz's, and none at all is a usage mistake.
    code, _, err = await run(capsys, stack, "run-again", quiz_id, "--host-token", session_host)
    assert code == quizctl.EXIT_DENIED, err
    code, _, err = await run(capsys, stack, "sessions", quiz_id)
    assert code == quizctl.EXIT_USAGE and "--identity-token" in err


async def test_usage_mistakes_exit_2(
    capsys: pytest.CaptureFixture[str], stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("QUIZMESH_HOST_TOKEN", raising=False)
    code, _, err = await run(capsys, stack, "start", "ANYQUIZ")
    assert code == quizctl.EXIT_USAGE
    assert "--host-token" in err
    assert (await run(capsys, stack, "fly"))[0] == quizctl.EXIT_USAGE
    bad = tmp_path / "bad.json"
    bad.write_text('{"title": "t", "questions": [{"text": "?", "choices": "ab", "correct_choices": [0]}]}')
    code, _, err = await run(capsys, stack, "create", "--file", str(bad))
    assert code == quizctl.EXIT_USAGE
    assert err.strip() == f"quizctl: {bad}: questions[0].choices must be a list of strings"
    sheet = tmp_path / "bad.csv"
    sheet.write_text("kind,text,choices,correct\nsingle_choice,Capital?,Lima|Cusco,1\nsingle_choice,Why?,a|b,x\n")
    code, _, err = await run(capsys, stack, "create", "--file", str(sheet))
    assert code == quizctl.EXIT_USAGE
    assert err.strip() == (
        f"quizctl: {sheet}: row 3: column 'correct' must hold choice numbers from 1 (e.g. 2 or 1|3), is 'x'"
    )


async def test_an_invalid_quiz_exits_1_with_the_services_explanation(
    capsys: pytest.CaptureFixture[str], stack: Stack, tmp_path: Path
) -> None:
    one_choice = tmp_path / "one.json"
    one_choice.write_text(
        json.dumps(
            {
                "title": "t",
                "questions": [{"text": "?", "choices": ["a"], "correct_choices": [0], "time_limit_seconds": 9}],
            }
        )
    )
    code, _, err = await run(capsys, stack, "create", "-f", str(one_choice))
    assert code == quizctl.EXIT_OTHER
    assert err.startswith("quizctl: INVALID_ARGUMENT: ") and err.rstrip().endswith("[invalid_quiz]")
    # The service's refusal of a question names the row of the spreadsheet it came from.
    sheet = tmp_path / "seven.csv"
    sheet.write_text("text,choices,correct\nFine?,a|b,1\nToo many?,a|b|c|d|e|f|g,1\n")
    code, _, err = await run(capsys, stack, "create", "-f", str(sheet))
    assert (code, err.strip()) == (
        quizctl.EXIT_OTHER,
        "quizctl: INVALID_ARGUMENT: row 3: needs 2 to 6 choices, has 7 [invalid_quiz]",
    )


@pytest.mark.parametrize("example", ["kinds.json", "kinds.csv", "kinds.xlsx"])
async def test_the_example_documents_of_every_kind_create_the_same_quiz(
    capsys: pytest.CaptureFixture[str], stack: Stack, example: str
) -> None:
    code, out, err = await run(capsys, stack, "create", "--file", str(EXAMPLE.with_name(example)), "--json")
    assert code == 0, err
    created = json.loads(out)["quiz"]
    kinds = [q.get("kind", "QUESTION_KIND_UNSPECIFIED") for q in created["questions"]]
    assert kinds == [
        "QUESTION_KIND_SINGLE_CHOICE",
        "QUESTION_KIND_MULTIPLE_SELECT",
        "QUESTION_KIND_TRUE_FALSE",
        "QUESTION_KIND_TYPE_ANSWER",
        "QUESTION_KIND_ORDERING",
        "QUESTION_KIND_ESTIMATE",
        "QUESTION_KIND_POLL",
    ]
    # The pictures and the clip the document names were uploaded with it and are stored by media ID.
    first = created["questions"][0]
    assert len(first["image"]) == 64 and len(created["questions"][3]["audio"]) == 64
    assert [len(i) for i in first["choice_images"]] == [64, 64, 64]


async def test_an_unreachable_service_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = await asyncio.to_thread(quizctl.main, ["list", f"--quiz-addr=127.0.0.1:{free_port()}", "--timeout=1"])
    err = capsys.readouterr().err
    assert code == quizctl.EXIT_UNAVAILABLE
    assert err.startswith("quizctl: UNAVAILABLE: ") or err.startswith("quizctl: DEADLINE_EXCEEDED: ")
    assert err.count("\n") == 1


# --- as a process in a shell: one-line usage errors, and a reader that stops early ---

QUIZCTL = str(Path(sys.executable).with_name("quizctl"))


def addresses_of(stack: Stack) -> list[str]:
    return [
        f"--quiz-addr={stack.quiz_addrs[0]}",
        f"--leaderboard-addr={stack.leaderboard_addrs[0]}",
        f"--persistence-addr={stack.persistence_addrs[0]}",
    ]


@pytest.mark.parametrize(
    "args",
    [[], ["fly"], ["list", "--limit", "many"], ["start"], ["leaderboard", "Q", "--top"], ["--no-such-option"]],
)
async def test_a_usage_mistake_is_one_line_on_stderr_and_exit_2(args: list[str]) -> None:
    done = await asyncio.to_thread(subprocess.run, [QUIZCTL, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == quizctl.EXIT_USAGE, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("quizctl"), done.stderr
    assert "--help" in done.stderr


async def test_help_still_prints_the_whole_usage() -> None:
    done = await asyncio.to_thread(subprocess.run, [QUIZCTL, "--help"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert "Exit codes" in done.stdout and done.stdout.count("\n") > 10


async def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs quizctl with stdout a pipe whose reader is already gone, as when `| head -1` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return await asyncio.to_thread(
            subprocess.run, [QUIZCTL, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)


async def test_list_into_a_reader_that_stopped_ends_quietly(capsys: pytest.CaptureFixture[str], stack: Stack) -> None:
    await create(capsys, stack)
    done = await run_into_a_closed_pipe(*addresses_of(stack), "list")
    assert (done.returncode, done.stderr) == (quizctl.EXIT_READER_GONE, "")


async def test_tail_into_a_reader_that_stopped_ends_quietly(capsys: pytest.CaptureFixture[str], stack: Stack) -> None:
    quiz_id, _ = await create(capsys, stack)
    done = await run_into_a_closed_pipe(*addresses_of(stack), "tail", quiz_id)
    assert (done.returncode, done.stderr) == (quizctl.EXIT_READER_GONE, "")
