"""The results export: the CSV it builds, and who may download it over HTTP."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import aiohttp
import pytest

from edge.results import COLUMNS, results_csv
from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from tests.support.checks import wait_for_stored_answers
from tests.support.client import EdgeClient
from tests.support.stack import embedded_stack

QUESTIONS = [
    {"text": "2 + 2 = ?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 30},
    {"text": "3 + 3 = ?", "choices": ["6", "7"], "correct_choices": [0], "time_limit_seconds": 30},
]


def _participant(player_id: str, nickname: str) -> persistence_pb2.Participant:
    return persistence_pb2.Participant(quiz_id="Q1", player_id=player_id, nickname=nickname)


def _answer(player_id: str, index: int, choice: int, points: int, total: int) -> persistence_pb2.StoredAnswer:
    return persistence_pb2.StoredAnswer(
        quiz_id="Q1",
        question_index=index,
        player_id=player_id,
        choice=choice,
        correct=points > 0,
        points=points,
        response_time_ms=1500 + index,
        total_score=total,
    )


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_every_player_gets_a_row_per_question_asked_with_a_running_total() -> None:
    participants = [_participant("p-ada", "Ada"), _participant("p-bob", "Bob")]
    answers = [_answer("p-bob", 0, 1, 900, 900), _answer("p-ada", 1, 0, 950, 950), _answer("p-bob", 1, 1, 0, 900)]

    rows = _rows(results_csv("Q1", 2, participants, answers))

    assert rows == [
        list(COLUMNS),
        ["Q1", "p-ada", "Ada", "0", "", "", "0", "", "0"],
        ["Q1", "p-ada", "Ada", "1", "0", "true", "950", "1501", "950"],
        ["Q1", "p-bob", "Bob", "0", "1", "true", "900", "1500", "900"],
        ["Q1", "p-bob", "Bob", "1", "1", "false", "0", "1501", "900"],
    ]


def test_questions_not_asked_yet_have_no_rows_and_unlisted_players_still_appear() -> None:
    # The answer's player has no stored join yet: the two arrive on different topics.
    rows = _rows(results_csv("Q1", 1, [], [_answer("p-cy", 0, 0, 800, 800)]))

    assert rows[1:] == [["Q1", "p-cy", "", "0", "0", "true", "800", "1500", "800"]]


@pytest.mark.parametrize("nickname", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"])
def test_a_nickname_a_spreadsheet_would_run_as_a_formula_is_kept_as_text(nickname: str) -> None:
    rows = _rows(results_csv("Q1", 1, [_participant("p-1", nickname)], []))

    assert rows[1][2] == "'" + nickname


def test_commas_quotes_and_markup_in_nicknames_survive_the_round_trip() -> None:
    nickname = 'Ada, "the" <b>first</b>'
    rows = _rows(results_csv("Q1", 1, [_participant("p-1", nickname)], []))

    assert rows[1][2] == nickname


@pytest.mark.e2e
async def test_only_the_quizs_host_downloads_its_results(tmp_path: Path) -> None:
    async with embedded_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        host = await EdgeClient.connect(session, stack.ws_url())
        created = await host.request("create_quiz", title="Export", questions=QUESTIONS)
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        other = await host.request("create_quiz", title="Other", questions=QUESTIONS)
        await host.request("host_quiz", quiz_id=quiz_id, host_token=host_token)
        player = await EdgeClient.connect(session, stack.ws_url())
        joined = await player.request("join_quiz", quiz_id=quiz_id, nickname="Ada")
        await host.request("start_quiz")
        result = await player.request("submit_answer", question_index=0, choice=1)
        assert result["type"] == "answer_result", result
        await wait_for_stored_answers(stack.persistence_addrs[0], quiz_id, expected=1)

        url = f"{stack.edge_urls[0]}/quizzes/{quiz_id}/results.csv"

        async def get(quiz_url: str, authorization: str | None) -> tuple[int, str]:
            headers = {"Authorization": authorization} if authorization else {}
            async with session.get(quiz_url, headers=headers) as response:
                return response.status, await response.text()

        assert (await get(url, None))[0] == 401
        assert (await get(url, f"Basic {host_token}"))[0] == 401
        assert (await get(url, "Bearer not-a-token"))[0] == 403
        assert (await get(url, f"Bearer {other['host_token']}"))[0] == 403
        missing = f"{stack.edge_urls[0]}/quizzes/NOSUCHQUIZ/results.csv"
        assert (await get(missing, f"Bearer {host_token}"))[0] == 404

        async with session.get(url, headers={"Authorization": f"Bearer {host_token}"}) as response:
            assert response.status == 200
            assert response.content_type == "text/csv"
            assert response.headers["Content-Disposition"] == f'attachment; filename="quizmesh-{quiz_id}-results.csv"'
            rows = _rows(await response.text())
        player_id = joined["player"]["player_id"]
        assert rows == [
            list(COLUMNS),
            [
                quiz_id,
                player_id,
                "Ada",
                "0",
                "1",
                "true",
                str(result["points"]),
                str(result["response_time_ms"]),
                str(result["total_score"]),
            ],
        ]
        await player.close()
        await host.close()
