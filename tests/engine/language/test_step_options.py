"""What any step may add: `frame` (look inside an iframe), `fallbacks` (other locators to
try, the one that matched recorded) and `timeout_ms` (its own patience)."""

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/frame": html("<h1>Outer</h1><iframe id=editor src=/inner></iframe>"),
    "/inner": html("<label for=i>Inner</label><input id=i>"),
    "/buttons": html("<button onclick='window.saved = true'>Save</button>"),
}
READ_INNER = "document.getElementById('editor').contentDocument.getElementById('i').value"


async def test_frame_looks_inside_the_iframe(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A field only inside an iframe is filled there; without frame it is not found."""
    fill = {"fill": {"label": "Inner"}, "value": "{{ user.email }}", "frame": "#editor"}
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/frame"), fill, {"expect": {"label": "Inner"}, "value": "a@x", "frame": "#editor"}],
        variables={"user": {"email": "a@x"}},
        read_page=evaluated(READ_INNER),
    )
    assert ran.failure is None
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] == "a@x"
    outside = {key: value for key, value in fill.items() if key != "frame"}
    missed = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/frame"), {**outside, "timeout_ms": 300}],
        variables={"user": {"email": "a@x"}},
    )
    assert missed.failure is not None
    assert "no element matched label='Inner'" in str(missed.failure)


async def test_fallbacks_are_tried_in_order_and_the_match_recorded(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Store is not there, Save is: Save is clicked and recorded as the locator that matched,
    with the two that found nothing before it (the UI drifted); a step whose own locator
    matched records no such thing."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/buttons"),
            {
                "name": "Save",
                "click": {"role": "button", "name": "Store"},
                "fallbacks": [{"text": "Keep"}, {"role": "button", "name": "Save"}],
            },
            {"name": "Saved", "expect": {"text": "Save"}, "fallbacks": [{"text": "Keep"}]},
        ],
        read_page=evaluated("window.saved === true"),
    )
    assert ran.failure is None
    drifted = ran.sink.named("Save")
    assert drifted.locator == "role='button', name='Save'"
    assert drifted.failed_locator == "role='button', name='Store' | text='Keep'"
    assert ran.sink.named("Saved").failed_locator is None
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] is True


async def test_no_fallback_matches_names_them_all(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """When none matches, the failure lists every locator tried."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/buttons"),
            {"click": {"text": "Store"}, "fallbacks": [{"text": "Keep"}], "timeout_ms": 300},
        ],
    )
    assert ran.failure is not None
    assert "no element matched text='Store' | text='Keep' within 300 ms" in str(ran.failure)


async def test_timeout_ms_is_the_steps_own_patience(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A step with timeout_ms 300 gives up after about that, not the run's 2000 ms."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/buttons"), {"name": "wait", "click": {"text": "Later"}, "timeout_ms": 300}],
    )
    assert ran.failure is not None and "within 300 ms" in str(ran.failure)
    assert ran.sink.named("wait").duration_ms >= 300
