"""`wait_for`: wait until an element reaches a state, or the page a URL or load state."""

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/busy": html(
        "<p id=spinner>Working</p><p id=done hidden>Done</p><script>setTimeout(() => {"
        "spinner.remove(); done.hidden = false; window.finishedAt = Date.now()}, 1000)</script>"
    ),
    "/later": html(
        "<script>setTimeout(() => history.pushState({}, '', '/later/ready'), 1000)</script>"
    ),
    "/quiet": html(
        "<script>setTimeout(() => fetch('/quiet').then(() => window.fetched = true), 300)</script>"
    ),
}


async def test_wait_for_an_element_to_be_hidden_then_visible(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The steps return only once the spinner is gone and Done shows: a check with no
    patience at all then finds Done."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/busy"),
            {"name": "gone", "wait_for": {"css": "#spinner"}, "state": "hidden"},
            {"name": "done", "wait_for": {"text": "Done"}, "state": "visible"},
            {"name": "at once", "expect": {"text": "Done"}, "timeout_ms": 1},
        ],
    )
    assert ran.failure is None
    assert [s.status for s in ran.sink.results] == ["ok"] * 4


async def test_wait_for_a_url(browsers: BrowserPool, site: ThreadedServer, redis_url: str) -> None:
    """A regular expression on the URL: the step ends when the page's URL matches it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/later"), {"name": "ready", "wait_for": {"url": "/later/ready$"}}],
    )
    assert ran.failure is None
    assert ran.sink.named("ready").url == f"{site.url}/later/ready"


async def test_wait_for_the_network_to_be_idle(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """networkidle: the page's late fetch has come back when the step ends."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/quiet"), {"wait_for": {"load_state": "networkidle"}}],
        read_page=evaluated("window.fetched === true"),
    )
    assert ran.failure is None
    assert ran.extra["page"] is True


async def test_wait_for_what_never_comes_fails_after_its_timeout(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """An element that never shows: a permanent failure naming it, after timeout_ms."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/busy"),
            {"name": "never", "wait_for": {"text": "Never"}, "state": "visible", "timeout_ms": 300},
        ],
    )
    assert ran.failure is not None and not ran.failure.transient
    assert "'never' (text='Never')" in str(ran.failure)
    assert ran.sink.named("never").duration_ms >= 300
