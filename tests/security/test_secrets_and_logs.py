"""Secrets come from the environment or files, never from code; logs never contain credentials."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from quizmesh.settings import SettingsError, signing_key
from tests.support.client import EdgeClient
from tests.support.infra import REAL
from tests.support.stack import SIGNING_KEY, process_stack

REPO = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("quizmesh", "edge", "quiz_svc", "leaderboard_svc", "persistence_svc")
GENERATED = re.compile(r"^quizmesh/(quiz|leaderboard|persistence|events)/")
SECRET_PATTERNS = {
    "a URL with a password": re.compile(r"\w+://[^/\s:@\"']+:[^/\s@\"']+@"),
    "a secret assigned a literal": re.compile(
        r"(?i)\b\w*(secret|password|passwd|signing_key|api_key|private_key)\w*\s*[:=]\s*[rbf]?[\"'][^\"'\s]{6,}[\"']"
    ),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a signed token": re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}"),
}
JWT = SECRET_PATTERNS["a signed token"]


def service_sources() -> list[Path]:
    return [
        path
        for package in SERVICE_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if not GENERATED.match(path.relative_to(REPO).as_posix())
    ]


def test_service_code_holds_no_secret_literals() -> None:
    sources = service_sources()
    assert len(sources) > 40  # the scan really reads the packages
    found = [
        f"{path.relative_to(REPO)}:{number}: {name}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for name, pattern in SECRET_PATTERNS.items()
        if pattern.search(line)
    ]
    assert found == []


def test_the_signing_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "signing-key"
    key_file.write_text("k" * 40 + "\n")
    assert signing_key({"QUIZMESH_SIGNING_KEY_FILE": str(key_file)}) == b"k" * 40
    assert signing_key({"QUIZMESH_SIGNING_KEY": "e" * 32}) == b"e" * 32
    with pytest.raises(SettingsError):
        signing_key({})  # no built-in fallback outside the embedded mode
    with pytest.raises(SettingsError):
        signing_key({"QUIZMESH_SIGNING_KEY": "short"})


@pytest.mark.e2e
@pytest.mark.integration
async def test_logs_never_contain_credentials(tmp_path: Path) -> None:
    """A whole game at DEBUG level, including a forged and a replayed credential: every service's log
    is then searched for every credential issued, the signing key and the database DSN."""
    logs = tmp_path / "logs"
    secrets: set[str] = {SIGNING_KEY, REAL.postgres_dsn}
    question = {"text": "1 + 1?", "choices": ["2", "3"], "correct_choices": [0], "time_limit_seconds": 30}
    async with (
        process_stack(logs, extra_env={"QUIZMESH_LOG_LEVEL": "DEBUG"}) as stack,
        aiohttp.ClientSession() as session,
    ):
        host = await EdgeClient.connect(session, stack.ws_url())
        created = await host.request("create_quiz", title="logs", questions=[question, question])
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        secrets.add(host_token)
        assert (await host.request("host_quiz", quiz_id=quiz_id, host_token=host_token))["type"] == "hosting"
        players = []
        for name in ("ada", "bob"):
            client = await EdgeClient.connect(session, stack.ws_url())
            joined = await client.request("join_quiz", quiz_id=quiz_id, nickname=name)
            secrets.add(joined["player_token"])
            players.append((client, joined["player_token"]))
        await host.request("start_quiz")
        for client, _ in players:
            assert (await client.request("submit_answer", question_index=0, choice=0))["type"] == "answer_result"
        stranger = await EdgeClient.connect(session, stack.ws_url())
        forged = players[0][1][:-4] + "AAAA"
        secrets.add(forged)
        assert (await stranger.request("resume", player_token=forged))["type"] == "error"
        resumed = await stranger.request("resume", player_token=players[1][1])
        secrets.add(resumed["player_token"])
        assert (await host.request("host_quiz", quiz_id=quiz_id, host_token=forged))["type"] == "error"
        await host.request("end_quiz")
        for client in [host, stranger, *(c for c, _ in players)]:
            await client.close()
    text = "\n".join(path.read_text(errors="replace") for path in sorted(logs.glob("*.log")))
    assert re.search(r"\bdebug\b", text, re.IGNORECASE)  # the services did log at DEBUG level
    assert [s[:12] for s in secrets if s in text] == []
    assert JWT.findall(text) == []
