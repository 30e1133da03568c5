"""The bench's baseline for jobs: Acme's create_user written as a bare Playwright script.

`usher bench` runs it as a process of its own, `python -m cli.bench_bare SETUP_FILE`, so its
memory is Playwright's and Chromium's alone and it imports nothing of Usher. It keeps the
invariants Usher keeps: a fresh context per create with the same signed-in state, the same
viewport, a viewport screenshot after each step with password fields masked the same way.
It reads one JSON command per line on standard input and answers one JSON line each:

- `{"state": {...}}` sets the signed-in state (Playwright's storage_state) each new
  context starts with, and answers `{"ok": true}`;
- `{"create": [[email, first, last], ...]}` creates each account in turn and answers
  `{"seconds": [...], "shots": [bytes, ...]}`;
- `{"quit": true}` closes Chromium and ends.
"""

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright, expect

SEARCHED = re.compile(r"[?&]q=")


class BareCreate:
    """Create Acme accounts the way create_user.yaml does, with Playwright alone."""

    def __init__(self, browser: Browser, setup: dict[str, Any]) -> None:
        self.browser = browser
        self.base_url: str = setup["base_url"]
        self.state: dict[str, Any] | None = None
        self.mask_color: str = setup["mask_color"]
        self.viewport: dict[str, int] = setup["viewport"]
        self.timeout_ms: int = setup["timeout_ms"]
        self.shots: list[int] = []

    async def shoot(self, page: Page) -> None:
        """Take the step's viewport screenshot, password fields masked."""
        picture = await page.screenshot(
            type="png", mask=[page.locator("input[type=password]")], mask_color=self.mask_color
        )
        self.shots.append(len(picture))

    async def create(self, email: str, first: str, last: str) -> None:
        """Look for the account, invite it unless it exists, check it and read its id."""
        context = await self.browser.new_context(
            viewport=self.viewport,  # type: ignore[arg-type]
            accept_downloads=False,
            storage_state=self.state,  # type: ignore[arg-type]
        )
        context.set_default_timeout(self.timeout_ms)
        try:
            page = await context.new_page()
            await page.goto(f"{self.base_url}/users", wait_until="load")
            await self.shoot(page)
            await page.get_by_label("Search").fill(email)
            await self.shoot(page)
            await page.get_by_role("button", name="Search").click()
            await page.wait_for_load_state("load")
            await self.shoot(page)
            await expect(page).to_have_url(SEARCHED)
            await self.shoot(page)
            existing = page.get_by_role("link", name=email, exact=True)
            found = await existing.is_visible()
            await self.shoot(page)
            if not found:
                await self.invite(page, email, first, last)
        finally:
            await context.close()

    async def invite(self, page: Page, email: str, first: str, last: str) -> None:
        """Fill and send Acme's invite form, then check the account it shows."""
        await page.get_by_role("link", name="Invite user").click()
        await page.wait_for_load_state("load")
        await self.shoot(page)
        for label, value in (("Email", email), ("First name", first), ("Last name", last)):
            await page.get_by_label(label).fill(value)
            await self.shoot(page)
        await page.get_by_role("button", name="Send invite").click()
        await page.wait_for_load_state("load")
        await self.shoot(page)
        await expect(page.get_by_test_id("flash")).to_contain_text("Invitation sent")
        await self.shoot(page)
        await expect(page.get_by_test_id("user-email")).to_contain_text(email)
        await self.shoot(page)
        if not (await page.get_by_test_id("user-id").inner_text()).strip():
            raise RuntimeError(f"Acme showed no id for {email}")
        await self.shoot(page)


async def serve(setup: dict[str, Any]) -> None:
    """Launch Chromium as Usher would, then answer commands until told to quit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=setup["executable"], args=setup["args"], headless=True
        )
        bare = BareCreate(browser, setup)
        print(json.dumps({"ready": True}), flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("quit"):
                break
            if "state" in command:
                bare.state = command["state"]
                print(json.dumps({"ok": True}), flush=True)
                continue
            seconds = []
            bare.shots = []
            for email, first, last in command["create"]:
                started = time.monotonic()
                await bare.create(email, first, last)
                seconds.append(time.monotonic() - started)
            print(json.dumps({"seconds": seconds, "shots": bare.shots}), flush=True)
        await browser.close()


def main() -> None:
    """Read the setup file named on the command line and serve."""
    setup = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(serve(setup))


if __name__ == "__main__":
    main()
