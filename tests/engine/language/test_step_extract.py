"""`extract`: read an element's text or attribute into `vars.<into>` for later steps."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/user": html(
        "<p data-testid=user-id> u-42 </p><a href=/users/u-42/edit>Edit</a>"
        "<input type=hidden id=token value=t-9><p id=empty></p>"
        "<label for=note>Note</label><input id=note>"
    )
}


async def test_extract_reads_text_and_attributes_into_variables(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Text (trimmed), an href and a hidden input's value; a later step types them."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/user"),
            {"extract": {"test_id": "user-id"}, "into": "key"},
            {"extract": {"role": "link", "name": "Edit"}, "attribute": "href", "into": "edit"},
            {"extract": {"css": "#token"}, "attribute": "value", "into": "token"},
            {"fill": {"label": "Note"}, "value": "{{ vars.key }} {{ vars.edit }} {{ vars.token }}"},
        ],
        read_page=evaluated("note.value"),
    )
    assert ran.failure is None and ran.outcome is not None
    assert ran.outcome.extracted == {"key": "u-42", "edit": "/users/u-42/edit", "token": "t-9"}
    assert ran.extra["page"] == "u-42 /users/u-42/edit t-9"


async def test_extract_of_an_empty_value_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """An empty read would record an account without its key: the step fails instead."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/user"), {"extract": {"css": "#empty"}, "into": "key"}],
    )
    assert ran.failure is not None
    assert "extracted an empty value into 'key'" in str(ran.failure)


def test_extract_needs_into() -> None:
    """An extract with nowhere to put the value is refused when the flow is read."""
    with pytest.raises(ValidationError, match="extract needs into"):
        Step.model_validate({"extract": {"css": "#x"}})
