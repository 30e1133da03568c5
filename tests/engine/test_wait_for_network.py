"""`wait_for: {response: URL-pattern}` and `{request: ...}`: the background call a click starts."""

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.automation.browser import BrowserPool
from engine.automation.language import Flow
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import goto, html, run_flow, serve

SLOW_S = 0.6
PAGE = html(
    """<button id=save>Save</button><button id=ping>Ping</button><button id=noop>Noop</button>
    <p id=status>Idle</p>
    <script>
    const status = document.getElementById('status');
    document.getElementById('save').onclick = () => fetch('/api/save', {method: 'POST'})
      .then(r => r.json()).then(j => { status.textContent = j.said; });
    document.getElementById('ping').onclick = () => fetch('/api/ping')
      .then(r => r.json()).then(j => { status.textContent = j.said; });
    </script>"""
)


async def slow_save(_: Request) -> Response:
    """Answer after a while, as a busy console's background save does."""
    await asyncio.sleep(SLOW_S)
    return JSONResponse({"said": "Saved"})


async def ping(_: Request) -> Response:
    """Answer at once."""
    return JSONResponse({"said": "Pong"})


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a page whose buttons start background calls."""
    app_routes = {"/page": PAGE, "/api/save": slow_save, "/api/ping": ping}
    with serve(app_routes) as server:
        yield server


def click(name: str) -> dict:
    """Return a click on a button."""
    return {"name": name, "click": {"role": "button", "name": name}}


async def test_wait_for_response_waits_for_the_background_call(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The save answers after 0.6 s: the wait lasts that long, then the page shows it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/page"),
            click("Save"),
            {"name": "Saved", "wait_for": {"response": "/api/save$"}},
            {"expect": {"css": "#status"}, "text": "Saved", "timeout_ms": 300},
        ],
    )
    assert ran.failure is None, ran.failure
    waited = ran.sink.named("Saved")
    assert waited.duration_ms + ran.sink.named("Save").duration_ms >= SLOW_S * 1000 - 50
    assert waited.locator == f"response {site.url}/api/save"


async def test_a_response_that_came_before_the_wait_still_counts(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Ping answers at once; a screenshot step later, the wait still sees it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/page"),
            click("Ping"),
            {"expect": {"css": "#status"}, "text": "Pong"},
            {"screenshot": "pong"},
            {"name": "Pinged", "wait_for": {"response": "/api/ping"}, "timeout_ms": 300},
            {"name": "Ping sent", "wait_for": {"request": "/api/ping"}, "timeout_ms": 300},
        ],
    )
    assert ran.failure is None, ran.failure


async def test_a_response_from_before_the_last_acting_step_does_not_count(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Ping, then another click: the ping's response belongs to the step before; it fails."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/page"),
            click("Ping"),
            {"expect": {"css": "#status"}, "text": "Pong"},
            click("Noop"),
            {"name": "Pinged", "wait_for": {"response": "/api/ping"}, "timeout_ms": 300},
        ],
    )
    assert ran.failure is not None
    assert str(ran.failure).endswith(
        "no response matching '/api/ping' since the last acting step began, within 300 ms"
    )
    assert ran.sink.named("Pinged").status == "failed"


def test_a_network_wait_goes_alone() -> None:
    """A response wait mixed with a URL or a request is refused."""
    for spec in ({"response": "/a", "url": "/b"}, {"response": "/a", "request": "/a"}):
        with pytest.raises(ValidationError, match="response goes alone"):
            Flow.model_validate({"action": "t", "steps": [{"wait_for": spec}]})
