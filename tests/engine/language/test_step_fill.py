"""`fill`: replace a field's value with a rendered template; refuse what cannot be filled."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/form": html(
        "<label for=e>Email</label><input id=e value=old@example.com>"
        "<label for=n>Note</label><textarea id=n></textarea><p id=text>Not a field</p>"
    )
}


async def test_fill_replaces_the_value_with_the_rendered_template(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """What was in the field is gone; the user's values are typed, in inputs and textareas."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/form"),
            {"fill": {"label": "Email"}, "value": "{{ user.email }}"},
            {"fill": {"label": "Note"}, "value": "for {{ user.name | upper }}"},
        ],
        variables={"user": {"email": "dana@example.com", "name": "dana"}},
        read_page=evaluated("[e.value, n.value]"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == ["dana@example.com", "for DANA"]


async def test_fill_on_something_that_is_not_a_field_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A paragraph cannot be filled: a permanent failure naming the locator."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/form"), {"fill": {"css": "#text"}, "value": "x", "timeout_ms": 500}],
    )
    assert ran.failure is not None and not ran.failure.transient
    assert "(css='#text')" in str(ran.failure)


async def test_fill_with_an_unknown_variable_fails_instead_of_typing_nothing(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A variable the run does not have is an error, never an empty string typed."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/form"), {"fill": {"label": "Email"}, "value": "{{ user.phone }}"}],
        variables={"user": {}},
        read_page=evaluated("e.value"),
    )
    assert ran.failure is not None and "phone" in str(ran.failure)
    assert ran.extra["page"] == "old@example.com"


def test_fill_needs_a_value() -> None:
    """A fill without a value is refused when the flow is read."""
    with pytest.raises(ValidationError, match="fill needs a value"):
        Step.model_validate({"fill": {"label": "Email"}})
