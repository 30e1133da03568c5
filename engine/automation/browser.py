"""One Chromium per worker, one context per job; a worn-out Chromium drains, then closes.

A worker's job slots share its Chromium. After `browser_jobs_before_restart` contexts, when
its browser process grows past `browser_max_rss_mb`, or when it crashed, the Chromium is
*retired*: new contexts open on a fresh one, while the contexts already open on the old one
keep it until the last of them closes; only then is it closed. No job ever loses its
browser to recycling.
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from engine.constants import (
    BROWSER_VIEWPORT,
    CHROMIUM_HEADLESS_SHELL_PATH,
    CHROMIUM_SYSTEM_PATH,
    MIB,
    TEST_HOST_RESOLVER_RULES,
)
from engine.metrics import browser_context_closed, browser_context_opened, browser_launched
from engine.settings import Settings

log = logging.getLogger(__name__)


class BrowserError(Exception):
    """No Chromium could be found or launched; the message says what to install."""


def find_chromium(settings: Settings, playwright: Playwright) -> Path | None:
    """Return the Chromium to launch: the configured one, Playwright's own, else the system's
    (for a headless run its headless shell when installed, which costs far less CPU).

    None means Playwright's own build is present and needs no explicit path.
    """
    if settings.chromium_path is not None:
        if not settings.chromium_path.exists():
            raise BrowserError(f"USHER_CHROMIUM_PATH {settings.chromium_path} does not exist")
        return settings.chromium_path
    if Path(playwright.chromium.executable_path).exists():
        return None
    system = (CHROMIUM_HEADLESS_SHELL_PATH, CHROMIUM_SYSTEM_PATH)
    for candidate in map(Path, system if settings.headless else system[1:]):
        if candidate.exists():
            return candidate
    raise BrowserError(
        "no Chromium found: run `playwright install chromium` or"
        " `apt-get install -y chromium chromium-headless-shell`"
    )


def launch_args(settings: Settings) -> list[str]:
    """Return extra Chromium flags; never --disable-features, which replaces Playwright's list."""
    args = list(settings.browser_args)
    if settings.isolated_dns:
        args.append(f"--host-resolver-rules={TEST_HOST_RESOLVER_RULES}")
    return args


async def browser_pid(browser: Browser) -> int | None:
    """Return the pid of Chromium's browser process, asked over CDP; None if it cannot say."""
    try:
        session = await browser.new_browser_cdp_session()
        try:
            info = await session.send("SystemInfo.getProcessInfo")
        finally:
            await session.detach()
    except PlaywrightError:
        return None
    pids = [p["id"] for p in info.get("processInfo", []) if p.get("type") == "browser"]
    return int(pids[0]) if pids else None


def rss_mib(pid: int) -> int | None:
    """Return a process's resident memory in MiB from /proc; None where there is no /proc."""
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // MIB


@dataclass(eq=False)
class _Chromium:
    """One launched Chromium: the contexts it served, those still open, why it retired."""

    browser: Browser
    number: int
    pid: int | None
    served: int = 0
    open: int = 0
    retired: str | None = None
    closing: bool = False


class BrowserPool:
    """Own a worker's Chromium and hand out a fresh context per job, recycling by draining.

    Every change of which Chromium is current happens under one lock, so slots asking for
    a context at once never launch twice; a retired Chromium is closed by whoever closes
    its last context (or at once when none is open), exactly once.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._playwright: Playwright | None = None
        self._current: _Chromium | None = None
        self._draining: set[_Chromium] = set()
        self._lock = asyncio.Lock()
        self.launched = 0
        self.closed = 0

    @property
    def draining(self) -> int:
        """Return how many retired Chromiums still serve open contexts."""
        return len(self._draining)

    async def start(self) -> None:
        """Start Playwright and launch Chromium."""
        self._playwright = await async_playwright().start()
        async with self._lock:
            self._current = await self._launch()

    async def _launch(self) -> _Chromium:
        """Launch a fresh Chromium; the caller holds the lock."""
        assert self._playwright is not None
        path = find_chromium(self.settings, self._playwright)
        browser = await self._playwright.chromium.launch(
            executable_path=str(path) if path else None,
            args=launch_args(self.settings),
            headless=self.settings.headless,
        )
        pid = await browser_pid(browser) if self.settings.browser_max_rss_mb else None
        self.launched += 1
        browser_launched()
        chromium = _Chromium(browser, self.launched, pid)
        browser.on("disconnected", lambda _: self._disconnected(chromium))
        log.info(
            "chromium %d launched", chromium.number, extra={"executable": str(path or "playwright")}
        )
        return chromium

    def _disconnected(self, chromium: _Chromium) -> None:
        """Note a Chromium that went away without being closed: it crashed or was killed."""
        if not chromium.closing:
            log.warning(
                "chromium %d disconnected (crashed or killed) with %d open contexts; "
                "the next context opens on a fresh one",
                chromium.number,
                chromium.open,
            )

    def _why_retire(self, chromium: _Chromium) -> str | None:
        """Return why a Chromium should take no more contexts, or None if it still may."""
        if not chromium.browser.is_connected():
            return "it disconnected"
        limit = self.settings.browser_jobs_before_restart
        if chromium.served >= limit:
            return f"it served {chromium.served} jobs (limit {limit})"
        bound = self.settings.browser_max_rss_mb
        if bound and chromium.pid is not None:
            rss = rss_mib(chromium.pid)
            if rss is not None and rss > bound:
                return f"its browser process uses {rss} MiB (limit {bound} MiB)"
        return None

    def _retire(self, chromium: _Chromium, reason: str) -> bool:
        """Stop giving out a Chromium; return True when it has no open context left to wait for."""
        chromium.retired = reason
        if self._current is chromium:
            self._current = None
        log.info(
            "chromium %d retired: %s; it closes when its %d open context(s) close",
            chromium.number,
            reason,
            chromium.open,
        )
        if chromium.open == 0:
            return True
        self._draining.add(chromium)
        return False

    async def _checkout(self) -> _Chromium:
        """Return the Chromium for one more context, recycling the current one if worn out."""
        spent: _Chromium | None = None
        try:
            async with self._lock:
                current = self._current
                reason = "none is running" if current is None else self._why_retire(current)
                if reason is not None:
                    if current is not None and self._retire(current, reason):
                        spent = current
                    current = self._current = await self._launch()
                assert current is not None
                current.served += 1
                current.open += 1
        finally:
            if spent is not None:
                await self._close(spent)
        return current

    async def _checkin(self, chromium: _Chromium) -> None:
        """Note a closed context; close its Chromium if it was retired and this was the last."""
        chromium.open -= 1
        if chromium.retired is not None and chromium.open == 0:
            self._draining.discard(chromium)
            await self._close(chromium)

    async def _close(self, chromium: _Chromium) -> None:
        """Close a Chromium once, however many paths reach here."""
        if chromium.closing:
            return
        chromium.closing = True
        self.closed += 1
        try:
            await chromium.browser.close()
        except PlaywrightError as error:
            log.warning("chromium %d did not close cleanly: %s", chromium.number, error)
        log.info("chromium %d closed: %s", chromium.number, chromium.retired)

    async def _open(self, storage_state: dict[str, Any] | None) -> tuple[_Chromium, BrowserContext]:
        """Open a context; if its Chromium died just before, once more on a fresh one."""
        for last_try in (False, True):
            chromium = await self._checkout()
            try:
                context = await chromium.browser.new_context(
                    viewport=BROWSER_VIEWPORT,  # type: ignore[arg-type]
                    accept_downloads=False,
                    storage_state=storage_state,  # type: ignore[arg-type]
                )
            except BaseException as error:
                await self._checkin(chromium)
                died = isinstance(error, PlaywrightError) and not chromium.browser.is_connected()
                if last_try or not died:
                    raise
                log.warning("chromium %d died before a context opened on it", chromium.number)
                continue
            context.set_default_timeout(self.settings.step_timeout_ms)
            return chromium, context
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def context(
        self, storage_state: dict[str, Any] | None = None
    ) -> AsyncIterator[BrowserContext]:
        """Yield a new context for one job and close it, since memory returns only then."""
        chromium, context = await self._open(storage_state)
        browser_context_opened()
        try:
            yield context
        finally:
            try:
                await context.close()
            except PlaywrightError as error:
                log.warning("a context of chromium %d did not close: %s", chromium.number, error)
            finally:
                browser_context_closed()
                await self._checkin(chromium)

    async def stop(self) -> None:
        """Close every Chromium, draining or not, then Playwright."""
        async with self._lock:
            every = [c for c in (self._current, *self._draining) if c is not None]
            self._current = None
            self._draining.clear()
            for chromium in every:
                chromium.retired = chromium.retired or "the worker stopped"
                await self._close(chromium)
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
