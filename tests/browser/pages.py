"""What the browser tests share: Chromium, a page per device, screenshots for the README."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from playwright.async_api import Browser, Page, ViewportSize, expect

CHROMIUM: Final = Path("/usr/bin/chromium")
# Flags for a shared, sandboxed CI machine: no GPU, no background traffic of Chromium's own.
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE: Final = ViewportSize(width=390, height=844)
PROJECTOR: Final = ViewportSize(width=1280, height=800)

expect.set_options(timeout=15_000)


class PageErrors:
    """JavaScript errors and dialogs (alert, confirm) a page raised; a test expects none of either."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("dialog", lambda dialog: self.dialogs.append(f"{page.url}: {dialog.message}"))
        return page


async def open_page(browser: Browser, url: str, viewport: ViewportSize, errors: PageErrors) -> Page:
    context = await browser.new_context(viewport=viewport)
    page = errors.watch(await context.new_page())
    await page.goto(url)
    return page


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def join(page: Page, nickname: str) -> None:
    await page.fill("#join-nickname", nickname)
    await page.click("#join-button")
    await expect(page.locator("[data-view=lobby]")).to_be_visible()
    await expect(page.locator("#me-nickname")).to_have_text(nickname)
