"""`if_all`: branch on several elements at once: visible, and a value, text or state."""

from typing import Any

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/edit": html(
        "<label for=e>Email</label><input id=e value=dana@example.com>"
        "<p id=status>Status: Active</p>"
        "<label><input type=checkbox id=admin checked> Admin</label>"
        "<button onclick='window.ran = \"then\"'>Then</button>"
        "<button onclick='window.ran = \"else\"'>Else</button>"
    )
}
HOLDS: list[dict[str, Any]] = [
    {"label": "Email", "value": "{{ user.email }}"},
    {"css": "#status", "contains": "Active"},
    {"label": "Admin", "checked": True},
]


def branch(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Return an if_all step over conditions that clicks Then or Else."""
    return {
        "if_all": conditions,
        "then": [{"click": {"role": "button", "name": "Then"}}],
        "else": [{"click": {"role": "button", "name": "Else"}}],
    }


async def test_if_all_runs_then_when_every_condition_holds(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A value (templated), a text and a ticked box all as asked: then."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/edit"), branch(HOLDS)],
        variables={"user": {"email": "dana@example.com"}},
        read_page=evaluated("window.ran"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "then"


@pytest.mark.parametrize(
    "broken",
    [
        {"label": "Email", "value": "eve@example.com"},
        {"css": "#status", "contains": "Suspended"},
        {"label": "Admin", "checked": False},
        {"label": "Phone"},
    ],
    ids=["value", "contains", "checked", "absent"],
)
async def test_if_all_runs_else_when_one_condition_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str, broken: dict[str, Any]
) -> None:
    """One condition of four is false (or its element is missing): else."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/edit"), branch([*HOLDS, broken])],
        variables={"user": {"email": "dana@example.com"}},
        read_page=evaluated("window.ran"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "else"


def test_if_all_needs_a_condition() -> None:
    """An if_all with no condition is refused when the flow is read."""
    with pytest.raises(ValidationError, match="if_all needs at least one condition"):
        Step.model_validate({"if_all": [], "then": [{"screenshot": "x"}]})
