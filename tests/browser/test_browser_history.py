"""The player page of a signed-in learner (issue 16): it takes the identity token the host application
hands over in the URL's fragment, shows the learner's past sessions, and joins as them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from playwright.async_api import Browser, expect

from quizmesh.quiz.v1 import quiz_service_pb2 as pb
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as pb_grpc
from tests.browser.pages import PHONE, PROJECTOR, PageErrors, open_page, screenshot
from tests.support.checks import stored_participants, wait_for_stored_answers
from tests.support.client import EdgeClient
from tests.support.identity import TestProvider
from tests.support.stack import Stack, embedded_stack

QUESTION = pb.Question(text="2 + 2 = ?", choices=["3", "4"], correct_choices=[1], time_limit_seconds=60)


@dataclass(frozen=True)
class SignedIn:
    """An embedded stack that takes identity tokens for players and hosts, the provider that signs them,
    and a quiz_svc client."""

    provider: TestProvider
    stack: Stack
    quizzes: pb_grpc.QuizServiceStub


@pytest.fixture
async def signed_in(tmp_path: Path) -> AsyncIterator[SignedIn]:
    (tmp_path / "idp").mkdir()
    provider = TestProvider(tmp_path / "idp")
    async with (
        embedded_stack(tmp_path, provider.env("both")) as stack,
        grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel,
    ):
        yield SignedIn(provider, stack, pb_grpc.QuizServiceStub(channel))


async def test_a_signed_in_learner_sees_their_past_sessions_and_joins_as_themselves(
    browser: Browser, signed_in: SignedIn
) -> None:
    errors = PageErrors()
    learner = signed_in.provider.token("learner-7")
    stack, quizzes = signed_in.stack, signed_in.quizzes
    async with aiohttp.ClientSession() as session:
        created = await quizzes.CreateQuiz(pb.CreateQuizRequest(title="Sums", questions=[QUESTION]), timeout=10)
        played = created.quiz.quiz_id
        # A session the learner played before, from another device.
        host = await EdgeClient.connect(session, stack.ws_url())
        await host.request("host_quiz", quiz_id=played, host_token=created.host_token)
        device = await EdgeClient.connect(session, stack.ws_url())
        await device.request("join_quiz", quiz_id=played, nickname="Lea", identity_token=learner)
        await host.request("start_quiz")
        result = await device.request("submit_answer", question_index=0, choice=1)
        await host.request("end_quiz")
        await wait_for_stored_answers(stack.persistence_addrs[0], played, expected=1)
        again = await quizzes.StartSession(
            pb.StartSessionRequest(quiz_id=played, host_token=created.host_token), timeout=10
        )
        next_session = again.session.session_id

        page = await open_page(
            browser, f"{stack.edge_urls[0]}/?quiz={next_session}#identity_token={learner}", PHONE, errors
        )
        rows = page.locator("#history-list .history-row")
        await expect(rows).to_have_count(1)
        await expect(rows.first.locator(".history-session")).to_have_text(played)
        await expect(rows.first.locator(".history-rank")).to_have_text("#1 of 1")
        await expect(rows.first.locator(".history-score")).to_have_text(f"{result['total_score']:,} points")
        assert "identity_token" not in page.url  # taken out of the address bar
        await screenshot(page, "player-history")

        await page.fill("#join-nickname", "Lea")
        await page.click("#join-button")
        await expect(page.locator("[data-view=lobby]")).to_be_visible()
        # The page joined as the learner: the stored participation carries their user.
        participants = []
        for _ in range(100):
            participants = await stored_participants(stack.persistence_addrs[0], next_session)
            if participants:
                break
            await page.wait_for_timeout(100)
        assert [(p.nickname, p.user_id) for p in participants] == [("Lea", "learner-7")]
        assert errors.errors == [] and errors.dialogs == []
        for client in (host, device):
            await client.close()
        await page.context.close()


async def test_the_host_runs_the_quiz_again_from_the_host_page(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    async with (
        embedded_stack(tmp_path) as stack,
        grpc.aio.insecure_channel(stack.quiz_addrs[0]) as channel,
        aiohttp.ClientSession() as session,
    ):
        socket = await EdgeClient.connect(session, stack.ws_url())
        created = await socket.request(
            "create_quiz",
            title="Sums",
            questions=[{"text": "2 + 2 = ?", "choices": ["3", "4"], "correct_choices": [1], "time_limit_seconds": 30}],
        )
        await socket.close()
        quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
        context = await browser.new_context(viewport=PROJECTOR)
        # As the host page stores a quiz it created: the hosted session, and the quiz's owner credential.
        owner = {"quiz_id": quiz_id, "host_token": host_token}
        stored = json.dumps({**owner, "owner": owner})
        await context.add_init_script(f"sessionStorage.setItem('quizmesh.hosting', {json.dumps(stored)})")
        host = errors.watch(await context.new_page())
        await host.goto(f"{stack.edge_urls[0]}/host")
        await expect(host.locator("#quiz-code")).to_have_text(quiz_id)
        await expect(host.locator("#run-again-button")).to_be_hidden()
        await host.click("#end-button")
        await host.click("#run-again-button")

        await expect(host.locator("#quiz-code")).not_to_have_text(quiz_id)
        await expect(host.locator("#start-button")).to_be_visible()
        listed = await pb_grpc.QuizServiceStub(channel).ListSessions(
            pb.ListSessionsRequest(quiz_id=quiz_id, host_token=host_token), timeout=10
        )
        new_code = await host.locator("#quiz-code").inner_text()
        assert [s.session_id for s in listed.sessions] == [new_code, quiz_id]
        # Only the quiz's owner starts sessions over HTTP.
        url = f"{stack.edge_urls[0]}/quizzes/{quiz_id}/sessions"
        async with session.post(url) as anonymous:
            assert anonymous.status == 401
        stored_now = json.loads(await host.evaluate("sessionStorage.getItem('quizmesh.hosting')"))
        async with session.post(url, headers={"Authorization": f"Bearer {stored_now['host_token']}"}) as denied:
            assert denied.status == 403  # the new session's credential does not own the quiz
        # The new session is hosted from the page: it starts.
        await host.click("#start-button")
        await expect(host.locator("#close-button")).to_be_visible()
        assert errors.errors == [] and errors.dialogs == []
        await context.close()


async def test_a_signed_in_teacher_hosts_and_runs_again_from_the_host_page_by_signing_in(
    browser: Browser, signed_in: SignedIn
) -> None:
    errors = PageErrors()
    teacher = signed_in.provider.token("teacher-3")
    quizzes, edge_url = signed_in.quizzes, signed_in.stack.edge_urls[0]
    created = await quizzes.CreateQuiz(
        pb.CreateQuizRequest(title="Sums", questions=[QUESTION], identity_token=teacher), timeout=10
    )
    quiz_id = created.quiz.quiz_id
    # The application links the teacher to their quiz; the page holds no host credential of it.
    host = await open_page(browser, f"{edge_url}/host?quiz={quiz_id}#identity_token={teacher}", PROJECTOR, errors)
    await expect(host.locator("#quiz-code")).to_have_text(quiz_id)
    await expect(host.locator("#signed-in")).to_be_visible()
    assert "identity_token" not in host.url and "quiz=" not in host.url
    await host.click("#start-button")
    await expect(host.locator("#close-button")).to_be_visible()
    await host.click("#end-button")
    # Exported by sign-in: the page holds no host credential of this session.
    async with host.expect_download() as download:
        await host.click("#csv-button")
    exported = Path(await (await download.value).path()).read_text()
    assert exported.splitlines()[0].startswith("quiz_id,"), exported
    await host.click("#run-again-button")
    await expect(host.locator("#quiz-code")).not_to_have_text(quiz_id)
    await expect(host.locator("#start-button")).to_be_visible()
    new_code = await host.locator("#quiz-code").inner_text()
    listed = await quizzes.ListSessions(pb.ListSessionsRequest(quiz_id=quiz_id, identity_token=teacher), timeout=10)
    assert [(s.session_id, s.host_user_id) for s in listed.sessions] == [
        (new_code, "teacher-3"),
        (quiz_id, "teacher-3"),
    ]
    await host.click("#start-button")
    await expect(host.locator("#close-button")).to_be_visible()

    # Another teacher's sign-in hosts nothing of it.
    other = await open_page(
        browser,
        f"{edge_url}/host?quiz={quiz_id}#identity_token={signed_in.provider.token('teacher-4')}",
        PROJECTOR,
        errors,
    )
    await expect(other.locator("#host-error")).to_contain_text("does not host this session")
    await expect(other.locator("[data-view=create]")).to_be_visible()
    assert errors.errors == [] and errors.dialogs == []
    for page in (host, other):
        await page.context.close()
