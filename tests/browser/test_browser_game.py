"""The player and host pages in a real browser: headless Chromium, driven by Playwright.

A host and three players, each in their own browser context (their own sessionStorage, like separate
devices), play a whole two-question quiz on the embedded stack. The assertions read what the pages
show and compare it with what the services stored. The screenshots for the README are taken on the way.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from typing import Final

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.pages import PHONE, PROJECTOR, PageErrors, join, open_page, screenshot
from tests.support.checks import stored_participants, wait_for_stored_answers
from tests.support.client import EdgeClient
from tests.support.game import QUESTIONS
from tests.support.stack import embedded_stack

pytestmark = pytest.mark.e2e

LOCKED_IN: Final = "Answer locked in — waiting for the others…"


# (nickname, choice for question 1, choice for question 2): Bob ends first, Cy second, Ada third.
PLAYERS: Final = [("Ada", 1, 1), ("Bob", 1, 0), ("Cy", 0, 0)]


async def leaderboard_rows(page: Page) -> list[tuple[str, str, str]]:
    rows = page.locator("#top-list li, #board-list li")
    return [
        (
            await row.locator(".rank").inner_text(),
            await row.locator(".nickname").inner_text(),
            await row.locator(".score").inner_text(),
        )
        for row in await rows.all()
    ]


def standings(totals: dict[str, int]) -> list[tuple[str, str, str]]:
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return [(str(rank), name, f"{score:,}") for rank, (name, score) in enumerate(ranked, start=1)]


@pytest.mark.slow  # 5 s on an idle machine, over 10 s on a busy one
async def test_a_host_and_three_players_play_a_whole_quiz(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    async with embedded_stack(tmp_path) as stack:
        base = stack.edge_urls[0]
        host = await open_page(browser, f"{base}/host", PROJECTOR, errors)

        # The host imports the questions from a JSON file, as create_quiz takes them.
        quiz_file = tmp_path / "capitals.json"
        quiz_file.write_text(json.dumps(QUESTIONS))
        await host.fill("#quiz-title-input", "Browser quiz")
        await host.set_input_files("#import-file", str(quiz_file))
        await expect(host.locator("#import-status")).to_have_text("Imported 2 questions from capitals.json")
        await expect(host.locator(".question-input").nth(1)).to_have_value("Capital of Italy?")
        await screenshot(host, "host-create")
        await host.click("#create-button")
        await expect(host.locator("[data-view=lobby]")).to_be_visible()
        quiz_id = await host.locator("#quiz-code").inner_text()
        assert re.fullmatch(r"[A-Z0-9]{4,}", quiz_id), quiz_id
        await expect(host.locator("#lobby-count")).to_have_text("0 players joined")

        players: dict[str, Page] = {}
        for name, _, _ in PLAYERS:
            players[name] = await open_page(browser, f"{base}/?quiz={quiz_id}", PHONE, errors)
            await expect(players[name].locator("#join-quiz-id")).to_have_value(quiz_id)
            await join(players[name], name)
        await expect(host.locator("#lobby-count")).to_have_text("3 players joined")
        await expect(host.locator("#player-count")).to_have_text("(3 players)")
        await expect(players["Ada"].locator("#lobby-count")).to_have_text("3 players have joined")
        await screenshot(host, "host-lobby")

        totals = {name: 0 for name, _, _ in PLAYERS}
        for index, question in enumerate(QUESTIONS):
            if index == 0:
                await host.click("#start-button")
            else:
                await host.click("#next-button")
            await expect(host.locator("#question-text")).to_have_text(question["text"])
            for name, page in players.items():
                await expect(page.locator("#question-text")).to_have_text(question["text"])
                await expect(page.locator("#question-number")).to_have_text(f"Question {index + 1} of 2")
                await expect(page.locator("#choices button .text")).to_have_text(question["choices"])
                seconds = int(await page.locator("#countdown").inner_text())
                assert 50 <= seconds <= 60, f"{name} sees {seconds} s left of 60"
            if index == 0:
                await screenshot(players["Bob"], "player-question")

            points: dict[str, str] = {}
            for name, first, second in PLAYERS:
                page = players[name]
                await page.click(f"#choices button.choice-{first if index == 0 else second}")
                await expect(page.locator("#answer-status")).to_have_text(LOCKED_IN)
                await expect(page.locator("#choices button").first).to_be_disabled()
                await expect(page.locator("#my-points")).to_have_text(re.compile(r"^\+[\d,]+$"))
                points[name] = await page.locator("#my-points").inner_text()

            if index == 0:
                # A reload resumes with the stored credential: the answer stays locked in, its points kept.
                await players["Ada"].reload()
                await expect(players["Ada"].locator("#answer-status")).to_have_text(LOCKED_IN)
                await expect(players["Ada"].locator("#my-points")).to_have_text(points["Ada"])
                await expect(players["Ada"].locator("#me-nickname")).to_have_text("Ada")

            answers = await wait_for_stored_answers(stack.persistence_addrs[0], quiz_id, expected=3 * (index + 1))
            names = {p.player_id: p.nickname for p in await stored_participants(stack.persistence_addrs[0], quiz_id)}
            stored = {names[a.player_id]: a for a in answers if a.question_index == index}
            for name in totals:
                assert points[name] == f"+{stored[name].points:,}", (name, points[name], stored[name])
                totals[name] = stored[name].total_score
            expected_board = standings(totals)
            await expect(host.locator("#board-list li")).to_have_count(3)
            for position, (_, name, score) in enumerate(expected_board):
                await expect(host.locator("#board-list li").nth(position)).to_contain_text(name)
                await expect(host.locator("#board-list li .score").nth(position)).to_have_text(score)
            assert await leaderboard_rows(host) == expected_board
            if index == 0:
                await screenshot(host, "host-live-leaderboard")

            await host.click("#close-button")
            correct = question["choices"][question["correct_choices"][0]]
            await expect(host.locator("#results-counts li.correct .text")).to_have_text(correct)
            for name, first, second in PLAYERS:
                page = players[name]
                choice = first if index == 0 else second
                verdict = "Correct!" if choice in question["correct_choices"] else "Wrong answer"
                await expect(page.locator("#result-verdict")).to_have_text(verdict)
                await expect(page.locator("#results-counts li.correct .text")).to_have_text(correct)
                await expect(page.locator("#my-points")).to_have_text(points[name])
                await expect(page.locator("#my-total")).to_have_text(f"{totals[name]:,}")
                rank = next(r for r, n, _ in expected_board if n == name)
                await expect(page.locator("#my-rank")).to_have_text(f"{rank} / 3")
                await expect(page.locator("#top-list li.me .nickname")).to_have_text(name)
                assert await leaderboard_rows(page) == expected_board
            if index == 0:
                await screenshot(players["Cy"], "player-results")
            counts = [str(sum(1 for p in PLAYERS if p[1 + index] == c)) for c in range(len(question["choices"]))]
            await expect(host.locator("#results-counts li .count")).to_have_text(counts)

        await expect(host.locator("#next-button")).to_be_hidden()
        await expect(host.locator("#end-button")).to_have_text("Finish quiz")
        await host.click("#end-button")
        podium = [name for _, name, _ in standings(totals)]
        assert podium == ["Bob", "Cy", "Ada"], totals
        for page in [host, *players.values()]:
            await expect(page.locator("[data-view=ended]")).to_be_visible()
            await expect(page.locator("#podium .first .nickname")).to_have_text(podium[0])
            await expect(page.locator("#podium .second .nickname")).to_have_text(podium[1])
            await expect(page.locator("#podium .third .nickname")).to_have_text(podium[2])
        await expect(players["Cy"].locator("#final-standing")).to_have_text(
            f"You finished #2 of 3 with {totals['Cy']:,} points"
        )
        await screenshot(players["Bob"], "player-podium")

        async with host.expect_download() as download_info:
            await host.click("#csv-button")
        download = await download_info.value
        assert download.suggested_filename == f"quizmesh-{quiz_id}-results.csv"
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert [(r["nickname"], r["question_index"]) for r in rows] == [
            (name, str(i)) for name, _, _ in PLAYERS for i in range(2)
        ]
        by_name_question = {(names[a.player_id], str(a.question_index)): a for a in answers}
        for row in rows:
            answer = by_name_question[row["nickname"], row["question_index"]]
            assert row == {
                "quiz_id": quiz_id,
                "player_id": answer.player_id,
                "nickname": row["nickname"],
                "question_index": row["question_index"],
                "choice": str(answer.choice),
                "correct": "true" if answer.correct else "false",
                "points": str(answer.points),
                "response_time_ms": str(answer.response_time_ms),
                "total_score": str(answer.total_score),
                "answer": answer.answer_text,
            }
        assert {r["nickname"]: int(r["total_score"]) for r in rows if r["question_index"] == "1"} == totals

        assert errors.errors == [] and errors.dialogs == []
        for page in [host, *players.values()]:
            await page.context.close()


async def test_the_countdown_follows_the_server_clock_not_a_wrong_local_one(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    async with embedded_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        host = await EdgeClient.connect(session, stack.ws_url())
        created = await host.request("create_quiz", title="Clock", questions=QUESTIONS[:1])
        quiz_id = created["quiz"]["quiz_id"]
        await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])

        context = await browser.new_context(viewport=PHONE)
        # This phone's clock is 90 minutes slow: its own time would put the close 90 minutes away.
        await context.clock.install(time=time.time() - 90 * 60)
        page = errors.watch(await context.new_page())
        await page.goto(f"{stack.edge_urls[0]}/?quiz={quiz_id}")
        await join(page, "Skewed")
        await host.request("start_quiz")
        await expect(page.locator("#question-text")).to_have_text(QUESTIONS[0]["text"])
        await expect(page.locator("#countdown")).to_have_text(re.compile(r"^(5\d|60)$"))
        await host.close()
        await context.close()
        assert errors.errors == [] and errors.dialogs == []


async def test_the_countdown_never_shows_more_than_the_question_time(browser: Browser, tmp_path: Path) -> None:
    """A clock estimate a little behind the server's, as a state's own timestamp gives before any ping,
    reads just before the opening: the page must still show 60 s of a 60 s question, not 61."""
    async with embedded_stack(tmp_path) as stack:
        context = await browser.new_context(viewport=PHONE)
        page = await context.new_page()
        await page.goto(stack.edge_urls[0])
        shown = await page.evaluate(
            """async () => {
                const { countdown } = await import("/static/common.js");
                const question = { open_time_ms: 100_000, close_time_ms: 160_000 };
                const at = (ms) => countdown(question, { now: () => ms });
                return [at(99_400), at(100_000), at(100_001), at(159_999), at(161_000)];
            }"""
        )
        await context.close()
    assert [(left["seconds"], left["fraction"]) for left in shown] == [
        (60, 1),
        (60, 1),
        (60, 59_999 / 60_000),
        (1, 1 / 60_000),
        (0, 0),
    ]


async def host_page_for_new_quiz(
    browser: Browser, session: aiohttp.ClientSession, base: str, title: str, errors: PageErrors
) -> tuple[Page, str]:
    """A quiz created over the WebSocket, and a host page that picks it up from its sessionStorage, as
    after a reload."""
    socket = await EdgeClient.connect(session, base.replace("http://", "ws://") + "/ws")
    created = await socket.request("create_quiz", title=title, questions=QUESTIONS[:1])
    await socket.close()
    quiz_id, host_token = created["quiz"]["quiz_id"], created["host_token"]
    context = await browser.new_context(viewport=PROJECTOR)
    hosting = json.dumps({"quiz_id": quiz_id, "host_token": host_token})
    await context.add_init_script(f"sessionStorage.setItem('quizmesh.hosting', {json.dumps(hosting)})")
    host = errors.watch(await context.new_page())
    await host.goto(f"{base}/host")
    await expect(host.locator("#quiz-code")).to_have_text(quiz_id)
    return host, quiz_id


async def test_markup_in_nicknames_is_shown_as_text(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    nicknames = ["<svg onload=alert(1)>", "<img src=x onerror=f()>"]
    async with embedded_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        base = stack.edge_urls[0]
        host, quiz_id = await host_page_for_new_quiz(browser, session, base, "<b>Title</b>", errors)
        players = []
        for nickname in nicknames:
            page = await open_page(browser, f"{base}/?quiz={quiz_id}", PHONE, errors)
            await join(page, nickname)
            players.append(page)
        await host.click("#start-button")
        await players[0].click("#choices button.choice-1")
        await expect(players[0].locator("#answer-status")).to_have_text(LOCKED_IN)

        for page in [host, *players]:
            shown = page.locator("#top-list .nickname, #board-list .nickname")
            await expect(shown).to_have_count(2)
            assert sorted(await shown.all_inner_texts()) == sorted(nicknames)
            await expect(page.locator("#quiz-title")).to_have_text("<b>Title</b>")
            assert await page.locator("main svg, main img, header b, header svg, header img").count() == 0
        assert errors.errors == [] and errors.dialogs == []
        for page in [host, *players]:
            await page.context.close()


async def test_the_host_hides_the_leaderboard_and_kicks_a_player(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    async with embedded_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        base = stack.edge_urls[0]
        host, quiz_id = await host_page_for_new_quiz(browser, session, base, "Moderated", errors)
        ada = await open_page(browser, f"{base}/?quiz={quiz_id}", PHONE, errors)
        await join(ada, "Ada")
        troll = await open_page(browser, f"{base}/?quiz={quiz_id}", PHONE, errors)
        await join(troll, "Troll")
        await expect(host.locator("#lobby-count")).to_have_text("2 players joined")
        await expect(ada.locator("#my-rank")).to_have_text("1 / 2")

        await host.click("#board-toggle")
        await expect(host.locator("#board-toggle")).to_have_text("Show leaderboard to players")
        await expect(ada.locator("#top-hidden")).to_be_visible()
        await expect(ada.locator("#top-list")).to_be_hidden()
        await expect(ada.locator("#my-rank")).to_have_text("—")
        await expect(host.locator("#board-list li")).to_have_count(2)  # the host still sees it

        await host.click("#board-toggle")
        await expect(ada.locator("#top-list li")).to_have_count(2)
        await expect(ada.locator("#my-rank")).to_have_text("1 / 2")

        kick = host.locator("#board-list li", has_text="Troll").locator("button.kick")
        await kick.click()
        await expect(kick).to_have_text("Sure?")
        await kick.click()
        await expect(troll.locator("[data-view=kicked]")).to_be_visible()
        await expect(host.locator("#board-list li")).to_have_count(1)
        await expect(host.locator("#lobby-count")).to_have_text("1 player joined")
        await expect(ada.locator("#top-list li .nickname")).to_have_text(["Ada"])
        # The kicked player's credential is forgotten: a reload shows the join form, not the quiz.
        await troll.reload()
        await expect(troll.locator("[data-view=join]")).to_be_visible()
        assert errors.errors == [] and errors.dialogs == []
        for page in (host, ada, troll):
            await page.context.close()
