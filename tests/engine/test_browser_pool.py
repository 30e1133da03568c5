"""The worker's Chromium is recycled by draining: never closed under a context still open."""

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright, expect
from playwright.async_api import Error as PlaywrightError
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.automation.browser import BrowserPool, browser_pid, find_chromium, rss_mib
from engine.constants import CHROMIUM_HEADLESS_SHELL_PATH, CHROMIUM_SYSTEM_PATH
from engine.settings import Settings
from fixtures.server import ThreadedServer

FORM = """<!doctype html><title>form</title><label for=n>Name</label><input id=n>
<button onclick="document.getElementById('out').textContent =
  document.getElementById('n').value">Save</button><p id=out></p>"""


async def form(_: Any) -> HTMLResponse:
    """Serve a form whose button echoes the name typed."""
    return HTMLResponse(FORM)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the form."""
    with ThreadedServer(Starlette(routes=[Route("/", form)])) as server:
        yield server


async def started_pool(**overrides: Any) -> BrowserPool:
    """Return a started pool of its own, with the test DNS rule."""
    pool = BrowserPool(Settings(isolated_dns=True, step_timeout_ms=5000, **overrides))
    await pool.start()
    return pool


@pytest.fixture
async def pool_of_two() -> AsyncIterator[BrowserPool]:
    """A pool whose Chromium is recycled after every two contexts."""
    pool = await started_pool(browser_jobs_before_restart=2)
    yield pool
    await pool.stop()


def installed(path: str) -> bool:
    """Tell whether a browser build is on disk."""
    return Path(path).exists()


async def test_headless_runs_take_the_headless_shell_and_headed_ones_the_browser() -> None:
    """Without Playwright's own build, workers launch Debian's headless shell (make setup
    installs it) and `replay --headed` the full Chromium, which can show a window."""
    async with async_playwright() as playwright:
        own = installed(playwright.chromium.executable_path)
        headless = find_chromium(Settings(), playwright)
        headed = find_chromium(Settings(headless=False), playwright)
    if own:
        assert headless is None and headed is None, "Playwright's own build comes first"
    else:
        assert headless == Path(CHROMIUM_HEADLESS_SHELL_PATH)
        assert headed == Path(CHROMIUM_SYSTEM_PATH)


async def wait_disconnected(browser: Browser, timeout_s: float = 10) -> None:
    """Wait until Playwright sees a browser gone."""
    deadline = time.monotonic() + timeout_s
    while browser.is_connected():
        assert time.monotonic() < deadline, "the browser never disconnected"
        await asyncio.sleep(0.05)


async def test_recycling_waits_for_the_last_context(
    pool_of_two: BrowserPool, site: ThreadedServer
) -> None:
    """Six slots ask at once and hold their contexts for a while: none loses its browser,
    three Chromiums are launched, and each retired one closes only once it has drained."""
    pool = pool_of_two
    holding: Counter[Browser] = Counter()
    held_at_close: list[int] = []

    def watch(browser: Browser) -> None:
        if browser not in holding:
            browser.on("disconnected", lambda gone: held_at_close.append(holding[gone]))
        holding[browser] += 1

    async def user(n: int) -> Browser:
        async with pool.context() as context:
            browser = context.browser
            assert browser is not None
            watch(browser)
            page = await context.new_page()
            for _ in range(1 + n % 3):
                await page.goto(site.url)
                await page.get_by_label("Name").fill(f"user {n}")
                await page.get_by_role("button", name="Save").click()
                await expect(page.locator("#out")).to_have_text(f"user {n}")
                await asyncio.sleep(0.3)
            holding[browser] -= 1
            return browser

    used = await asyncio.gather(*(user(n) for n in range(6)))

    browsers = list(dict.fromkeys(used))
    assert Counter(used) == {browser: 2 for browser in browsers}
    assert pool.launched == 3 and len(browsers) == 3, "one launch per two contexts, no more"
    *retired, current = browsers
    assert all(not browser.is_connected() for browser in retired)
    assert current.is_connected()
    assert (pool.closed, pool.draining) == (2, 0)
    assert held_at_close == [0, 0], "a retired Chromium closed while a context was open on it"


async def test_a_retired_chromium_outlives_its_successor_s_first_jobs(
    pool_of_two: BrowserPool, site: ThreadedServer
) -> None:
    """A long job keeps the first Chromium while the next one serves and is itself retired."""
    pool = pool_of_two
    async with pool.context() as long_job:
        page = await long_job.new_page()
        for _ in range(4):
            async with pool.context() as short_job:
                await (await short_job.new_page()).goto(site.url)
        assert long_job.browser is not None and long_job.browser.is_connected()
        assert pool.draining == 1
        await page.goto(site.url)
    await wait_disconnected(long_job.browser)
    assert (pool.launched, pool.closed, pool.draining) == (3, 2, 0)


async def test_a_crashed_chromium_is_replaced(site: ThreadedServer) -> None:
    """Chromium is killed under an open context: that job's calls fail, its context still
    closes, and the next context opens on a fresh Chromium."""
    pool = await started_pool()
    try:
        async with pool.context() as doomed:
            browser = doomed.browser
            assert browser is not None
            page = await doomed.new_page()
            await page.goto(site.url)
            pid = await browser_pid(browser)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_disconnected(browser)
            with pytest.raises(PlaywrightError):
                await page.goto(site.url)
        async with pool.context() as fresh:
            assert fresh.browser is not browser
            await (await fresh.new_page()).goto(site.url)
        assert (pool.launched, pool.closed) == (2, 1)
    finally:
        await pool.stop()


async def test_a_chromium_past_its_memory_bound_is_recycled(
    site: ThreadedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With a bound below any real browser's RSS, every context gets a fresh Chromium."""
    pool = await started_pool(browser_max_rss_mb=1)
    try:
        with caplog.at_level(logging.INFO, logger="engine.automation.browser"):
            for _ in range(2):
                async with pool.context() as context:
                    await (await context.new_page()).goto(site.url)
                    assert context.browser is not None
                    pid = await browser_pid(context.browser)
        assert (pool.launched, pool.closed) == (3, 2)
        assert "its browser process uses" in caplog.text
        assert pid is not None and (rss_mib(pid) or 0) > 1
    finally:
        await pool.stop()


async def test_stop_closes_every_chromium_even_with_contexts_open(site: ThreadedServer) -> None:
    """At worker shutdown the current and the draining Chromium both close; leaving the
    contexts afterwards raises nothing."""
    pool = await started_pool(browser_jobs_before_restart=1)
    async with pool.context() as first, pool.context() as second:
        assert pool.draining == 1
        await pool.stop()
        assert first.browser is not None and second.browser is not None
        assert not first.browser.is_connected() and not second.browser.is_connected()
    assert (pool.launched, pool.closed) == (2, 2)
