"""`expect`: prove the page says what it should; a page that does not is a permanent failure."""

from typing import Any

import pytest

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow

PAGES = {
    "/account": html(
        "<h1>Account dana</h1><p id=status>Status: Active</p>"
        "<label for=e>Email</label><input id=e value=dana@example.com>"
        "<label><input type=checkbox id=admin checked> Admin</label>"
        "<label><input type=checkbox id=audit> Audit</label>"
        "<p id=flash hidden>Saved</p>"
    )
}
HOLDS: list[dict[str, Any]] = [
    {"expect": {"css": "#status"}, "text": "Active"},
    {"expect": {"label": "Email"}, "value": "{{ user.email }}"},
    {"expect": {"label": "Admin"}, "checked": True},
    {"expect": {"label": "Audit"}, "checked": False},
    {"expect": {"role": "heading", "name": "Account dana"}},
    {"expect": {"url": "/account$"}},
    {"expect": {"text": "Status: Active"}},
    {"expect": {"css": "#flash"}, "state": "hidden"},
    {"expect": {"text": "Account suspended"}, "state": "hidden"},
    {"expect": {"css": "#dialog"}, "state": "detached"},
]
FAILS: list[dict[str, Any]] = [
    {"expect": {"css": "#status"}, "text": "Suspended"},
    {"expect": {"label": "Email"}, "value": "someone@example.com"},
    {"expect": {"label": "Admin"}, "checked": False},
    {"expect": {"label": "Audit"}, "checked": True},
    {"expect": {"role": "heading", "name": "Account eve"}},
    {"expect": {"url": "/elsewhere$"}},
    {"expect": {"text": "Status: Suspended"}},
    {"expect": {"css": "#status"}, "state": "hidden"},
    {"expect": {"css": "#flash"}, "state": "detached"},
]


async def test_every_kind_of_expectation_holds_on_a_matching_page(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Text, value, ticked or not, visible by role and name, the URL and the page's text."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/account"), *HOLDS],
        variables={"user": {"email": "dana@example.com"}},
    )
    assert ran.failure is None
    assert [s.status for s in ran.sink.results] == ["ok"] * (1 + len(HOLDS))


@pytest.mark.parametrize("step", FAILS, ids=[str(i) for i in range(len(FAILS))])
async def test_each_expectation_fails_when_the_page_differs(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, step: dict[str, Any]
) -> None:
    """Each expectation turned false fails its step, permanently: the app said no."""
    ran = await run_flow(
        browsers, site.url, redis_url, [goto("/account"), {**step, "timeout_ms": 300}]
    )
    assert ran.failure is not None and not ran.failure.transient
    assert str(ran.failure).startswith("step 2 ")
    assert ran.sink.results[-1].status == "failed"
