"""Screenshots paint every secret over: password fields, typed secrets, in frames and dialogs.

The masks and the outline are drawn in a glass pane that comes down after each picture: the
page the flow goes on with is the page as it was.
"""

import io
from collections.abc import Iterator

import pyotp
import pytest
from PIL import Image, ImageColor

from engine.automation.browser import BrowserPool
from engine.constants import MASK_COLOR, OUTLINE_COLOR
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, pixels_of, run_flow, serve

SEED = pyotp.random_base32()
MASK = ImageColor.getrgb(MASK_COLOR)
OUTLINE = ImageColor.getrgb(OUTLINE_COLOR)
FIELD = "style='position:absolute;left:{x}px;top:{y}px;width:300px;height:40px'"
SIGN_IN = html(
    f"<label for=u>User</label><input id=u {FIELD.format(x=20, y=40)}>"
    f"<label for=p>Password</label><input id=p type=password {FIELD.format(x=20, y=120)}>"
    f"<label for=c>Code</label><input id=c {FIELD.format(x=20, y=200)}>"
)
FRAMED = html(
    "<iframe src='/inner' style='position:absolute;left:0;top:0;width:600px;height:400px;"
    "border:0'></iframe>"
)
INNER = html(
    f"<label for=c>Code</label><input id=c {FIELD.format(x=20, y=40)}>"
    f"<button {FIELD.format(x=20, y=200)}>Go</button>"
)
MODAL = html(
    "<dialog id=d style='position:fixed;left:0;top:0;margin:0;width:400px;height:200px'>"
    f"<label for=p>Password</label><input id=p type=password {FIELD.format(x=20, y=60)}>"
    "</dialog><script>document.getElementById('d').showModal()</script>"
)
LEFT_BEHIND = "document.querySelectorAll('x-usher-glass, style').length"


@pytest.fixture(scope="module")
def site() -> Iterator[ThreadedServer]:
    """Serve a sign-in form, a form in a frame and a modal dialog."""
    pages = {"/sign-in": SIGN_IN, "/framed": FRAMED, "/inner": INNER, "/modal": MODAL}
    with serve(pages) as server:
        yield server


def pixel(png: bytes, x: int, y: int) -> tuple[int, ...]:
    """Return the colour of one pixel of a screenshot."""
    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((x, y))  # type: ignore[return-value]


async def test_the_password_field_and_a_typed_code_are_painted_over(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Every picture after the password is typed covers it, and the TOTP field once typed;
    the username field stays readable; the pane is gone from the page afterwards."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/sign-in"),
            {"name": "User", "fill": {"label": "User"}, "value": "admin"},
            {"name": "Password", "fill": {"label": "Password"}, "value": "{{ secrets.pw }}"},
            {"name": "Code", "totp": {"label": "Code"}, "secret": "seed"},
            {"name": "After", "screenshot": "after"},
        ],
        secrets={"pw": "hunter2", "seed": SEED},
        read_page=evaluated(LEFT_BEHIND),
    )
    assert ran.failure is None, ran.failure
    for name in ("User", "Password", "Code", "After"):
        shot = ran.sink.screenshot_of(name)
        assert pixel(shot, 170, 140) == MASK, f"{name}: the password field shows"
        assert pixel(shot, 22, 122) == MASK, f"{name}: the password field's corner shows"
        assert pixel(shot, 170, 60) != MASK, f"{name}: the username field is masked"
    assert pixel(ran.sink.screenshot_of("Password"), 170, 220) != MASK, "nothing typed yet"
    for name in ("Code", "After"):
        assert pixel(ran.sink.screenshot_of(name), 170, 220) == MASK, f"{name}: the code shows"
    assert ran.extra["page"] == 0, "the glass pane and its style stayed on the page"


async def test_a_code_typed_in_a_frame_is_painted_over(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A TOTP field inside an iframe is masked in that frame, in every picture after."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/framed"),
            {"name": "Code", "totp": {"label": "Code"}, "secret": "seed", "frame": "iframe"},
            {"name": "After", "screenshot": "after"},
        ],
        secrets={"seed": SEED},
    )
    assert ran.failure is None, ran.failure
    for name in ("Code", "After"):
        assert pixel(ran.sink.screenshot_of(name), 170, 60) == MASK, f"{name}: the code shows"


async def test_a_click_in_a_frame_is_outlined_there(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The outline's style goes into the clicked element's own frame, and comes down with
    the picture."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/framed"),
            {"name": "Go", "click": {"role": "button", "name": "Go"}, "frame": "iframe"},
            {"name": "After", "screenshot": "after"},
        ],
    )
    assert ran.failure is None, ran.failure
    assert pixels_of(ran.sink.screenshot_of("Go"), OUTLINE) > 2 * 300 * 3
    assert pixels_of(ran.sink.screenshot_of("After"), OUTLINE) == 0


async def test_a_password_field_in_a_modal_dialog_is_painted_over(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A modal dialog sits in the top layer, above any z-index: the mask goes above it."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/modal"),
            {"name": "Password", "fill": {"label": "Password"}, "value": "{{ secrets.pw }}"},
        ],
        secrets={"pw": "hunter2"},
    )
    assert ran.failure is None, ran.failure
    assert pixel(ran.sink.screenshot_of("Password"), 170, 80) == MASK
