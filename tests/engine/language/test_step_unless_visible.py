"""`unless_visible`: run `then` when an element is NOT visible now, else `else`."""

import pytest

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

BUTTONS = (
    "<button onclick='window.ran = \"then\"'>Then</button>"
    "<button onclick='window.ran = \"else\"'>Else</button>"
)
PAGES = {
    "/shown": html(f"<p>Account exists</p>{BUTTONS}"),
    "/hidden": html(f"<p hidden>Account exists</p>{BUTTONS}"),
    "/absent": html(BUTTONS),
}
BRANCH = {
    "name": "branch",
    "unless_visible": {"text": "Account exists"},
    "then": [{"click": {"role": "button", "name": "Then"}}],
    "else": [{"click": {"role": "button", "name": "Else"}}],
}


@pytest.mark.parametrize(
    ("path", "branch"), [("/absent", "then"), ("/hidden", "then"), ("/shown", "else")]
)
async def test_unless_visible_runs_then_when_the_element_is_not_visible(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, path: str, branch: str
) -> None:
    """Absent or hidden: then; visible: else; only the one branch runs."""
    ran = await run_flow(
        browsers, site.url, redis_url, [goto(path), BRANCH], read_page=evaluated("window.ran")
    )
    assert ran.failure is None
    assert ran.extra["page"] == branch
    assert [s.kind for s in ran.sink.results] == ["goto", "unless_visible", "click"]


async def test_unless_visible_without_else_goes_on(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The element is visible and there is no else: nothing runs, the flow goes on."""
    step = {"unless_visible": {"text": "Account exists"}, "then": BRANCH["then"]}
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/shown"), step, {"click": {"role": "button", "name": "Else"}}],
        read_page=evaluated("window.ran"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "else"
    assert [s.kind for s in ran.sink.results] == ["goto", "unless_visible", "click"]
