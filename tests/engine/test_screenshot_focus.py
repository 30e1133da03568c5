"""Screenshots show the proof: the step's element scrolled into view and outlined; full_page."""

import io
from collections.abc import Iterator

import pytest
from PIL import Image, ImageColor

from engine.automation.browser import BrowserPool
from engine.constants import OUTLINE_COLOR
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, pixels_of, run_flow, serve

VIEWPORT = {"width": 800, "height": 600}
TALL = html(
    "<div style='height:2400px'>Top of the page</div>"
    "<p id=proof style='width:200px'>Proof</p>"
    "<button onclick=\"document.getElementById('proof').textContent='Done'\">Do it</button>"
    "<div style='height:1200px'></div>"
)
VANISHING = html(
    "<button id=go>Send</button><script>"
    "new MutationObserver(() => document.getElementById('go')?.remove())"
    ".observe(document.getElementById('go'), {attributes: true})"
    "</script>"
)
"""A button the page removes as soon as it is marked for its outline, as a single-page app
replaces the button a click sent: the screenshot must not wait for it to come back."""
OUTLINE = ImageColor.getrgb(OUTLINE_COLOR)


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a page whose proof lies far below the fold."""
    with serve({"/tall": TALL, "/vanishing": VANISHING}) as server:
        yield server


def outline_pixels(png: bytes) -> int:
    """Count the pixels painted in the outline's colour."""
    return pixels_of(png, OUTLINE)


async def test_an_expect_below_the_fold_is_scrolled_to_and_outlined(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The expect's picture shows the outlined element; a plain screenshot step shows none."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/tall"),
            {"name": "Before", "screenshot": "before"},
            {"name": "The proof shows", "expect": {"css": "#proof"}, "text": "Proof"},
            {"name": "After", "screenshot": "after"},
        ],
        viewport=VIEWPORT,
    )
    assert ran.failure is None, ran.failure
    assert outline_pixels(ran.sink.screenshot_of("Before")) == 0
    shot = ran.sink.screenshot_of("The proof shows")
    assert Image.open(io.BytesIO(shot)).size == (800, 600)
    assert outline_pixels(shot) > 2 * 200 * 3, "the outline runs around the whole element"
    assert outline_pixels(ran.sink.screenshot_of("After")) == 0, "the outline is taken away"


async def test_an_acting_step_outlines_its_element_even_when_it_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A click below the fold is outlined; so is an expect that fails on its element."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/tall"),
            {"name": "Do it", "click": {"role": "button", "name": "Do it"}},
            {"name": "Wrong text", "expect": {"css": "#proof"}, "text": "Nope", "timeout_ms": 300},
        ],
        viewport=VIEWPORT,
    )
    assert outline_pixels(ran.sink.screenshot_of("Do it")) > 0
    assert ran.failure is not None
    assert outline_pixels(ran.sink.screenshot_of("Wrong text")) > 0


async def test_full_page_takes_the_whole_page(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """`full_page: true` pictures the whole page for that step only."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/tall"),
            {"name": "Whole page", "screenshot": "whole", "full_page": True},
            {"name": "Viewport", "screenshot": "viewport"},
        ],
        viewport=VIEWPORT,
    )
    assert ran.failure is None, ran.failure
    width, height = Image.open(io.BytesIO(ran.sink.screenshot_of("Whole page"))).size
    assert width == 800 and height > 3600
    assert Image.open(io.BytesIO(ran.sink.screenshot_of("Viewport"))).size == (800, 600)


async def test_an_element_the_page_removes_while_outlined_costs_no_wait(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The clicked button is gone once it is marked for its outline: the step ends at once,
    not after the step timeout (2 s here) spent looking for the button again."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/vanishing"), {"name": "Send", "click": {"role": "button", "name": "Send"}}],
    )
    assert ran.failure is None, ran.failure
    assert ran.sink.named("Send").duration_ms < 2000
