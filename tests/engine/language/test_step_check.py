"""`check` and `uncheck`: set a checkbox to a state, whatever state it was in."""

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/boxes": html(
        "<label><input type=checkbox id=admin> Admin</label>"
        "<label><input type=checkbox id=billing checked> Billing</label>"
        "<label><input type=checkbox id=audit checked> Audit</label>"
        "<label><input type=checkbox id=beta> Beta</label>"
    )
}
STATE = "[admin.checked, billing.checked, audit.checked, beta.checked]"


async def test_check_and_uncheck_set_the_state_asked(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Unticked Admin is ticked, ticked Billing untouched by check, Audit unticked, Beta left."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/boxes"),
            {"check": {"label": "Admin"}},
            {"check": {"label": "Billing"}},
            {"uncheck": {"label": "Audit"}},
            {"uncheck": {"label": "Beta"}},
        ],
        read_page=evaluated(STATE),
    )
    assert ran.failure is None
    assert ran.extra["page"] == [True, True, False, False]


async def test_check_a_missing_box_fails_and_changes_nothing(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A box that is not there: a permanent failure naming it; the others stay as they were."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/boxes"), {"check": {"label": "Owner"}, "timeout_ms": 500}],
        read_page=evaluated(STATE),
    )
    assert ran.failure is not None and not ran.failure.transient
    assert "no element matched label='Owner' within 500 ms" in str(ran.failure)
    assert ran.extra["page"] == [False, True, True, False]
