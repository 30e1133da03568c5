"""`select`: choose an option in a native <select>, or by its name in a custom dropdown."""

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Step
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

PAGES = {
    "/native": html(
        "<label for=p>Plan</label><select id=p><option value=free>Free</option>"
        "<option value=pro>Pro</option><option value=team>Team</option></select>"
    ),
    "/dropdown": html(
        """<div role=combobox aria-label=Plan tabindex=0
        onclick="document.getElementById('list').hidden=false">Choose</div>
        <ul id=list role=listbox hidden>
        <li role=option onclick="pick(this)">Free</li>
        <li role=option onclick="pick(this)">Pro</li>
        </ul><p data-testid=plan></p>
        <script>function pick(li){document.querySelector('[data-testid=plan]').textContent=
        li.textContent; document.getElementById('list').hidden=true}</script>"""
    ),
    "/framed": html("<h1>Member</h1><iframe id=editor src=/dropdown></iframe>"),
}


async def test_select_chooses_a_native_option_by_label_or_value(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """`Pro` (a label) and then `team` (a value, templated) are chosen in turn."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/native"),
            {"select": {"label": "Plan"}, "value": "Pro"},
            {"expect": {"label": "Plan"}, "value": "pro"},
            {"select": {"label": "Plan"}, "value": "{{ user.plan }}"},
        ],
        variables={"user": {"plan": "team"}},
        read_page=evaluated("p.value"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == "team"


async def test_select_in_a_custom_dropdown_clicks_the_option(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """A combobox that is no <select>: it is opened and the option named is clicked."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/dropdown"),
            {"select": {"role": "combobox", "name": "Plan"}, "value": "Pro"},
            {"expect": {"test_id": "plan"}, "text": "Pro"},
        ],
        read_page=evaluated("document.querySelector('[data-testid=plan]').textContent"),
    )
    assert ran.failure is None
    assert all(s.status == "ok" for s in ran.sink.results)
    assert ran.extra["page"] == "Pro"


async def test_select_in_a_custom_dropdown_inside_an_iframe_finds_its_options_there(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """With `frame`, the dropdown and its options are both looked for inside the iframe."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [
            goto("/framed"),
            {"select": {"role": "combobox", "name": "Plan"}, "value": "Pro", "frame": "#editor"},
            {"expect": {"test_id": "plan"}, "text": "Pro", "frame": "#editor"},
        ],
        read_page=evaluated(
            "document.getElementById('editor').contentDocument"
            ".querySelector('[data-testid=plan]').textContent"
        ),
    )
    assert ran.failure is None, ran.failure
    assert ran.extra["page"] == "Pro"


async def test_select_an_option_that_does_not_exist_fails(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """No option is named Enterprise: a permanent failure, and the choice is unchanged."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/native"), {"select": {"label": "Plan"}, "value": "Enterprise", "timeout_ms": 500}],
        read_page=evaluated("p.value"),
    )
    assert ran.failure is not None and not ran.failure.transient
    assert ran.extra["page"] == "free"


def test_select_needs_a_value() -> None:
    """A select without a value is refused when the flow is read."""
    with pytest.raises(ValidationError, match="select needs a value"):
        Step.model_validate({"select": {"label": "Plan"}})
