"""`click`: click the element once; a click that navigates waits for the new page to load."""

import asyncio
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from engine.automation.browser import BrowserPool
from engine.constants import CLICK_SETTLE_S
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
    "/console": html(
        "<button id=go>Sign in</button><button id=save>Save</button><p id=status>Idle</p>"
        "<script>"
        "document.getElementById('go').onclick = () => fetch('/api/slow', {method: 'POST'})"
        "  .then(() => { location.href = '/next'; });"
        "document.getElementById('save').onclick = () => fetch('/api/slow', {method: 'POST'})"
        "  .then(() => { document.getElementById('status').textContent = 'Saved'; });"
        "</script>"
    ),
    "/next": html("<h1>Next</h1>"),
    "/hanging": html("<button onclick=\"fetch('/api/hang')\">Wait forever</button>"),
}
HANG_S = CLICK_SETTLE_S * 3
SLOW_S = 0.4
"""How long the console's background call takes: far past a short grace after the click."""


async def saved(_: Request) -> Response:
    """Answer a form post slowly, so that only a click that waits for the page sees it."""
    await asyncio.sleep(0.5)
    return HTMLResponse("<title>t</title><h1>Saved</h1>")


async def slow_call(_: Request) -> Response:
    """Answer a background call after a while, as a busy console does."""
    await asyncio.sleep(SLOW_S)
    return JSONResponse({"ok": True})


async def hang(_: Request) -> Response:
    """Answer a background call only long after any click would wait for it."""
    await asyncio.sleep(HANG_S)
    return JSONResponse({"ok": True})


async def explode(_: Request) -> Response:
    """Answer a form post with a server error."""
    return HTMLResponse("<title>t</title><h1>Error</h1>", status_code=500)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the pages of this file."""
    routes = {
        **PAGES,
        "/saved": saved,
        "/explode": explode,
        "/api/slow": slow_call,
        "/api/hang": hang,
    }
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


async def test_a_click_whose_background_call_then_navigates_ends_on_the_new_page(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The sign-in button posts in the background and only then opens the next page: the
    click's step waits for the call, then for the page it led to, loaded."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/console"), {"name": "Sign in", "click": {"role": "button", "name": "Sign in"}}],
        read_page=evaluated(
            "document.querySelector('h1') && document.querySelector('h1').textContent"
        ),
    )
    assert ran.failure is None, ran.failure
    assert ran.sink.named("Sign in").url == f"{site.url}/next"
    assert ran.extra["page"] == "Next"


async def test_a_click_waits_for_the_background_save_it_started(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Save answers after a while and the page then says so: a look right after the click,
    which does not wait itself, already sees it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/console"),
            {"click": {"role": "button", "name": "Save"}},
            {
                "if_visible": {"text": "Saved"},
                "then": [{"name": "Seen", "screenshot": "seen"}],
            },
        ],
    )
    assert ran.failure is None, ran.failure
    assert [r.name for r in ran.sink.results][-1] == "Seen"


async def test_a_click_waits_for_its_requests_only_so_long(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A call that never ends in time holds the click no longer than CLICK_SETTLE_S: the
    step succeeds and the next one runs while the call is still out."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/hanging"),
            {"name": "Wait", "click": {"role": "button", "name": "Wait forever"}},
            {"name": "After", "expect": {"role": "button", "name": "Wait forever"}},
        ],
    )
    assert ran.failure is None, ran.failure
    assert ran.sink.named("Wait").duration_ms < HANG_S * 1000
    assert ran.sink.named("After").status == "ok"
