"""One Chromium per worker, one context per job, restarted after N jobs."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

from engine.constants import CHROMIUM_SYSTEM_PATH, TEST_HOST_RESOLVER_RULES
from engine.settings import Settings

log = logging.getLogger(__name__)


class BrowserError(Exception):
    """No Chromium could be found or launched; the message says what to install."""


def find_chromium(settings: Settings, playwright: Playwright) -> Path | None:
    """Return the Chromium to launch: the configured one, Playwright's own, else the system's.

    None means Playwright's own build is present and needs no explicit path.
    """
    if settings.chromium_path is not None:
        if not settings.chromium_path.exists():
            raise BrowserError(f"USHER_CHROMIUM_PATH {settings.chromium_path} does not exist")
        return settings.chromium_path
    if Path(playwright.chromium.executable_path).exists():
        return None
    if Path(CHROMIUM_SYSTEM_PATH).exists():
        return Path(CHROMIUM_SYSTEM_PATH)
    raise BrowserError(
        "no Chromium found: run `playwright install chromium` or `apt-get install -y chromium`"
    )


def launch_args(settings: Settings) -> list[str]:
    """Return extra Chromium flags; never --disable-features, which replaces Playwright's list."""
    args = list(settings.browser_args)
    if settings.isolated_dns:
        args.append(f"--host-resolver-rules={TEST_HOST_RESOLVER_RULES}")
    return args


class BrowserPool:
    """Own one Chromium for a worker and hand out a fresh context per job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._jobs_since_launch = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start Playwright and launch Chromium."""
        self._playwright = await async_playwright().start()
        await self._launch()

    async def _launch(self) -> None:
        """Launch a fresh Chromium."""
        assert self._playwright is not None
        path = find_chromium(self.settings, self._playwright)
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(path) if path else None,
            args=launch_args(self.settings),
            headless=self.settings.headless,
        )
        self._jobs_since_launch = 0
        log.info("chromium launched", extra={"executable": str(path or "playwright")})

    async def _browser_for_job(self) -> Browser:
        """Return the browser, relaunching it when it died or served enough jobs."""
        async with self._lock:
            limit = self.settings.browser_jobs_before_restart
            stale = self._jobs_since_launch >= limit
            if self._browser is None or not self._browser.is_connected() or stale:
                if self._browser is not None and self._browser.is_connected():
                    await self._browser.close()
                await self._launch()
            self._jobs_since_launch += 1
            assert self._browser is not None
            return self._browser

    @asynccontextmanager
    async def context(
        self, storage_state: dict[str, Any] | None = None
    ) -> AsyncIterator[BrowserContext]:
        """Yield a new context for one job and close it, since memory returns only then."""
        browser = await self._browser_for_job()
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800},
            accept_downloads=False,
            storage_state=storage_state,  # type: ignore[arg-type]
        )
        context.set_default_timeout(self.settings.step_timeout_ms)
        try:
            yield context
        finally:
            await context.close()

    async def stop(self) -> None:
        """Close Chromium and Playwright."""
        if self._browser is not None and self._browser.is_connected():
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
