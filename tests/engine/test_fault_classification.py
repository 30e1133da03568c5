"""Which failures are worth another try: a 5xx or network error seen during the action is."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from engine.automation.browser import BrowserPool
from engine.automation.errors import FlowFailed
from engine.automation.language import Flow
from engine.automation.runner import FlowRunner, RunContext
from engine.automation.totp import RedisTotpLedger
from fixtures.server import ThreadedServer
from tests.harness import RecordingSink

SAVE_PAGE = """<!doctype html><title>t</title>
<button onclick="fetch('/api/save', {method: 'POST'}).then(r => r.ok &&
  (document.getElementById('out').textContent = 'saved'))">Save</button><p id=out></p>
<p class=error>Email is already taken</p>"""


async def html(_: Any) -> HTMLResponse:
    """Serve the page with a Save button whose fetch the test decides."""
    return HTMLResponse(SAVE_PAGE)


async def broken(_: Any) -> PlainTextResponse:
    """Answer the save with a server error."""
    return PlainTextResponse("boom", status_code=503)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the page and its failing API."""
    app = Starlette(routes=[Route("/", html), Route("/api/save", broken, methods=["POST"])])
    with ThreadedServer(app) as server:
        yield server


async def failure_of(
    browsers: BrowserPool,
    site: ThreadedServer,
    redis_url: str,
    steps: list[dict],
    *,
    sink: RecordingSink | None = None,
    halt: Callable[[], str | None] | None = None,
) -> FlowFailed:
    """Run steps that must fail and return the failure."""
    context = RunContext(
        base_url=site.url,
        secrets={},
        variables={"integration": {"base_url": site.url}},
        ledger=RedisTotpLedger(Redis.from_url(redis_url)),
        totp_account="faults",
        step_timeout_ms=1500,
        halt=halt,
    )
    async with browsers.context() as browser_context:
        runner = FlowRunner(await browser_context.new_page(), context)
        await runner.guard_navigation()
        flow = Flow.model_validate({"action": "t", "steps": steps})
        with pytest.raises(FlowFailed) as failure:
            await runner.run(flow, sink or RecordingSink())
    return failure.value


async def test_an_expect_after_a_failed_fetch_is_transient(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The save's fetch answered 503: the missing result is the app's fault, not the flow's."""
    failure = await failure_of(
        browsers,
        site,
        redis_url,
        [
            {"goto": "{{ integration.base_url }}/"},
            {"click": {"role": "button", "name": "Save"}},
            {"expect": {"css": "#out"}, "text": "saved"},
        ],
    )
    assert failure.transient
    assert "the app answered 503" in str(failure)


async def test_a_validation_message_on_a_settled_page_is_permanent(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The flow names the app's refusal: another try would meet the same message."""
    failure = await failure_of(
        browsers,
        site,
        redis_url,
        [
            {"goto": "{{ integration.base_url }}/"},
            {
                "if_visible": {"text": "Email is already taken"},
                "then": [{"fail": "Acme refused the email"}],
            },
        ],
    )
    assert not failure.transient
    assert "Acme refused the email" in str(failure)


async def test_no_match_on_a_settled_page_is_permanent(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A locator that matches nothing on a loaded page is the flow's fault: no retry."""
    failure = await failure_of(
        browsers,
        site,
        redis_url,
        [
            {"goto": "{{ integration.base_url }}/"},
            {"click": {"role": "button", "name": "Publish"}},
        ],
    )
    assert not failure.transient


async def test_a_needs_human_step_asks_for_a_person(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A CAPTCHA or an expired password is neither retried nor a flow error: a person acts."""
    failure = await failure_of(
        browsers,
        site,
        redis_url,
        [
            {"goto": "{{ integration.base_url }}/"},
            {"needs_human": "Acme asks for a CAPTCHA"},
        ],
    )
    assert failure.needs_human and not failure.transient
    assert "Acme asks for a CAPTCHA" in str(failure)


async def test_a_run_told_to_halt_stops_before_its_next_step(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A job that lost its lease types nothing more: the run stops at the next step."""
    sink = RecordingSink()
    reasons: list[str | None] = [None]
    failure = await failure_of(
        browsers,
        site,
        redis_url,
        [
            {"goto": "{{ integration.base_url }}/"},
            {"click": {"role": "button", "name": "Save"}},
        ],
        sink=sink,
        halt=lambda: reasons.pop(0) if reasons else "the job's lease was lost",
    )
    assert failure.transient
    assert "stopped before step 2: the job's lease was lost" in str(failure)
    assert [result.kind for result in sink.results] == ["goto"]
