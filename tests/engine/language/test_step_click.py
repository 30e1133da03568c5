"""`click`: click the element once; a click that navigates waits for the new page to load."""

import asyncio
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow, serve

PAGES = {
    "/count": html(
        "<button onclick='window.clicks = (window.clicks || 0) + 1'>Add</button>"
        "<button onclick='window.other = 1'>Other</button>"
    ),
    "/form": html(
        "<form method=post action=/saved><button>Save</button></form>"
        "<form method=post action=/explode><button>Explode</button></form>"
    ),
    "/frame": html("<h1>Outer</h1>"),
}


async def saved(_: Request) -> Response:
    """Answer a form post slowly, so that only a click that waits for the page sees it."""
    await asyncio.sleep(0.5)
    return HTMLResponse("<title>t</title><h1>Saved</h1>")


async def explode(_: Request) -> Response:
    """Answer a form post with a server error."""
    return HTMLResponse("<title>t</title><h1>Error</h1>", status_code=500)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the pages of this file."""
    routes = {**PAGES, "/saved": saved, "/explode": explode}
    with serve(routes) as server:  # type: ignore[arg-type]
        yield server


async def test_click_clicks_that_element_once(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The page's own handler ran exactly once, and only the targeted button's."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/count"), {"click": {"role": "button", "name": "Add"}}],
        read_page=evaluated("[window.clicks, window.other]"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == [1, None]


async def test_a_click_that_navigates_waits_for_the_page(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The click's step ends on the page it opened, loaded, though the server took its time."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/form"), {"name": "Save", "click": {"role": "button", "name": "Save"}}],
    )
    assert ran.failure is None
    assert ran.sink.named("Save").url == f"{site.url}/saved"


async def test_a_click_answered_with_a_5xx_is_transient(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The page a click opened answered 500: another try may work."""
    ran = await run_flow(
        browsers, site.url, redis_url, [goto("/form"), {"click": {"text": "Explode"}}]
    )
    assert ran.failure is not None and ran.failure.transient
    assert "the app answered 500" in str(ran.failure)


async def test_a_failed_step_names_step_locator_and_url(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A locator that matches nothing: the error says which step, which locator, which URL."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/frame"), {"name": "Open settings", "click": {"text": "Settings"}}],
    )
    assert ran.failure is not None and not ran.failure.transient
    message = str(ran.failure)
    assert message.startswith("step 2 'Open settings' (text='Settings') failed at")
    assert f"{site.url}/frame" in message and "within 2000 ms" in message
