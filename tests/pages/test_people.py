"""People and identities: each one's provisioning state, searchable; the resource without
its password, the entitlements with their sources, and the jobs."""

from playwright.sync_api import Page, expect

from engine.constants import JOB_ID_HEADER
from fixtures.acme.server import AcmeServer
from tests.harness import Usher
from tests.operators import Account
from tests.pages.conftest import link_acme, post_user, shoot, sign_in, wait_state


def test_people_show_each_state_and_an_identity_shows_what_usher_knows(
    usher: Usher, page: Page, admin: Account, admin_token: str, acme: AcmeServer
) -> None:
    """One provisioned, one blocked (secrets set after the first): search, open, unblock."""
    linked = link_acme(usher, acme, secrets=False)
    blocked = post_user(linked, "bea.blocked@example.com")
    wait_state(usher, admin_token, blocked.headers[JOB_ID_HEADER], {"blocked"})

    sign_in(page, usher, admin, f"/integrations/{linked.id}/people")
    rows = page.locator("table.people tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("blocked")
    page.get_by_role("textbox", name="Search").fill("nobody-like-this")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_text(["Nobody matches."])
    page.get_by_role("textbox", name="Search").fill("BEA")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    shoot(page, "people")

    rows.first.get_by_role("link", name="bea.blocked@example.com").click()
    expect(page.locator("#identity-state")).to_have_text("blocked")
    expect(page.locator("pre.resource")).to_contain_text('"userName": "bea.blocked@example.com"')
    assert "placeholder-okta-sends" not in page.content()
    assert '"password"' not in page.content()
    expect(page.get_by_role("button", name="Unblock")).to_be_visible()
    shoot(page, "identity")
