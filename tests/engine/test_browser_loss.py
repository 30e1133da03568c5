"""A page or browser that dies mid-step is a transient fault of that step, recorded as such."""

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from engine.automation.browser import BrowserPool, browser_pid
from engine.automation.errors import FlowFailed
from engine.automation.language import Flow
from engine.automation.runner import Artifact, FlowRunner, RunContext, StepResult
from engine.automation.totp import RedisTotpLedger
from engine.settings import Settings
from fixtures.server import ThreadedServer

PAGE = "<!doctype html><title>t</title><p>Loaded</p><button>Save</button>"
WAIT_FOREVER = {"name": "Wait for the result", "wait_for": {"css": "#never"}, "state": "visible"}
Killer = Callable[[BrowserContext, Page], Awaitable[Any]]


async def html(_: Any) -> HTMLResponse:
    """Serve a page whose awaited element never appears."""
    return HTMLResponse(PAGE)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the page."""
    with ThreadedServer(Starlette(routes=[Route("/", html)])) as server:
        yield server


class Sink:
    """Keep every step result and the kinds of evidence it came with; none is required."""

    def __init__(self, after_first: Callable[[], Any] | None = None) -> None:
        self.results: list[tuple[StepResult, list[str]]] = []
        self.after_first = after_first

    async def record(self, result: StepResult, artifacts: list[Artifact]) -> None:
        """Keep the step; after the first one, start whatever the test does to the page."""
        self.results.append((result, [a.kind for a in artifacts]))
        if len(self.results) == 1 and self.after_first is not None:
            self.after_first()


def run_context(site: ThreadedServer, redis_url: str) -> RunContext:
    """Return what the flows of these tests read."""
    return RunContext(
        base_url=site.url,
        secrets={},
        variables={"integration": {"base_url": site.url}},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        totp_account="browser-loss",
        step_timeout_ms=8000,
    )


async def fail_mid_step(
    pool: BrowserPool, site: ThreadedServer, redis_url: str, kill: Killer
) -> tuple[FlowFailed, Sink]:
    """Open the page, then wait for an element that never comes while `kill` strikes."""
    flow = Flow.model_validate(
        {"action": "t", "steps": [{"goto": "{{ integration.base_url }}/"}, WAIT_FOREVER]}
    )
    tasks: list[asyncio.Task[Any]] = []
    async with pool.context() as context:
        page = await context.new_page()
        runner = FlowRunner(page, run_context(site, redis_url))
        await runner.guard_navigation()

        async def strike() -> None:
            await asyncio.sleep(0.5)
            await kill(context, page)

        sink = Sink(lambda: tasks.append(asyncio.create_task(strike())))
        with pytest.raises(FlowFailed) as failure:
            await asyncio.wait_for(runner.run(flow, sink), timeout=6)
        await asyncio.gather(*tasks)
    return failure.value, sink


def assert_recorded_without_picture(sink: Sink, failure: FlowFailed) -> None:
    """Step 1 kept its screenshot; step 2 reached the sink as failed, with no screenshot."""
    (first, first_kinds), (second, second_kinds) = sink.results
    assert (first.status, first_kinds[0]) == ("ok", "screenshot")
    assert (second.position, second.status, second.error) == (2, "failed", str(failure))
    assert "screenshot" not in second_kinds


async def test_a_page_closed_mid_step_is_transient(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The page closes while step 2 waits: a transient failure naming step 2."""

    async def close_page(_: BrowserContext, page: Page) -> None:
        await page.close()

    failure, sink = await fail_mid_step(browsers, site, redis_url, close_page)
    assert failure.transient
    assert str(failure).startswith("step 2 'Wait for the result' (css='#never') failed at")
    assert "the page closed during step 2" in str(failure)
    assert_recorded_without_picture(sink, failure)


async def test_a_crashed_page_is_transient(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The renderer crashes while step 2 waits: a transient failure, not a permanent one."""

    async def crash(context: BrowserContext, page: Page) -> None:
        crashed = asyncio.Event()
        page.once("crash", lambda _: crashed.set())
        cdp = await context.new_cdp_session(page)
        command = asyncio.create_task(cdp.send("Page.crash"))  # never answered: no renderer
        await asyncio.wait_for(crashed.wait(), timeout=5)
        command.cancel()

    failure, sink = await fail_mid_step(browsers, site, redis_url, crash)
    assert failure.transient
    assert "the page crashed during step 2" in str(failure)
    assert_recorded_without_picture(sink, failure)


async def test_a_browser_killed_mid_step_is_transient_and_replaced(
    site: ThreadedServer, redis_url: str
) -> None:
    """Chromium itself dies while step 2 waits: a transient failure, the context still
    closes cleanly, and the next run gets a fresh Chromium."""
    pool = BrowserPool(Settings(isolated_dns=True))
    await pool.start()
    try:

        async def kill_chromium(context: BrowserContext, _: Page) -> None:
            assert context.browser is not None
            pid = await browser_pid(context.browser)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)

        failure, sink = await fail_mid_step(pool, site, redis_url, kill_chromium)
        assert failure.transient
        assert "the browser closed during step 2" in str(failure)
        assert_recorded_without_picture(sink, failure)

        async with pool.context() as context:
            await (await context.new_page()).goto(site.url)
        assert (pool.launched, pool.closed) == (2, 1)
    finally:
        await pool.stop()


async def test_a_step_that_needs_no_page_is_recorded_after_the_page_closed(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A screenshot that cannot be taken any more does not lose the step's result."""
    async with browsers.context() as context:
        page = await context.new_page()
        runner = FlowRunner(page, run_context(site, redis_url))
        await page.close()
        sink = Sink()
        flow = Flow.model_validate({"action": "t", "steps": [{"screenshot": "Evidence"}]})
        await runner.run(flow, sink)
    [(result, kinds)] = sink.results
    assert (result.status, kinds) == ("ok", [])
