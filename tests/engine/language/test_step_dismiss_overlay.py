"""`dismiss_overlay`: whenever an overlay blocks an action, click its close button first."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/overlay": html(
        """<button onclick="document.body.dataset.saved='yes';
        document.getElementById('out').textContent='saved'">Save</button><p id=out></p>
        <div id=banner style="position:fixed;inset:0;background:#eee">We use cookies
        <button onclick="this.parentElement.remove()">Accept cookies</button></div>"""
    )
}
SAVE = {"name": "Save", "click": {"role": "button", "name": "Save"}, "timeout_ms": 1000}
READ = "[document.body.dataset.saved || null, !!document.getElementById('banner')]"


async def test_an_overlay_is_cleared_when_it_blocks_a_click(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The cookie banner covers Save: the handler accepts it, then Save is clicked."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/overlay"),
            {
                "dismiss_overlay": {"text": "We use cookies"},
                "close": {"role": "button", "name": "Accept cookies"},
            },
            SAVE,
            {"expect": {"css": "#out"}, "text": "saved"},
        ],
        read_page=evaluated(READ),
    )
    assert ran.failure is None and ran.outcome is not None and not ran.outcome.already
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] == ["yes", False]


async def test_without_it_the_overlay_blocks_the_click(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The same click with no handler fails, and nothing was saved: the overlay is real."""
    ran = await run_flow(
        browsers, site.url, redis_url, [goto("/overlay"), SAVE], read_page=evaluated(READ)
    )
    assert ran.failure is not None
    assert ran.sink.named("Save").status == "failed"
    assert ran.extra["page"] == [None, True]


def test_dismiss_overlay_needs_close() -> None:
    """An overlay with no close button to click is refused when the flow is read."""
    with pytest.raises(ValidationError, match="dismiss_overlay needs close"):
        Step.model_validate({"dismiss_overlay": {"text": "We use cookies"}})
