"""The steps that end a flow or mark it: `already`, `fail`, `needs_human`, `refused`,
`screenshot`; each ends the way its name says, with a screenshot of the page."""

import pytest

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {"/page": html("<button onclick='window.clicked = true'>Go</button>")}
AFTER = {"click": {"role": "button", "name": "Go"}}


async def test_already_ends_the_flow_successfully(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The state is already so: the outcome says so, no later step runs, the step is kept."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/page"), {"name": "exists", "already": "{{ user.email }} exists"}, AFTER],
        variables={"user": {"email": "dana@example.com"}},
        read_page=evaluated("window.clicked === true"),
    )
    assert ran.failure is None and ran.outcome is not None and ran.outcome.already
    assert [s.status for s in ran.sink.results] == ["ok", "already"]
    assert ran.sink.screenshot_of("exists")
    assert ran.extra["page"] is False


@pytest.mark.parametrize(
    ("kind", "needs_human", "refused"),
    [("fail", False, False), ("needs_human", True, False), ("refused", False, True)],
)
async def test_fail_needs_human_and_refused_stop_the_flow_as_named(
    browsers: BrowserPool,
    site: ThreadedServer,
    redis_url: str,
    kind: str,
    needs_human: bool,
    refused: bool,
) -> None:
    """Each stops with its rendered message, permanently, flagged for what follows it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/page"), {"name": "stop", kind: "{{ user.email }}: no seat left"}, AFTER],
        variables={"user": {"email": "dana@example.com"}},
        read_page=evaluated("window.clicked === true"),
    )
    failure = ran.failure
    assert failure is not None
    assert "dana@example.com: no seat left" in str(failure)
    assert (failure.transient, failure.needs_human, failure.refused) == (
        False,
        needs_human,
        refused,
    )
    assert ran.sink.named("stop").status == "failed" and ran.sink.screenshot_of("stop")
    assert ran.extra["page"] is False


async def test_screenshot_records_a_named_step_and_goes_on(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A screenshot step keeps a PNG of the page under its name; the flow continues."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/page"), {"screenshot": "before {{ user.email }}"}, AFTER],
        variables={"user": {"email": "dana@example.com"}},
        read_page=evaluated("window.clicked === true"),
    )
    assert ran.failure is None
    shot = ran.sink.screenshot_of("screenshot before dana@example.com")
    assert shot.startswith(b"\x89PNG")
    assert ran.extra["page"] is True
