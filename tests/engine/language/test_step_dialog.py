"""`dialog`: answer the next JavaScript dialog, armed before the click that opens it."""

import pytest

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/dialog": html(
        """<button onclick="document.getElementById('r').textContent=
        confirm('Delete it?') ? 'deleted' : 'kept'">Delete</button>
        <p id=r data-testid=result></p>"""
    )
}


@pytest.mark.parametrize(("answer", "result"), [("accept", "deleted"), ("dismiss", "kept")])
async def test_dialog_answers_the_confirm_the_click_opens(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, answer: str, result: str
) -> None:
    """accept says OK, dismiss says Cancel; the answer lands in the console log too."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/dialog"),
            {"dialog": answer},
            {"click": {"role": "button", "name": "Delete"}},
            {"expect": {"test_id": "result"}, "text": result},
        ],
        read_page=evaluated("r.textContent"),
    )
    assert ran.failure is None
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] == result
    assert "dialog: confirm 'Delete it?' answered" in ran.runner.console


async def test_dialog_answers_only_the_next_one(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Armed once, accepted once: the second confirm gets Playwright's default, dismissal."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/dialog"),
            {"dialog": "accept"},
            {"click": {"role": "button", "name": "Delete"}},
            {"expect": {"test_id": "result"}, "text": "deleted"},
            {"click": {"role": "button", "name": "Delete"}},
        ],
        read_page=evaluated("r.textContent"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "kept"
