"""`press`: press a key, or a chord, on an element: Enter submits, Escape closes, and so on."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/search": html(
        """<form onsubmit="event.preventDefault(); window.searched = q.value">
        <label for=q>Search</label><input id=q></form>
        <label for=k>Keys</label><input id=k
        onkeydown="(window.keys = window.keys || []).push(event.key +
        (event.ctrlKey ? '+ctrl' : ''))">"""
    )
}


async def test_press_enter_submits_the_form(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A search box with no button: Enter in it submits what was typed."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/search"),
            {"fill": {"label": "Search"}, "value": "dana"},
            {"press": {"label": "Search"}, "key": "Enter"},
        ],
        read_page=evaluated("window.searched"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "dana"


async def test_press_sends_the_keys_named_to_that_element(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Escape, then a chord: the element saw exactly those, in order."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/search"),
            {"press": {"label": "Keys"}, "key": "Escape"},
            {"press": {"label": "Keys"}, "key": "Control+a"},
        ],
        read_page=evaluated("[window.keys, window.searched]"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == [["Escape", "Control+ctrl", "a+ctrl"], None]


async def test_press_on_a_missing_element_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """No such field: a permanent failure naming the locator."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/search"), {"press": {"label": "Filter"}, "key": "Enter", "timeout_ms": 500}],
    )
    assert ran.failure is not None and not ran.failure.transient
    assert "no element matched label='Filter' within 500 ms" in str(ran.failure)


def test_press_needs_a_key() -> None:
    """A press without a key is refused when the flow is read."""
    with pytest.raises(ValidationError, match="press needs a key"):
        Step.model_validate({"press": {"label": "Search"}})
