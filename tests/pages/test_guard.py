"""Held removals on the integration's page: everyone sees them, only an admin gets Approve.

Two jobs' removals are held in the served database (tests/jobs/support.py) while the
session's worker is paused; the page is read and clicked in headless Chromium.
"""

from playwright.sync_api import Browser, Page, expect

from tests.harness import Usher
from tests.jobs.support import hold_removals
from tests.operators import Account
from tests.pages.conftest import VIEWPORT, shoot, sign_in


def test_an_admin_approves_held_removals_and_a_viewer_sees_no_approve(
    usher: Usher, page: Page, browser: Browser, viewer: Account, admin: Account
) -> None:
    """The viewer reads both held accounts and finds no Approve button, on the integration
    nor on a held job's page; the admin clicks Approve and nothing is held any more."""
    with usher.own_worker_paused():
        integration_id, jobs = hold_removals(usher.database_url, 2)
        sign_in(page, usher, viewer, f"/integrations/{integration_id}")
        card = page.locator("#guard")
        expect(card).to_contain_text("2 accounts held")
        expect(card.locator("table.held tbody tr")).to_have_count(2)
        expect(card).to_contain_text("revoke_entitlement editor")
        expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        page.goto(f"{usher.api}/jobs/{jobs[0]}")
        expect(page.locator("#job-state")).to_have_text("waiting")
        expect(page.get_by_text("held by the mass-change guard")).to_be_visible()
        expect(page.get_by_role("button", name="Approve")).to_have_count(0)

        context = browser.new_context(viewport=VIEWPORT)
        as_admin = context.new_page()
        try:
            sign_in(as_admin, usher, admin, f"/jobs/{jobs[0]}")
            expect(as_admin.get_by_role("button", name="Approve")).to_be_visible()
            as_admin.goto(f"{usher.api}/integrations/{integration_id}")
            approve = as_admin.locator("#guard").get_by_role("button", name="Approve")
            expect(approve).to_be_visible()
            shoot(as_admin, "integration-held-removals")
            approve.click()
            as_admin.wait_for_url(f"{usher.api}/integrations/{integration_id}")
            expect(as_admin.locator("#guard")).to_contain_text("Nothing held.")
            expect(as_admin.get_by_role("button", name="Approve")).to_have_count(0)
            as_admin.goto(f"{usher.api}/jobs/{jobs[0]}")
            expect(as_admin.locator("#job-state")).to_have_text("queued")
        finally:
            context.close()
