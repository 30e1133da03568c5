"""Locators: each strategy finds its own element; has_text, nth and exact narrow it; a
locator must say exactly one thing."""

from typing import Any

import pytest
from pydantic import ValidationError

from engine.automation.browser import BrowserPool
from engine.automation.language import Locator
from fixtures.server import ThreadedServer
from tests.engine.flow_pages import evaluated, goto, html, run_flow

MARK = "onclick='(window.hits = window.hits || []).push(this.id)'"
PAGES = {
    "/all": html(
        f"<button id=by-role {MARK}>Save draft</button>"
        f"<button id=by-role-exact {MARK}>Save</button>"
        f"<label for=by-label>Email</label><input id=by-label {MARK}>"
        f"<input id=by-placeholder placeholder='Search users' {MARK}>"
        f"<span id=by-text {MARK}>Reset password</span>"
        f"<div id=by-test-id data-testid=card {MARK}>Card</div>"
        f"<i id=by-css class=icon-x {MARK}>x</i>"
        f"<li class=row id=row-a {MARK}>Ann</li><li class=row id=row-b {MARK}>Bob</li>"
        f"<li class=row id=row-c {MARK}>Cid</li><button id=by-template {MARK}>Invite Ann</button>"
    )
}
CASES: list[tuple[dict[str, Any], str]] = [
    ({"role": "button", "name": "Save draft"}, "by-role"),
    ({"role": "button", "name": "Save", "exact": True}, "by-role-exact"),
    ({"label": "Email"}, "by-label"),
    ({"placeholder": "Search users"}, "by-placeholder"),
    ({"text": "Reset password"}, "by-text"),
    ({"test_id": "card"}, "by-test-id"),
    ({"css": "i.icon-x"}, "by-css"),
    ({"css": "li.row", "has_text": "Bob"}, "row-b"),
    ({"css": "li.row", "nth": 2}, "row-c"),
    ({"role": "button", "name": "Invite {{ user.first }}"}, "by-template"),
]


async def test_each_strategy_clicks_its_own_element(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Role (with and without exact), label, placeholder, text, test id, css, has_text, nth
    and a templated name: each click lands on its element, in order."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/all"), *({"click": locator} for locator, _ in CASES)],
        variables={"user": {"first": "Ann"}},
        read_page=evaluated("window.hits"),
    )
    assert ran.failure is None
    assert ran.extra["page"] == [element for _, element in CASES]
    assert ran.sink.results[1].locator == "role='button', name='Save draft'"
    assert ran.sink.results[-1].locator == "role='button', name='Invite Ann'"


async def test_a_locator_matching_two_elements_is_a_failure(
    browsers: BrowserPool, site: ThreadedServer, redis_url: str
) -> None:
    """Without exact, Save matches both buttons: the step fails rather than guess."""
    ran = await run_flow(
        browsers,
        site.url,
        redis_url,
        [goto("/all"), {"click": {"role": "button", "name": "Save"}, "timeout_ms": 500}],
        read_page=evaluated("window.hits || []"),
    )
    assert ran.failure is not None
    assert ran.extra["page"] == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "give exactly one of role, label, placeholder, text, test_id, css"),
        ({"label": "Email", "css": "#e"}, "got ['label', 'css']"),
        ({"name": "Save"}, "give exactly one"),
        ({"label": "Email", "name": "Save"}, "name goes with role"),
        ({"css": "#e", "xpath": "//input"}, "Extra inputs are not permitted"),
    ],
)
def test_a_locator_says_exactly_one_thing(spec: dict[str, Any], message: str) -> None:
    """None, two strategies, a name without a role or an unknown key are refused."""
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Locator.model_validate(spec)
