"""The integration's page: SCIM URL, token status and rotation, entitlement values to copy."""

import httpx
from playwright.sync_api import Page, expect

from fixtures.acme.server import AcmeServer
from tests.harness import Usher
from tests.operators import Account
from tests.pages.conftest import link_acme, post_user, shoot, sign_in


def test_an_it_admin_opens_an_integration_and_copies_an_entitlement_value(
    usher: Usher, page: Page, viewer: Account, acme: AcmeServer
) -> None:
    """From the list to the page; Copy puts the exact string value on the clipboard."""
    linked = link_acme(usher, acme)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, usher, viewer, "/integrations")
    row = page.locator(f'tr[data-integration="{linked.id}"]')
    expect(row).to_contain_text(f"/scim/v2/{linked.id}")
    shoot(page, "integrations")
    row.get_by_role("link", name="Acme").click()

    expect(page.locator("#scim-url")).to_have_text(
        f"{usher.settings.public_url}/scim/v2/{linked.id}"
    )
    expect(page.get_by_text("never shown again")).to_be_visible()
    assert linked.token not in page.content()
    expect(page.get_by_role("button", name="Rotate token")).to_have_count(0)
    values = page.locator("table.catalogue tbody tr")
    expect(values.first).to_contain_text("viewer")
    page.get_by_role("button", name="Copy plan-enterprise").click()
    expect(page.get_by_role("button", name="Copy plan-enterprise")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "plan-enterprise"
    shoot(page, "integration")


def test_an_admin_rotates_the_scim_token_and_sees_the_new_one_once(
    usher: Usher, page: Page, admin: Account, acme: AcmeServer
) -> None:
    """The old token stops working at once; the new one is on the page this once only."""
    linked = link_acme(usher, acme, secrets=False)
    sign_in(page, usher, admin, f"/integrations/{linked.id}")
    page.get_by_role("button", name="Rotate token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("usc_") and token != linked.token
    shoot(page, "integration-token-rotated")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{linked.scim_url}/Users", headers=headers, timeout=30).status_code == 200
    assert post_user(linked, "old.token@example.com").status_code == 401
    page.goto(f"{usher.api}/integrations/{linked.id}")
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()
