"""The results export over HTTP: who may download a quiz's CSV, and what it holds; and a learner's history."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import aiohttp
import pytest

from quizmesh.results import COLUMNS
from tests.edge.conftest import EdgeFactory
from tests.support.checks import wait_for_stored_answers
from tests.support.client import EdgeClient
from tests.support.stack import embedded_stack

QUESTIONS = [
    {"text": "2 + 2 = ?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 30},
    {"text": "3 + 3 = ?", "choices": ["6", "7"], "correct_choices": [0], "time_limit_seconds": 30},
]


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
            rows = list(csv.reader(io.StringIO(await response.text())))
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
                "4",  # the chosen choice's text
            ],
        ]
        await player.close()
        await host.close()


async def test_a_learners_history_needs_their_identity_token_in_the_header(edge: EdgeFactory) -> None:
    client = await edge()
    path = "/api/v1/users/me/results"
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": "Basic learner-token"})).status == 401
    refused = await client.get(path, headers={"Authorization": "Bearer forged"})
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get(f"{path}?page_size=many", headers={"Authorization": "Bearer learner-token"})).status == 400

    page = await client.get(path, headers={"Authorization": "Bearer learner-token"})
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    body = await page.json()
    assert [(r["session_id"], r["score"], r["rank"]) for r in body["results"]] == [("S1", "900", 1)]
    assert body["next_page_token"] == "page-2"
    last = await client.get(f"{path}?page_token=page-2", headers={"Authorization": "Bearer learner-token"})
    assert (await last.json())["next_page_token"] == ""
