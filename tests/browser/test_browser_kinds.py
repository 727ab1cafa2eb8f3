"""Every kind of question on the player's and the host's pages in headless Chromium: the host imports the
example quiz with its pictures and clip, a player answers each kind with its own controls, and the
screenshots of each kind on both pages are refreshed for the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.pages import PHONE, PROJECTOR, PageErrors, join, open_page, screenshot
from tests.support.stack import embedded_stack

pytestmark = pytest.mark.e2e

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "docs" / "examples"
MEDIA: Final = ["media/tower.png", "media/blue.png", "media/white.png", "media/red.png", "media/listen.wav"]
RIGHT_ORDER: Final = ["I", "have", "never", "been", "to", "London"]
LOCKED_IN: Final = "Answer locked in — waiting for the others…"


async def picture_loaded(page: Page, selector: str) -> bool:
    """Whether an <img> shows its picture: fetched from /media/ under the page's policy, and decoded."""
    loaded: bool = await page.locator(selector).first.evaluate("img => img.complete && img.naturalWidth > 0")
    return loaded


async def clip_seconds(page: Page, selector: str) -> float:
    """The duration of an <audio>'s clip once its metadata loaded from /media/, or -1 when it failed."""
    seconds: float = await page.locator(selector).first.evaluate(
        """audio => new Promise(done => {
            audio.addEventListener("loadedmetadata", () => done(audio.duration), {once: true});
            audio.addEventListener("error", () => done(-1), {once: true});
            audio.preload = "metadata";
            audio.load();
        })"""
    )
    return seconds


async def put_in_order(page: Page, right: list[str]) -> None:
    """Moves the shown items up until they read in the right order, as a player taps ▲."""
    for target, item in enumerate(right):
        shown = await page.locator("#order-list li .text").all_inner_texts()
        for _ in range(shown.index(item) - target):
            at = (await page.locator("#order-list li .text").all_inner_texts()).index(item)
            await page.locator("#order-list li").nth(at).locator(".move-up").click()
    await expect(page.locator("#order-list li .text")).to_have_text(right)


# What the player does for each kind (clicks, or a field filled then submitted), and the verdict shown.
CLICKS: Final = {
    "single_choice": (["#choices button.choice-0"], "Correct!"),
    # glad, cheerful and angry: two of three right, one wrong
    "multiple_select": (["#choices button.choice-0", "#choices button.choice-1", "#choices button.choice-2"], ""),
    "true_false": (["#choices button.choice-0"], "Correct!"),
    "poll": (["#choices button.choice-1"], "Thanks for voting"),
}
TYPED: Final = {"type_answer": ("#answer-text", "Colr"), "estimate": ("#answer-number", "1972")}


async def answer(page: Page, kind: str) -> str:
    """Answers the open question of `kind` through its controls; returns the verdict the page will show."""
    if kind in CLICKS:
        selectors, verdict = CLICKS[kind]
        for selector in selectors:
            await page.click(selector)
        if kind != "multiple_select":
            return verdict
    elif kind in TYPED:
        await page.fill(*TYPED[kind])
    else:
        await put_in_order(page, RIGHT_ORDER)
    await page.click("#submit-answer")
    return "Partly right: 1/3 of the points" if kind == "multiple_select" else "Correct!"


@pytest.mark.slow  # about 15 s on an idle machine
async def test_every_kind_on_the_players_and_the_hosts_pages(browser: Browser, tmp_path: Path) -> None:
    errors = PageErrors()
    async with embedded_stack(tmp_path) as stack:
        base = stack.edge_urls[0]
        host = await open_page(browser, f"{base}/host", PROJECTOR, errors)
        await host.set_input_files("#import-file", [str(EXAMPLES / "kinds.json"), *(str(EXAMPLES / m) for m in MEDIA)])
        await expect(host.locator("#import-status")).to_have_text("Imported 7 questions from kinds.json")
        await expect(host.locator("#quiz-title-input")).to_have_value("English, every kind of question")
        await expect(host.locator(".kind-input")).to_have_count(7)
        await screenshot(host, "host-create-kinds")
        await host.click("#create-button")
        await expect(host.locator("[data-view=lobby]")).to_be_visible()
        quiz_id = await host.locator("#quiz-code").inner_text()

        player = await open_page(browser, f"{base}/?quiz={quiz_id}", PHONE, errors)
        await join(player, "Ada")
        kinds = ["single_choice", "multiple_select", "true_false", "type_answer", "ordering", "estimate", "poll"]
        for index, kind in enumerate(kinds):
            await host.click("#start-button" if index == 0 else "#next-button")
            await expect(player.locator("#question-number")).to_have_text(f"Question {index + 1} of 7")
            await expect(host.locator("#question-number")).to_have_text(f"Question {index + 1} of 7")
            if kind == "single_choice":
                await expect(player.locator("#question-media img")).to_have_count(1)
                await expect(player.locator("#choices .choice-image")).to_have_count(3)
                assert await picture_loaded(player, "#question-media img")
                assert await picture_loaded(player, "#choices .choice-image")
            if kind == "type_answer":
                await expect(player.locator("#question-media audio")).to_have_attribute("src", re.compile(r"^/media/"))
                await expect(host.locator("#question-media audio")).to_have_count(1)
                assert 0.5 < await clip_seconds(player, "#question-media audio") < 1  # the 0.6 s example clip
            if kind == "ordering":
                await expect(player.locator("#order-list li")).to_have_count(6)
            await screenshot(player, f"player-{kind}")
            await screenshot(host, f"host-{kind}")
            verdict = await answer(player, kind)
            await expect(player.locator("#answer-status")).to_have_text(LOCKED_IN)
            await host.click("#close-button")
            await expect(player.locator("#result-verdict")).to_have_text(verdict)
            await expect(host.locator("#results-counts li")).not_to_have_count(0)
            if kind == "type_answer":
                await expect(player.locator("#result-detail")).to_have_text("You typed “Colr”, accepted as “color”.")
            if kind in ("multiple_select", "type_answer", "ordering", "estimate"):
                await screenshot(player, f"player-results-{kind}")
                await screenshot(host, f"host-results-{kind}")
        await expect(player.locator("#my-total")).to_have_text(re.compile(r"^[1-9][\d,]+$"))
        assert errors.errors == [] and errors.dialogs == []
        for page in (host, player):
            await page.context.close()
