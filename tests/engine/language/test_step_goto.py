"""`goto`: open a templated URL on the integration's origin; nowhere else; a 5xx is transient."""

from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine.automation.browser import BrowserPool
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow, serve


async def hello(request: Request) -> Response:
    """Greet the name in the path."""
    return HTMLResponse(f"<title>t</title><h1>Hello {request.path_params['name']}</h1>")


async def broken(_: Request) -> Response:
    """Answer as a failing app does."""
    return HTMLResponse("<title>t</title><h1>Oops</h1>", status_code=503)


POSTS: list[str] = []
"""Each form the /form page was sent, in order."""


async def form(request: Request) -> Response:
    """Show a form that posts to itself; count what each POST sent."""
    if request.method == "POST":
        POSTS.append((await request.form())["name"])
        shown = f"sent {len(POSTS)}"
    else:
        shown = "empty form"
    return HTMLResponse(
        f"<title>t</title><p id=shown>{shown}</p>"
        "<form method=post><input name=name value=dana><button>Send</button></form>"
    )


SINGLE_PAGE = html(
    "<p id=shown></p><script>const loads = Number(sessionStorage.getItem('loads') || 0) + 1;"
    "sessionStorage.setItem('loads', loads);"
    "document.getElementById('shown').textContent = `${location.hash} load ${loads}`;</script>"
)
"""A single-page app that renders its route once per load of the document."""


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve the pages of this file."""
    pages = {"/hello/{name}": hello, "/broken": broken, "/start": html("<p>start</p>")}
    with serve({**pages, "/app": SINGLE_PAGE, "/form": form}) as s:
        yield s


async def test_goto_renders_its_url_and_opens_the_page(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The URL's template reads the user; the page it names is the one shown afterwards."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/hello/{{ user.name }}")],
        variables={"user": {"name": "dana"}},
        read_page=evaluated("location.pathname + ' ' + document.querySelector('h1').innerText"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "/hello/dana Hello dana"
    assert ran.sink.results[0].url == f"{site.url}/hello/dana"


async def test_goto_refuses_another_origin(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A URL off the integration's origin is never opened: a permanent failure."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/start"), {"goto": "http://127.0.0.2:9/steal"}],
        read_page=evaluated("location.pathname"),
    )
    assert ran.failure is not None and not ran.failure.transient
    assert "refused to open http://127.0.0.2:9/steal: not the integration's origin" in str(
        ran.failure
    )
    assert ran.extra["page"] == "/start"


async def test_goto_a_failing_page_is_transient(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A 5xx answer is worth another try: the failure is transient and names the status."""
    ran = await run_flow(browsers, site.url, redis_url, [goto("/broken")])
    assert ran.failure is not None and ran.failure.transient
    assert "the app answered 503" in str(ran.failure)


async def test_goto_the_route_the_page_shows_loads_it_again(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A browser keeps a single-page app's route as it is when told to open it again (only
    the #fragment would change, and it does not): goto reloads it, so what the page shows
    is fresh, as after any other goto."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/app#/members/g-1"),
            {"expect": {"css": "#shown"}, "text": "#/members/g-1 load 1"},
            goto("/app#/members/g-1"),
            {"expect": {"css": "#shown"}, "text": "#/members/g-1 load 2"},
        ],
        read_page=evaluated("sessionStorage.getItem('loads')"),
    )
    assert ran.failure is None, ran.failure
    assert ran.extra["page"] == "2"


async def test_goto_the_url_a_post_answered_opens_it_without_posting_again(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A retried action opens the page a POST answered (a create that failed after the app
    made it): goto gets it afresh, and the form is never sent a second time."""
    POSTS.clear()
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/form"),
            {"click": {"role": "button", "name": "Send"}},
            {"expect": {"css": "#shown"}, "text": "sent 1"},
            goto("/form"),
            {"expect": {"css": "#shown"}, "text": "empty form"},
        ],
    )
    assert ran.failure is None, ran.failure
    assert POSTS == ["dana"]
