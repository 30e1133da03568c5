"""The kept session's sessionStorage: read from the tab that signed in, given back to a new
tab before the app's first script runs, once per tab and generation."""

from collections.abc import Iterator

import pytest

from engine.automation.browser import BrowserPool
from engine.automation.sessions import (
    SESSION_STORAGE,
    StoredSession,
    browser_state,
    read_session_storage,
    restore_session_storage,
)
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import html, serve

APP = html(
    "<p id=token></p><script>document.getElementById('token').textContent ="
    " sessionStorage.getItem('app.token') || 'signed out';</script>"
)
"""A page that shows, as its script first sees it, the token the tab keeps."""


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the app's page."""
    with serve({"/app": APP}) as server:
        yield server


def kept(site: ThreadedServer, generation: int, token: str) -> StoredSession:
    """Return a kept session holding a token in the app origin's sessionStorage."""
    state = {
        "cookies": [],
        "origins": [],
        SESSION_STORAGE: [{"origin": site.url, "items": {"app.token": token}}],
    }
    return StoredSession(generation, state)


async def test_a_new_tab_gets_the_kept_token_before_the_app_runs_and_keeps_its_own_after(
    browsers: BrowserPool, site: ThreadedServer
) -> None:
    """Generation 1 is there before the page's script runs; a token the tab gets later (a
    sign-in in it) survives reloads; a newer generation replaces it at once."""
    async with browsers.context() as context:
        page = await context.new_page()
        await restore_session_storage(page, kept(site, 1, "first"))
        await page.goto(f"{site.url}/app")
        assert await page.text_content("#token") == "first"

        await page.evaluate("sessionStorage.setItem('app.token', 'signed-in-here')")
        await page.reload()
        assert await page.text_content("#token") == "signed-in-here"

        await restore_session_storage(page, kept(site, 2, "newer"))
        assert await page.evaluate("sessionStorage.getItem('app.token')") == "newer"
        await page.reload()
        assert await page.text_content("#token") == "newer"
        assert await read_session_storage(page, site.url) == [
            {"origin": site.url, "items": {"app.token": "newer"}}
        ]

        other = await context.new_page()
        await other.goto(f"{site.url}/app")
        assert await other.text_content("#token") == "newer", "every new tab of the context"


async def test_only_the_apps_origin_is_read_and_given_back(
    browsers: BrowserPool, site: ThreadedServer
) -> None:
    """A tab elsewhere reads as nothing; a kept token is never written to another origin;
    Playwright's own state leaves the sessionStorage out."""
    elsewhere = site.url.replace("127.0.0.1", "localhost")
    async with browsers.context() as context:
        page = await context.new_page()
        await restore_session_storage(page, kept(site, 1, "first"))
        await page.goto(f"{elsewhere}/app")
        assert await page.text_content("#token") == "signed out"
        assert await read_session_storage(page, site.url) == []
    state = kept(site, 1, "first").state
    assert browser_state(state) == {"cookies": [], "origins": []}
    assert browser_state(None) is None
