"""npm's socket.io-client (the browsers' client) joins, answers and sees its score through the edge.

socket.io-client is installed into a temporary directory for the test, never into the repository.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.client import EdgeClient
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOCKETIO_CLIENT = "socket.io-client@4.8.4"
SCRIPT = Path(__file__).with_name("socketio_client.cjs")


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run npm's socket.io-client")
    target = tmp_path_factory.mktemp("socketio-client")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(target), SOCKETIO_CLIENT],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if installed.returncode != 0:
        pytest.skip(f"npm could not install {SOCKETIO_CLIENT}: {installed.stderr.strip()[-300:]}")
    return target / "node_modules"


async def next_step(process: asyncio.subprocess.Process, expected: str) -> Any:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line, f"the node client exited before {expected!r}"
    step = orjson.loads(line)
    assert step["step"] == expected, step
    return step["data"]


async def test_npm_socketio_client_joins_answers_and_receives_its_leaderboard(stack: Stack, node_modules: Path) -> None:
    async with aiohttp.ClientSession() as http:
        host = await EdgeClient.connect(http, stack.ws_url())
        questions = [{"text": "1 + 1 = ?", "choices": ["1", "2"], "correct_choices": [1], "time_limit_seconds": 60}]
        created = await host.request("create_quiz", title="Node", questions=questions)
        quiz_id = created["quiz"]["quiz_id"]
        await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])
        process = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            stack.edge_urls[0],
            quiz_id,
            env={**os.environ, "NODE_PATH": str(node_modules)},
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            joined = await next_step(process, "joined")
            assert joined["type"] == "joined" and joined["player"]["nickname"] == "Node"
            assert (await host.request("start_quiz"))["type"] == "host_ack"
            answered = await next_step(process, "answered")
            assert answered["type"] == "answer_result" and answered["correct"] is True
            board = await next_step(process, "leaderboard")
            assert board["me"] == {"rank": 1, "score": answered["total_score"]}
            assert board["top"][0]["player_id"] == joined["player"]["player_id"]
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await host.close()
