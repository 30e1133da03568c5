"""`if_visible`: run `then` when an element is visible now, else `else`."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

BUTTONS = (
    "<button onclick='window.ran = \"then\"'>Then</button>"
    "<button onclick='window.ran = \"else\"'>Else</button>"
)
PAGES = {
    "/shown": html(f"<p>Reactivate user</p>{BUTTONS}"),
    "/hidden": html(f"<p style='display:none'>Reactivate user</p>{BUTTONS}"),
    "/absent": html(BUTTONS),
    "/late": html(
        f"{BUTTONS}<script>setTimeout(() => document.body.insertAdjacentHTML("
        "'beforeend', '<p>Reactivate user</p>'), 800)</script>"
    ),
}
BRANCH = {
    "name": "branch",
    "if_visible": {"text": "Reactivate user"},
    "then": [{"click": {"role": "button", "name": "Then"}}],
    "else": [{"click": {"role": "button", "name": "Else"}}],
}


@pytest.mark.parametrize(
    ("path", "branch"),
    [("/shown", "then"), ("/hidden", "else"), ("/absent", "else")],
)
async def test_if_visible_runs_the_branch_the_page_calls_for(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, path: str, branch: str
) -> None:
    """Shown: then; hidden or absent: else; and only that branch runs."""
    ran = await run_flow(
        browsers, site.url, redis_url, [goto(path), BRANCH], read_page=evaluated("window.ran")
    )
    assert ran.failure is None
    assert ran.extra["page"] == branch
    assert [s.kind for s in ran.sink.results] == ["goto", "if_visible", "click"]


async def test_if_visible_counts_its_fallbacks(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """The main locator matches nothing, a fallback is visible: then, and the step records
    the fallback it saw and the locator that found nothing."""
    step = {**BRANCH, "if_visible": {"text": "Restore user"}}
    step["fallbacks"] = [{"text": "Reactivate user"}]
    ran = await run_flow(
        browsers, site.url, redis_url, [goto("/shown"), step], read_page=evaluated("window.ran")
    )
    assert ran.extra["page"] == "then"
    branched = ran.sink.results[1]
    assert (branched.locator, branched.failed_locator) == (
        "text='Reactivate user'",
        "text='Restore user'",
    )


def test_then_and_else_belong_to_branches() -> None:
    """A `then` on a step that does not branch is refused when the flow is read."""
    with pytest.raises(ValidationError, match="then/else go with"):
        Step.model_validate({"click": {"text": "Go"}, "then": [{"screenshot": "x"}]})
